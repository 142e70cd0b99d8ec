"""The response cache: a front answers the pages its app marks cacheable, without the app.

Theory of operation
-------------------
An app with --cache-size has one :class:`ResponseCache` per front; the router hands it each of
the app's requests instead of the dispatcher (one check when the cache is off: the router's
target has no cache). :meth:`ResponseCache.handle` decides, in this order:

1. **Bypass** (to the app, nothing stored): a method other than GET and HEAD (an unsafe one
   also drops the stored responses of its target, RFC 9111 section 4.4); a cookie named by
   --cache-bypass-cookie; a request that says ``no-store``; one with Authorization when the
   stored response does not allow sharing it.
2. **Hit**: a fresh stored response for the key (maitred.front.cachestore says what the key is)
   is written by the front at once, with a new Date and Age; 304 when the request's
   If-None-Match or If-Modified-Since match the stored validators.
3. **Stale, while revalidating**: a stored response past its lifetime but within its
   stale-while-revalidate is written at once too, and one refresh, with no client of its own
   (maitred.front.cachefill.NoClient), goes to the app if none is under way.
4. **Miss**: if a fetch for the same key is under way (a
   :class:`maitred.front.cachefetch.Fetch`), the request waits for it, up to
   --cache-lock-timeout, and is then answered from what it stored, or goes to the app if it
   stored nothing. Otherwise the request itself becomes the fetch: it goes to the app as
   a :class:`maitred.front.cachefill.CachedExchange`, which records the response and, if the
   app fails and a stale entry allows it (stale-if-error), answers from that entry.
5. **Revalidated**: a fetch that has a stale entry with a validator (ETag, Last-Modified: a
   ``no-cache`` or ``max-age=0`` page, one past its lifetime) asks the app conditionally
   (If-None-Match, If-Modified-Since, RFC 9111 section 4.3.1), unless the client sent
   conditions of its own. A 304 from the app refreshes the entry's fields and freshness
   (section 4.3.4) and the client gets the stored page; any other answer is a miss as above.

Every answer says how it was made: ``Exchange.cache`` for the access log and the metrics
(hit, stale, miss, bypass), and with --cache-status-header the ``Cache-Status`` field of RFC
9211. Purges (:meth:`ResponseCache.purge`) drop entries by URL, prefix or tag.

With --cache-dir, a body past --cache-max-object is written to a file as it passes
(maitred.front.cachefiles), its entry kept in a second store bounded by --cache-dir-size, and a
hit sends the file with sendfile. A key has its entry in one store at most: storing it in one
drops it from the other. Bodies under --cache-max-object take the memory path as before.

Owned by the event loop thread.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from maitred.front.cachefetch import (
    BYPASS,
    HIT,
    MISS,
    REVALIDATED,
    STALE,
    STATUS_FIELD,
    Fetch,
    validators,
)
from maitred.front.cachefiles import CacheDir, StoredFileSender
from maitred.front.cachefill import CachedExchange, refresh_exchange
from maitred.front.cachestore import Primary, Store, Stored
from maitred.front.conditional import preconditions
from maitred.front.exchange import Exchange
from maitred.front.states import GONE
from maitred.http.caching import Fields, RequestRule, http_date, request_rule

log = logging.getLogger("maitred.error")

if TYPE_CHECKING:
    from maitred.config import Config
    from maitred.front.dispatcher import Dispatcher
    from maitred.front.main import Front

GET, HEAD = b"GET", b"HEAD"
SAFE_METHODS = frozenset((GET, HEAD, b"OPTIONS", b"TRACE"))
NOT_MODIFIED = 304
NOT_MODIFIED_LINE = b"HTTP/1.1 304 Not Modified\r\n"
# If-Modified-Since never matches a response without Last-Modified: a time past any date.
NEVER = 2**62
Matcher = Callable[[Primary, Stored], bool]


class ResponseCache:
    """One app's response cache in one front (see the module docstring)."""

    def __init__(self, front: Front, cfg: Config, app: str, dispatcher: Dispatcher) -> None:
        self.front = front
        self.loop = front.loop
        self.date = front.date
        self.cfg = cfg
        self.app = app
        self.dispatcher = dispatcher
        self.store = Store(cfg.cache_size)
        # --cache-dir: bodies past --cache-max-object, in files, within --cache-dir-size.
        self.files = CacheDir(cfg.cache_dir) if cfg.cache_dir else None
        self.file_store = Store(cfg.cache_dir_size) if cfg.cache_dir else None
        self.stores = (self.store,) if self.file_store is None else (self.store, self.file_store)
        self.max_body = cfg.cache_dir_size if cfg.cache_dir else cfg.cache_max_object
        self.fetches: dict[Primary, Fetch] = {}
        self.status_header = cfg.cache_status_header
        self.bypass_cookies = tuple(name.encode("latin-1") for name in cfg.cache_bypass_cookie)
        # Longest prefix first: the first that matches is the rule.
        self.rules = sorted(
            ((prefix.encode("latin-1"), ttl) for prefix, ttl in cfg.cache_rule),
            key=lambda rule: len(rule[0]),
            reverse=True,
        )

    # --- deciding ---

    def handle(self, exchange: Exchange, waited: bool = False) -> None:
        head = exchange.head
        method = head.method
        fields = head.fields
        if method != GET and method != HEAD:
            if method not in SAFE_METHODS:
                self.remove(self._target_matches(self.primary(exchange)))
            self.forward(exchange, None, BYPASS)
            return
        # Most requests say nothing of caching: no call to read what they do not say.
        said = b"cache-control" in fields or b"pragma" in fields
        rule = request_rule(fields) if said else RequestRule.ANY
        if rule is RequestRule.NO_STORE or (self.bypass_cookies and self._bypass_cookie(fields)):
            self.forward(exchange, None, BYPASS)
            return
        primary = self.primary(exchange)
        stored = self.store.get(primary, fields)
        if stored is None and self.file_store is not None:
            stored = self.file_store.get(primary, fields)
        if (
            stored is not None
            and b"authorization" in fields
            and not stored.policy.shared_with_authorization
        ):
            self.forward(exchange, None, BYPASS)
            return
        if stored is not None and rule is RequestRule.ANY:
            age = stored.age(self.loop.time())
            ttl = stored.policy.lifetime - age
            if ttl > 0:
                if self.serve(exchange, stored, HIT, age=age):
                    return
                stored = None  # its file is gone: a miss
            elif -ttl <= stored.policy.stale_while_revalidate:
                swr = b"; detail=stale-while-revalidate"
                if self.serve(exchange, stored, STALE, swr, age):
                    if primary not in self.fetches:
                        self._refresh(exchange, primary, stored)
                    return
                stored = None
        fetch = self.fetches.get(primary)
        if fetch is not None and not waited and rule is RequestRule.ANY:
            fetch.waiters.append(exchange)
            return
        record = fetch is None and method == GET
        fetch = self._fetch(primary, stored, record)
        if record and stored is not None:
            fetch.validators = validators(fields, stored)
        self.forward(exchange, fetch, MISS)

    def primary(self, exchange: Exchange) -> Primary:
        hosts = exchange.head.fields.get(b"host")
        host = hosts[0].lower() if hosts else b""
        return (exchange.peer[4], host, self.app, exchange.head.target)

    def rule_for(self, target: bytes) -> float | None:
        for prefix, ttl in self.rules:
            if target.startswith(prefix):
                return ttl
        return None

    def _bypass_cookie(self, fields: Fields) -> bool:
        for line in fields.get(b"cookie", ()):
            for pair in line.split(b";"):
                if pair.partition(b"=")[0].strip() in self.bypass_cookies:
                    return True
        return False

    # --- to the app ---

    def _fetch(self, primary: Primary, stale: Stored | None, record: bool) -> Fetch:
        fetch = Fetch(self, primary, stale, record)
        if record:
            self.fetches[primary] = fetch
            timeout = self.cfg.cache_lock_timeout
            fetch.timer = self.loop.call_later(timeout, self._lock_timed_out, fetch)
        return fetch

    def forward(self, exchange: Exchange, fetch: Fetch | None, outcome: str) -> None:
        """Send `exchange` to the app, recording its response when `fetch` says so."""
        exchange.cache = outcome
        if fetch is None:
            fetch = Fetch(self, self.primary(exchange), None, False)
        exchange.cache_fetch = fetch
        exchange.__class__ = CachedExchange  # adds no slots: see maitred.front.cachefill
        self.dispatcher.submit(exchange)

    def _refresh(self, model: Exchange, primary: Primary, stored: Stored) -> None:
        """One request for the app that nobody waits for: stale-while-revalidate."""
        if model.head.method != GET:
            return  # a HEAD's answer has no body to store: the next GET refreshes it
        exchange = refresh_exchange(self.front, model)
        exchange.cache = MISS
        fetch = exchange.cache_fetch = self._fetch(primary, stored, True)
        fetch.validators = validators(model.head.fields, stored)
        self.dispatcher.submit(exchange)

    def _lock_timed_out(self, fetch: Fetch) -> None:
        """The fetch takes too long: those who wait for it go to the app themselves."""
        fetch.timer = None
        waiters, fetch.waiters = fetch.waiters, []
        for exchange in waiters:
            if exchange.state not in GONE:
                self.forward(exchange, Fetch(self, fetch.primary, fetch.stale, False), MISS)

    def release(self, fetch: Fetch) -> None:
        """A fetch is over: its waiters are answered from what it stored, or go on."""
        for exchange in fetch.waiters:
            if exchange.state in GONE:
                continue  # its client left while it waited
            if fetch.failed and fetch.stale is not None and fetch.stand_in(exchange):
                continue
            self.handle(exchange, waited=True)
        fetch.waiters = []

    # --- storing and answering ---

    def serve(
        self,
        exchange: Exchange,
        stored: Stored,
        outcome: str,
        detail: bytes = b"",
        age: float | None = None,
    ) -> bool:
        """Answer `exchange` from `stored`, now (its `age`, if the caller has it already);
        False (nothing sent, the entry dropped) when its file cannot be opened."""
        # A hit is the front's busiest path: the head up to Date was made once, when the
        # entry was stored (Stored.settle); here only Date, Age and the request's own lines
        # are added, in one formatting.
        if age is None:
            age = stored.age(self.loop.time())
        fields = exchange.head.fields
        fd = -1
        if (b"if-none-match" in fields or b"if-modified-since" in fields) and self._not_modified(
            fields, stored
        ):
            status, length, body = NOT_MODIFIED, -1, b""
            head = NOT_MODIFIED_LINE + stored.not_modified
        else:
            status, length, body, head = stored.status, stored.length, stored.body, stored.head
            if stored.file and not exchange.suppress_body:
                fd = self._open(stored)
                if fd < 0:
                    return False
        exchange.cache = outcome
        said = b""
        if self.status_header:
            ttl = stored.policy.lifetime - age
            if outcome == REVALIDATED:
                said = b"%bfwd=stale; fwd-status=304; stored; ttl=%d\r\n" % (STATUS_FIELD, ttl)
            else:
                said = b"%bhit; ttl=%d%b\r\n" % (STATUS_FIELD, ttl, detail)
        head = b"%bDate: %b\r\nAge: %d\r\n%b%b" % (
            head,
            self.date.get(),
            age if age > 0 else 0,
            said,
            exchange.extra_head,
        )
        # The plain methods: a CachedExchange answered from a stale entry is not recorded.
        if fd >= 0:
            Exchange.respond_head(exchange, status, length, head)
            StoredFileSender(exchange, fd, 0, length).start()  # closes fd
        else:
            Exchange.respond_full(exchange, status, length, head, body)
        return True

    def _open(self, stored: Stored) -> int:
        """The descriptor of a stored body's file; -1 (the entry dropped) when it is gone."""
        try:
            return os.open(stored.file, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            log.error("cache: stored body %s unreadable: %s", stored.file, exc)
            self.remove(lambda _, entry: entry is stored)
            return -1

    @staticmethod
    def _not_modified(fields: Fields, stored: Stored) -> bool:
        if b"if-none-match" not in fields and b"if-modified-since" not in fields:
            return False
        asked: dict[bytes, bytes] = {
            name: fields[name][0]
            for name in (b"if-none-match", b"if-modified-since")
            if name in fields
        }
        modified = http_date(stored.last_modified) if stored.last_modified else None
        mtime = NEVER if modified is None else int(modified)
        return preconditions(asked, stored.etag, stored.last_modified, mtime) == NOT_MODIFIED

    # --- purging ---

    @staticmethod
    def _target_matches(primary: Primary) -> Matcher:
        def matches(key: Primary, _: Stored) -> bool:
            return key[:3] == primary[:3] and key[3] == primary[3]

        return matches

    def purge(self, url: str = "", prefix: str = "", tag: str = "") -> int:
        """Drop the entries of a URL (a path and query, or a whole URL), under a path prefix,
        or carrying a tag; how many went."""
        if url:
            return self.remove(_url_matcher(url))
        if prefix:
            start = prefix.encode("latin-1")
            return self.remove(lambda key, _: key[3].startswith(start))
        wanted = tag.encode("latin-1")
        return self.remove(lambda _, stored: wanted in stored.tags)

    def remove(self, matches: Matcher) -> int:
        """Drop the entries `matches` accepts, from memory and files; how many went."""
        return sum(store.remove(matches) for store in self.stores)

    def figures(self) -> dict[str, int]:
        """What the metrics report of this cache's memory and files (the outcomes are
        counted with each request: maitred.front.metrics)."""
        return {
            "cache_stored_bytes": sum(store.size for store in self.stores),
            "cache_evictions": sum(store.evictions for store in self.stores),
        }

    def close(self) -> None:
        """The front stops or replaces this cache: the files of its bodies go."""
        if self.files is not None:
            self.files.close()


def _url_matcher(url: str) -> Matcher:
    """Whether a primary key is `url`'s: a target alone matches it on every host and scheme."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        target = url.encode("latin-1")
        return lambda key, _: key[3] == target
    host, _, path = rest.partition("/")
    whole = (scheme.lower(), host.lower().encode("latin-1"), ("/" + path).encode("latin-1"))
    return lambda key, _: (key[0], key[1], key[3]) == whole
