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
4. **Miss**: if a fetch for the same key is under way (a :class:`Fetch`), the request waits for
   it, up to --cache-lock-timeout, and is then answered from what it stored, or goes to the app
   if it stored nothing. Otherwise the request itself becomes the fetch: it goes to the app as
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

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from maitred.front.cachefiles import BodyFile, CacheDir, StoredFileSender
from maitred.front.cachefill import CachedExchange, parse_head, refresh_exchange
from maitred.front.cachestore import Primary, Store, Stored
from maitred.front.conditional import preconditions
from maitred.front.exchange import Exchange
from maitred.front.states import GONE
from maitred.http.caching import (
    NOT_REPLAYED,
    Fields,
    Policy,
    RequestRule,
    http_date,
    policy,
    request_rule,
)

log = logging.getLogger("maitred.error")

if TYPE_CHECKING:
    from maitred.config import Config
    from maitred.front.dispatcher import Dispatcher
    from maitred.front.main import Front

# What became of a request, as the access log and the metrics say it.
HIT, STALE, MISS, BYPASS, REVALIDATED = "hit", "stale", "miss", "bypass", "revalidated"
OUTCOMES = (HIT, STALE, MISS, BYPASS, REVALIDATED)
GET, HEAD = b"GET", b"HEAD"
SAFE_METHODS = frozenset((GET, HEAD, b"OPTIONS", b"TRACE"))
NOT_MODIFIED = 304
NOT_MODIFIED_LINE = b"HTTP/1.1 304 Not Modified\r\n"
BAD_GATEWAY = 502
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
# If-Modified-Since never matches a response without Last-Modified: a time past any date.
NEVER = 2**62
STATUS_FIELD = b"Cache-Status: maitred; "
Matcher = Callable[[Primary, Stored], bool]


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
        self.request: Fields = {}
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
        self.cache.freshen(self, stored, head, exchange.head.fields)
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
            cache.keep(self, exchange.head.fields)
        elif self.spool is not None:
            self._give_up()
        self.storing = False  # settled: nothing more is kept
        cache.release(self)


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
                self._remove(self._target_matches(self.primary(exchange)))
            self.forward(exchange, None, BYPASS)
            return
        rule = request_rule(fields)
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
            ttl = stored.ttl(self.loop.time())
            if ttl > 0:
                if self.serve(exchange, stored, HIT):
                    return
                stored = None  # its file is gone: a miss
            elif -ttl <= stored.policy.stale_while_revalidate:
                if self.serve(exchange, stored, STALE, b"; detail=stale-while-revalidate"):
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

    def _replayed(self, lines: list[bytes]) -> tuple[bytes, bytes]:
        """Of a response's head lines, those an answer from its entry repeats, and those a
        304 from it repeats."""
        replayed = []
        not_modified = []
        id_name = self.front.router.id_name
        for line in lines:
            name = line.partition(b":")[0].strip().lower()
            if not name or name in NOT_REPLAYED or name == id_name or name == b"cache-status":
                continue
            replayed.append(line + b"\r\n")
            if name in NOT_MODIFIED_FIELDS:
                not_modified.append(line + b"\r\n")
        return b"".join(replayed), b"".join(not_modified)

    def keep(self, fetch: Fetch, request: Fields) -> None:
        assert fetch.policy is not None
        replayed, not_modified = self._replayed(fetch.lines)
        fields = fetch.fields
        stored = Stored(
            fetch.status,
            fetch.status_line,
            replayed,
            b"".join(fetch.chunks),
            _first(fields, b"etag"),
            _first(fields, b"last-modified"),
            fetch.policy,
            self.loop.time(),
            _tags(fields),
            not_modified=not_modified,
        )
        store, other = self.store, self.file_store
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

    def freshen(self, fetch: Fetch, stored: Stored, head: bytes, request: Fields) -> None:
        """Update `stored` from the 304 that revalidated it (RFC 9111 section 4.3.4): the
        304's fields replace the stored ones of the same names and its freshness is decided
        again. One that may no longer be kept (or varies otherwise) is dropped, though it
        still answers the request it was revalidated for."""
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
            self.rule_for(fetch.primary[3]),
            self.cfg.cache_stale_if_error,
        )
        if not isinstance(decided, Policy) or decided.vary != stored.policy.vary:
            self._remove(lambda _, entry: entry is stored)
            return
        stored.fields, stored.not_modified = self._replayed(lines)
        stored.etag = _first(fields, b"etag")
        stored.last_modified = _first(fields, b"last-modified")
        stored.policy = decided
        stored.stored_at = self.loop.time()
        stored.tags = _tags(fields)
        stored.settle()
        store = self.store if not stored.file else self.file_store
        if store is not None:
            store.resized(fetch.primary, request, stored)

    def serve(self, exchange: Exchange, stored: Stored, outcome: str, detail: bytes = b"") -> bool:
        """Answer `exchange` from `stored`, now; False (nothing sent, the entry dropped) when
        its file cannot be opened."""
        # A hit is the front's busiest path: the head up to Date was made once, when the
        # entry was stored (Stored.settle); here only Date, Age and the request's own lines
        # are added, in one formatting.
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
            said = b"%bhit; ttl=%d%b\r\n" % (STATUS_FIELD, ttl, detail)
            if outcome == REVALIDATED:
                said = b"%bfwd=stale; fwd-status=304; stored; ttl=%d\r\n" % (STATUS_FIELD, ttl)
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
            self._remove(lambda _, entry: entry is stored)
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
            return self._remove(_url_matcher(url))
        if prefix:
            start = prefix.encode("latin-1")
            return self._remove(lambda key, _: key[3].startswith(start))
        wanted = tag.encode("latin-1")
        return self._remove(lambda _, stored: wanted in stored.tags)

    def _remove(self, matches: Matcher) -> int:
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


def _url_matcher(url: str) -> Matcher:
    """Whether a primary key is `url`'s: a target alone matches it on every host and scheme."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        target = url.encode("latin-1")
        return lambda key, _: key[3] == target
    host, _, path = rest.partition("/")
    whole = (scheme.lower(), host.lower().encode("latin-1"), ("/" + path).encode("latin-1"))
    return lambda key, _: (key[0], key[1], key[3]) == whole
