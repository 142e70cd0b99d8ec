"""Where a complete request goes: which app, then a static mount of that app or its dispatcher.

A connection calls :meth:`Router.head` as soon as a request head is parsed, before its body is
read, and :meth:`Router.route` when the request becomes the active one (so responses keep their
order whichever way each request goes). At the head the router settles what the rest of the
server sees of the request, chooses its app (``Exchange.target``), and asks its location's rules
(front/rules.py) whether it may go on; a refusal is answered in its turn by :meth:`Router.route`
(or at once by the connection when the request has a body it must not read). What it settles:

* who the client is: the peer as the connection saw it, or as a trusted proxy says it is
  (:mod:`maitred.front.proxy`), including HTTP_HOST from X-Forwarded-Host;
* its request id: the client's ``X-Request-ID`` (or the configured header) when it is 1-200
  printable characters, else a new random one. It travels to the worker in the REQUEST frame
  (``environ["maitred.request_id"]``), goes in the access log, and is added to the response
  head by whoever writes it: the worker (unless the app set that header itself), or the front
  for static files and its own errors (``Exchange.extra_head``).

The --health-path check is answered before static files and the app (front/health.py).
A server of one app sends every request to that app's static mounts or dispatcher, with no
lookup. With several (maitred.apps), :class:`maitred.front.routes.Routes` picks the app by Host
and path; a request no app takes is answered 404 here (routes.py says why not 421), on a
connection that stays open. Each app's static mounts see only that app's requests.

Owned by the event loop thread.
"""

from __future__ import annotations

import dataclasses
import os
import random
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

from maitred.front.exchange import STATIC
from maitred.front.proxy import FORWARDED_FIELDS, Forwarded, TrustedPeers
from maitred.front.routes import Routes
from maitred.front.rules import Refusal, Rules, parser_body_limit
from maitred.front.states import ROUTED
from maitred.http.errors import HTTPError, error_for
from maitred.http.framing import CRLF
from maitred.http.response import head_start

if TYPE_CHECKING:
    from maitred.apps import App
    from maitred.config import Config
    from maitred.front.cache import ResponseCache
    from maitred.front.dispatcher import Dispatcher
    from maitred.front.exchange import Exchange
    from maitred.front.main import Front
    from maitred.front.static import StaticFiles

# What a client-supplied request id may be: visible ASCII without quotes or backslashes, so it
# can go into a response header and a log line as it is.
_VALID_ID = re.compile(rb"[!#-\[\]-~]{1,200}")
_ID_BITS = 128  # a new id: 128 random bits, as 32 hex digits
NO_APP = 404  # a request no app takes (maitred.front.routes says why not 421)


class Target(NamedTuple):
    """Where the requests of one app go."""

    app: str  # its name as logs show it ("": the server's only app)
    dispatcher: Dispatcher
    static: StaticFiles | None
    cache: ResponseCache | None  # --cache-size: its response cache


def _static_files(cfg: Config, front: Front) -> StaticFiles:
    """An app's --static mounts, with its share of file cache (cfg.static_cache_size)."""
    # Only a front with a --static mount imports the static files' modules (and mimetypes):
    # a front without one would hold their code for nothing.
    from maitred.front.static import StaticFiles

    return StaticFiles(cfg, front.date)


class Router:
    def __init__(self, front: Front) -> None:
        cfg = front.cfg
        self.trusted = TrustedPeers(cfg.forwarded_allow_ips)
        self.forwarded = None if self.trusted.nobody else Forwarded(self.trusted)
        self.single: Target | None = None
        self.routes: Routes[Target] = Routes([])
        self.date = front.date
        self.health = front.health  # --health-path, answered before routing
        self.rules: Rules | None = None
        self.caches: dict[str, ResponseCache] = {}
        self.statics: dict[str, StaticFiles | None] = {}  # by app name, kept across tables
        self.use_apps(front)
        name = cfg.request_id_header.encode("latin-1")
        self.id_name = name.lower()
        self.id_prefix = name + b": "
        # Ids need to be unique, not secret: a PRNG seeded per front process, no system call
        # per request.
        self.random = random.Random(os.urandom(32))

    def use_apps(self, front: Front) -> None:
        """Route to the front's apps as they are now (at start, and for each new table of
        apps the master sends: front/apptable.py)."""
        # The static files' memory is the server's: the apps share it.
        cache = front.cfg.static_cache_size // max(1, len(front.apps))
        targets = [
            Target(
                app.label,
                front.dispatchers[app.name],
                self._static(front, app, cache) if app.cfg.static else None,
                self._cache(front, app),
            )
            for app in front.apps
        ]
        self.statics = {app.name: t.static for app, t in zip(front.apps, targets, strict=True)}
        # The server's only app takes every request: no lookup on the way of each.
        implicit = len(front.apps) == 1 and front.apps[0].implicit
        self.single = targets[0] if implicit else None
        # Each app's response cache, by pool name, for purges and metrics: one dict, updated
        # in place, since the counters hold it (purges read it anew: front/apptable.py).
        self.close_caches(keep=[t.cache for t in targets])
        self.caches.clear()
        self.caches.update(
            (app.name, t.cache) for app, t in zip(front.apps, targets, strict=True) if t.cache
        )
        self.routes = Routes(
            [(a.route, a.prefix, t) for a, t in zip(front.apps, targets, strict=True)]
        )
        # Rules per location (front/rules.py); None: there are none, nothing to judge. The
        # parsers of connections made from now on count bodies as the new table wants.
        cfg, apps = front.cfg, front.apps
        self.rules = (
            Rules(cfg, apps, front.health, front.limit_table) if Rules.wanted(cfg, apps) else None
        )
        front.limits = dataclasses.replace(front.limits, body=parser_body_limit(cfg, apps))

    def close_caches(self, keep: Iterable[ResponseCache | None] = ()) -> None:
        """Remove the files of the caches but those to `keep` (none: the front stops)."""
        kept = {id(cache) for cache in keep}
        for cache in self.caches.values():
            if id(cache) not in kept:
                cache.close()

    def _static(self, front: Front, app: App, cache_size: int) -> StaticFiles:
        """The app's static files: the ones it has, their file cache kept, while its settings
        and its share of the cache stay the same across new tables of apps (one app's change
        in the apps dir rebuilds that app's only)."""
        cfg = app.cfg.replace(static_cache_size=cache_size)
        static = self.statics.get(app.name)
        if static is not None and static.cfg == cfg:
            return static
        return _static_files(cfg, front)

    def _cache(self, front: Front, app: App) -> ResponseCache | None:
        """The app's response cache: the one it has, its pages kept, while its settings
        stay the same across new tables of apps."""
        if not app.cfg.cache_size:
            return None
        cache = self.caches.get(app.name)
        if cache is not None and cache.cfg == app.cfg:
            return cache
        from maitred.front.cache import ResponseCache  # only a front with a cache holds it

        return ResponseCache(front, app.cfg, app.label, front.dispatchers[app.name])

    def head(self, exchange: Exchange) -> Refusal | None:
        """Settle, once its head is complete and before its body is read, who sent the
        request, its id, the app it goes to and its location's verdict (front/rules.py):
        the answer a rule gives instead (None: it goes on)."""
        head = exchange.head
        fields = head.fields
        peer = exchange.peer  # the connection's (a gateway's proxy may name one per request)
        # Most requests carry no forwarded field (no proxy): then whether the peer is trusted
        # does not matter.
        forwarded = self.forwarded
        if (
            forwarded is not None
            and not FORWARDED_FIELDS.isdisjoint(fields)
            and self.trusted(peer[0])
        ):
            exchange.peer, host = forwarded.apply(fields, peer)
            if host is not None:
                head.set_host(host.encode("latin-1"))
        if self.id_name:
            exchange.request_id = request_id = self._request_id(fields)
            exchange.extra_head = self.id_prefix + request_id.encode("ascii") + b"\r\n"
        target = self.single
        if target is None:
            hosts = fields.get(b"host")
            target = self.routes.choose(hosts[0] if hosts else b"", head.target)
            if target is not None:
                exchange.app = target.app
        exchange.target = target
        rules = self.rules
        return rules.judge(exchange, target) if rules is not None else None

    def route(self, exchange: Exchange) -> None:
        """Its turn: the answer its rules gave, the health check, a static file or the app."""
        if exchange.refusal is not None:
            self.answer(exchange, exchange.refusal)
            return
        if exchange.not_before and self._hold(exchange):
            return
        health = self.health
        if health is not None and health.matches(exchange.head.target):
            health.serve(exchange)
            return
        target = exchange.target
        if target is None:
            self.answer(exchange, error_for(NO_APP))
            return
        static = target.static
        if static is not None:
            mount = static.match(exchange.head.target)
            if mount is not None:
                exchange.source = STATIC
                static.serve(exchange, mount)
                return
        cache = target.cache
        if cache is not None:
            cache.handle(exchange)
            return
        target.dispatcher.submit(exchange)

    def _hold(self, exchange: Exchange) -> bool:
        """A request within its location's burst waits until the rate lets it on
        (front/limits.py): here, in the front, before it takes a place in the dispatcher's
        queue or a thread. True when it waits."""
        loop = exchange.conn.front.loop
        wait = exchange.not_before - loop.time()
        exchange.not_before = 0.0
        if wait <= 0:
            return False
        loop.call_later(wait, self._release, exchange)
        return True

    def _release(self, exchange: Exchange) -> None:
        if exchange.state is ROUTED:  # else its client left meanwhile
            self.route(exchange)

    def answer(self, exchange: Exchange, error: HTTPError) -> None:
        """An answer of the front's own on a connection that goes on (no app takes the
        request: 404; a rule refused or redirects it)."""
        fields = error.fields() + exchange.extra_head
        head = b"".join((head_start(error.status), self.date.get(), CRLF, fields))
        exchange.respond_full(error.status, len(error.body), head, error.body)

    def _request_id(self, fields: dict[bytes, list[bytes]]) -> str:
        given = fields.get(self.id_name)
        if given is not None and _VALID_ID.fullmatch(given[0]):  # the first, when repeated
            return given[0].decode("ascii")
        # to_bytes().hex(), not "%032x": formatting a number that large costs twice as much.
        return self.random.getrandbits(_ID_BITS).to_bytes(_ID_BITS // 8, "big").hex()
