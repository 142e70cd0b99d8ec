"""A fetch: one request the response cache sends to the app, and what it makes of the answer.

Theory of operation
-------------------
maitred.front.cache decides what a request needs; when it needs the app, the request goes to
the dispatcher with a :class:`Fetch` beside it (``Exchange.cache_fetch``), and
maitred.front.cachefill's CachedExchange hands the fetch each part of the app's response:

* ``head``: decides with maitred.http.caching whether the response may be stored (its
  Cache-Control, the --cache-rule for its path, a body that fits), and adds ``Cache-Status``
  (RFC 9211) when asked;
* ``body``: kept in memory while under --cache-max-object, then in a file of --cache-dir
  (maitred.front.cachefiles), or given up past what may be stored;
* ``stand_in``: the app failed (5xx, the front's own 502/503/504) and the stale entry's
  stale-if-error allows it: the client gets that entry instead;
* ``revalidated``: the app answered 304 to the validators the fetch sent (``validators``,
  RFC 9111 section 4.3.1): the stale entry's fields and freshness are updated from the 304
  (``freshen``, section 4.3.4) and the client gets the stored page;
* ``over``: the response came whole (or its exchange ended): it is stored (``keep``), and the
  requests that waited for this fetch (a stampede of misses for one key) go on
  (ResponseCache.release).

Only a fetch that *records* (the first GET for a key) is registered in the cache's
``fetches``, so that later requests for the key wait for it; the others (a bypass, a wait that
timed out) only pass the response through, and may stand in a stale entry for errors.

Owned by the event loop thread.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from maitred.front.cachefiles import BodyFile
from maitred.front.cachefill import parse_head
from maitred.front.cachestore import Primary, Stored
from maitred.front.exchange import Exchange
from maitred.front.states import GONE
from maitred.http.caching import NOT_REPLAYED, Fields, Policy, policy

if TYPE_CHECKING:
    from maitred.front.cache import ResponseCache

# What became of a request, as the access log and the metrics say it.
HIT, STALE, MISS, BYPASS, REVALIDATED = "hit", "stale", "miss", "bypass", "revalidated"
OUTCOMES = (HIT, STALE, MISS, BYPASS, REVALIDATED)
GET = b"GET"
BAD_GATEWAY = 502
STATUS_FIELD = b"Cache-Status: maitred; "
# The fields a 304 repeats from the stored response (RFC 9110 section 15.4.5).
NOT_MODIFIED_FIELDS = frozenset(
    (b"cache-control", b"cdn-cache-control", b"content-location", b"etag", b"expires", b"vary")
)
TAG_FIELDS = (b"cache-tag", b"surrogate-key")
# A request with any of these goes to the app with its own conditions, never the cache's.
CONDITIONS = frozenset(
    (b"if-none-match", b"if-modified-since", b"if-match", b"if-unmodified-since", b"if-range")
)
Validators = list[tuple[bytes, bytes]]


class Fetch:
    """One request to the app whose response the cache records, and who waits for it."""

    def __init__(
        self, cache: ResponseCache, primary: Primary, stale: Stored | None, record: bool
    ) -> None:
        self.cache = cache
        self.primary = primary
        self.stale = stale  # what may stand in for the app's errors, or be revalidated
        self.validators: Validators = []  # the conditions sent to the app for `stale`
        self.storing = record  # the response is still to be stored
        self.sent_at = time.time()  # RFC 9111's request_time
        self.waiters: list[Exchange] = []
        self.timer: asyncio.TimerHandle | None = None
        self.status = 0
        self.length = -1  # the Content-Length the app declared (-1: none)
        self.status_line = b""
        self.fields: Fields = {}
        self.lines: list[bytes] = []
        self.policy: Policy | None = None
        self.chunks: list[bytes] = []
        self.spool: BodyFile | None = None  # the body's file, once past --cache-max-object
        self.size = 0
        self.complete = False  # the whole response came, and went to its client
        self.swallowing = False  # a 5xx answered from the stale entry: its frames are dropped
        self.failed = False
        self.ended = False

    def head(self, exchange: Exchange, status: int, length: int, head: bytes) -> bytes:
        """The app's response head: decide whether it is stored; the head to send."""
        cache = self.cache
        self.status, self.length = status, length
        if self.storing:
            self.status_line, self.fields, self.lines = parse_head(head)
            decided = policy(
                GET,
                status,
                exchange.head.fields,
                self.fields,
                self.sent_at,
                time.time(),
                cache.rule_for(exchange.head.target),
                cache.cfg.cache_stale_if_error,
            )
            fits = length <= cache.max_body
            self.policy = decided if isinstance(decided, Policy) and fits else None
            self.storing = self.policy is not None
        if not cache.status_header:
            return head
        said = b"fwd=stale" if self.stale is not None else b"fwd=miss"
        if exchange.cache == BYPASS:
            said = b"fwd=bypass"
        stored = b"; stored" if self.storing else b""
        return head + STATUS_FIELD + said + b"; fwd-status=%d%s\r\n" % (status, stored)

    def body(self, data: bytes) -> None:
        if not self.storing:
            return
        self.size += len(data)
        cache = self.cache
        if self.spool is None and self.size > cache.cfg.cache_max_object:
            # Past the memory's limit: on to a file, if there is a directory for it.
            self.spool = cache.files.create() if cache.files is not None else None
            if self.spool is None or not all(map(self.spool.write, self.chunks)):
                self._give_up()
                return
            self.chunks = []
        if self.spool is None:
            self.chunks.append(data)
        elif self.size > cache.max_body or not self.spool.write(data):
            self._give_up()

    def _give_up(self) -> None:
        """The body will not be stored: what was kept of it goes."""
        self.storing = False
        self.chunks = []
        if self.spool is not None:
            self.spool.discard()
            self.spool = None

    def stand_in(self, exchange: Exchange) -> bool:
        """The app failed: answer from the stale entry if its stale-if-error allows; True when
        it was answered so."""
        self.failed = True
        self.storing = False
        if self.spool is not None:
            self._give_up()
        stale = self.stale
        if stale is None or exchange.state in GONE:
            return False
        now = self.cache.loop.time()
        ttl = stale.ttl(now)
        if ttl <= 0 and -ttl > stale.policy.stale_if_error:
            return False
        worker = exchange.worker
        if worker is not None and worker.exchanges.get(exchange.rid) is exchange:
            worker.cancel(exchange.rid)  # the rest of the app's answer is not wanted
        if not self.cache.serve(exchange, stale, STALE, b"; detail=stale-if-error"):
            Exchange.respond_error(exchange, BAD_GATEWAY)  # its file is gone: the app's fault
        return True

    def revalidated(self, exchange: Exchange, head: bytes) -> bool:
        """The app answered 304 to this fetch's validators: the stale entry is good again, its
        fields updated from the 304; the client is answered from it. True when it was."""
        stored = self.stale
        if not self.validators or stored is None or exchange.state in GONE:
            return False
        self.storing = False
        self.freshen(stored, head, exchange.head.fields)
        if not self.cache.serve(exchange, stored, REVALIDATED):
            Exchange.respond_error(exchange, BAD_GATEWAY)  # its file is gone: the app's fault
        return True

    def over(self, exchange: Exchange) -> None:
        """Its response came whole, or its exchange is over (answered, cancelled): store, then
        let the waiters go on. Once only: frames after a whole body change nothing."""
        if self.ended:
            return
        self.ended = True
        if self.timer is not None:
            self.timer.cancel()
        cache = self.cache
        if cache.fetches.get(self.primary) is self:
            del cache.fetches[self.primary]
        # A body that did not pass here whole (a file the front sent itself with sendfile, a
        # response cut short) is not stored.
        whole = self.length < 0 or self.size == self.length
        if self.storing and self.complete and whole and self.policy is not None:
            self.keep(exchange.head.fields)
        elif self.spool is not None:
            self._give_up()
        self.storing = False  # settled: nothing more is kept
        cache.release(self)

    def keep(self, request: Fields) -> None:
        """Store the whole response, in memory or (past --cache-max-object) its file."""
        fetch, cache = self, self.cache
        assert fetch.policy is not None
        replayed, not_modified = replayed_lines(fetch.lines, cache.front.router.id_name)
        fields = fetch.fields
        stored = Stored(
            fetch.status,
            fetch.status_line,
            replayed,
            b"".join(fetch.chunks),
            _first(fields, b"etag"),
            _first(fields, b"last-modified"),
            fetch.policy,
            cache.loop.time(),
            _tags(fields),
            not_modified=not_modified,
        )
        store, other = cache.store, cache.file_store
        spool, fetch.spool = fetch.spool, None
        if spool is not None and other is not None:
            spool.close()  # whole: from now on it may be served
            stored.file, stored.file_size = spool.path, fetch.size
            store, other = other, store
        if not store.put(fetch.primary, request, stored):
            if spool is not None:
                spool.discard()
            return
        if other is not None:  # the key's older entry in the other store is out of date
            other.remove(lambda key, _: key == fetch.primary)

    def freshen(self, stored: Stored, head: bytes, request: Fields) -> None:
        """Update `stored` from the 304 that revalidated it (RFC 9111 section 4.3.4): the
        304's fields replace the stored ones of the same names and its freshness is decided
        again. One that may no longer be kept (or varies otherwise) is dropped, though it
        still answers the request it was revalidated for."""
        fetch, cache = self, self.cache
        _, updates, update_lines = parse_head(head)
        _, fields, lines = parse_head(stored.status_line + stored.fields)
        lines = [line for line in lines if line.partition(b":")[0].strip().lower() not in updates]
        lines += update_lines
        fields.update(updates)
        decided = policy(
            GET,
            stored.status,
            request,
            fields,
            fetch.sent_at,
            time.time(),
            cache.rule_for(fetch.primary[3]),
            cache.cfg.cache_stale_if_error,
        )
        if not isinstance(decided, Policy) or decided.vary != stored.policy.vary:
            cache.remove(lambda _, entry: entry is stored)
            return
        stored.fields, stored.not_modified = replayed_lines(lines, cache.front.router.id_name)
        stored.etag = _first(fields, b"etag")
        stored.last_modified = _first(fields, b"last-modified")
        stored.policy = decided
        stored.stored_at = cache.loop.time()
        stored.tags = _tags(fields)
        stored.settle()
        store = cache.store if not stored.file else cache.file_store
        if store is not None:
            store.resized(fetch.primary, request, stored)


def validators(request: Fields, stored: Stored) -> Validators:
    """The conditions that ask the app whether `stored` is still good (RFC 9111 section
    4.3.1); none when the request has conditions of its own: they go to the app as they are."""
    if not CONDITIONS.isdisjoint(request):
        return []
    found = []
    if stored.etag:
        found.append((b"If-None-Match", stored.etag))
    if stored.last_modified:
        found.append((b"If-Modified-Since", stored.last_modified))
    return found


def _first(fields: Fields, name: bytes) -> bytes:
    values = fields.get(name)
    return values[0] if values else b""


def _tags(fields: Fields) -> frozenset[bytes]:
    """What a response may be purged by: the words of its Cache-Tag and Surrogate-Key."""
    return frozenset(
        tag.strip(b",")
        for name in TAG_FIELDS
        for line in fields.get(name, ())
        for tag in line.split()
    )


def replayed_lines(lines: list[bytes], id_name: bytes) -> tuple[bytes, bytes]:
    """Of a response's head lines, those an answer from its entry repeats, and those a
    304 from it repeats."""
    replayed = []
    not_modified = []
    for line in lines:
        name = line.partition(b":")[0].strip().lower()
        if not name or name in NOT_REPLAYED or name == id_name or name == b"cache-status":
            continue
        replayed.append(line + b"\r\n")
        if name in NOT_MODIFIED_FIELDS:
            not_modified.append(line + b"\r\n")
    return b"".join(replayed), b"".join(not_modified)
