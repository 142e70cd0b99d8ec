"""The response cache's memory: stored responses by key, least recently used first out.

Theory of operation
-------------------
A stored response (:class:`Stored`) is what the front needs to answer from it alone: its status
line, the head fields it may replay (a block of ``Name: value\\r\\n`` lines, without those of
maitred.http.caching.NOT_REPLAYED and without the request id), its body, its validators
(ETag, Last-Modified) for conditional requests, its :class:`maitred.http.caching.Policy`, the
monotonic time it was stored, and the tags it may be purged by (Cache-Tag, Surrogate-Key).

Keys have two parts, as RFC 9111 section 4.1 has them. The **primary key** is the scheme, the
Host (lower case, as the front validated it), the app, and the request target (its query
included): a request the router sends to another app never finds this app's entries. The
**secondary key** is the request's values of the fields the response's Vary names; the
names are kept per primary key (``vary``), so a lookup costs two dict reads.

The bound is hard: :meth:`Store.put` evicts least recently used entries until the new one
fits, and refuses one larger than the whole store. Sizes count the body, the replayed head
and a fixed allowance for the objects around them (ENTRY_OVERHEAD).

Purges (by URL, prefix, tag) walk the entries: they are rare, and a walk of even a large
store takes milliseconds, which keeps every lookup free of the indexes they would need.

Owned by the event loop thread.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from maitred.front.cachefiles import remove_file
from maitred.http.caching import Fields, Policy, secondary_key
from maitred.http.framing import CONTENT_LENGTH

# Bytes counted per entry beyond its body and head: the key, the Stored object, the dicts.
ENTRY_OVERHEAD = 512

# (scheme, host, app, target)
Primary = tuple[str, bytes, str, bytes]


@dataclass(slots=True)
class Stored:
    """One stored response."""

    status: int
    status_line: bytes  # b"HTTP/1.1 200 OK\r\n"
    fields: bytes  # the replayed head lines, each ending in CRLF
    body: bytes
    etag: bytes
    last_modified: bytes
    policy: Policy
    stored_at: float  # loop time (monotonic)
    tags: frozenset[bytes]
    not_modified: bytes = b""  # the lines a 304 repeats
    size: int = 0
    file: str = ""  # the file that holds the body (--cache-dir), `body` then empty
    file_size: int = 0
    # Made by settle(): the body's length, and the head of an answer from it up to Date.
    length: int = 0
    head: bytes = b""

    def settle(self) -> None:
        """Make what every answer from it repeats, once, as it is stored or revalidated."""
        self.length = self.file_size if self.file else len(self.body)
        self.head = self.status_line + self.fields + CONTENT_LENGTH % self.length

    def age(self, now: float) -> float:
        return self.policy.initial_age + (now - self.stored_at)

    def ttl(self, now: float) -> float:
        """Seconds it stays fresh (negative: stale for that long)."""
        return self.policy.lifetime - self.age(now)


class Store:
    """One app's stored responses in one front, within `capacity` bytes."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.size = 0
        self.evictions = 0
        self.entries: OrderedDict[tuple[Primary, tuple[bytes, ...]], Stored] = OrderedDict()
        self.vary: dict[Primary, tuple[bytes, ...]] = {}  # primary key -> Vary names
        self.variants: dict[Primary, int] = {}  # primary key -> entries stored under it

    def get(self, primary: Primary, request: Fields) -> Stored | None:
        names = self.vary.get(primary)
        if names is None:
            return None
        key = (primary, secondary_key(names, request) if names else ())
        stored = self.entries.get(key)
        if stored is not None:
            self.entries.move_to_end(key)
        return stored

    def put(self, primary: Primary, request: Fields, stored: Stored) -> bool:
        """Keep `stored` for this request's keys; False when it is larger than the store."""
        stored.size = _size(stored)
        stored.settle()
        if stored.size > self.capacity:
            return False
        names = stored.policy.vary
        if self.vary.get(primary, names) != names:
            self.remove(lambda key, _: key == primary)  # its Vary changed: a new set
        key = (primary, secondary_key(names, request) if names else ())
        old = self.entries.pop(key, None)
        if old is not None:
            self._forget(primary, old)
        while self.entries and self.size + stored.size > self.capacity:
            (gone_primary, _), gone = self.entries.popitem(last=False)
            self._forget(gone_primary, gone)
            self.evictions += 1
        self.entries[key] = stored
        self.size += stored.size
        self.vary[primary] = names
        self.variants[primary] = self.variants.get(primary, 0) + 1
        return True

    def resized(self, primary: Primary, request: Fields, stored: Stored) -> None:
        """`stored` changed in place (its fields, revalidated): count its new size, and keep
        the bound by evicting the least recently used. Nothing when it is no longer here."""
        key = (primary, secondary_key(stored.policy.vary, request) if stored.policy.vary else ())
        if self.entries.get(key) is not stored:
            return
        self.entries.move_to_end(key)
        size = _size(stored)
        self.size += size - stored.size
        stored.size = size
        while self.size > self.capacity:
            (gone_primary, _), gone = self.entries.popitem(last=False)
            self._forget(gone_primary, gone)
            self.evictions += 1

    def remove(self, matches: Callable[[Primary, Stored], bool]) -> int:
        """Drop every entry whose primary key and response `matches`; how many went."""
        doomed = [key for key, stored in self.entries.items() if matches(key[0], stored)]
        for key in doomed:
            self._forget(key[0], self.entries.pop(key))
        return len(doomed)

    def _forget(self, primary: Primary, stored: Stored) -> None:
        """`stored` (the caller took it out of `entries`) no longer counts."""
        self.size -= stored.size
        if stored.file:
            remove_file(stored.file)
        left = self.variants[primary] - 1
        if left:
            self.variants[primary] = left
        else:
            del self.variants[primary]
            self.vary.pop(primary, None)


def _size(stored: Stored) -> int:
    """What an entry counts against its store's bound."""
    return len(stored.body) + stored.file_size + len(stored.fields) + ENTRY_OVERHEAD
