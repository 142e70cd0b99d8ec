"""Where a complete request goes: which app, then a static mount of that app or its dispatcher.

A connection calls :meth:`Router.route` when one of its requests becomes the active one (so
responses keep their order whichever way each request goes). Before choosing, the router settles
what the rest of the server sees of the request:

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

import os
import random
import re
from typing import TYPE_CHECKING, NamedTuple

from maitred.front.cache import ResponseCache
from maitred.front.exchange import STATIC
from maitred.front.proxy import FORWARDED_FIELDS, Forwarded, TrustedPeers
from maitred.front.routes import Routes
from maitred.front.static import StaticFiles
from maitred.http.errors import error_for
from maitred.http.framing import CRLF
from maitred.http.response import HEAD_STARTS

if TYPE_CHECKING:
    from maitred.front.dispatcher import Dispatcher
    from maitred.front.exchange import Exchange
    from maitred.front.main import Front

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


class Router:
    def __init__(self, front: Front) -> None:
        cfg = front.cfg
        self.trusted = TrustedPeers(cfg.forwarded_allow_ips)
        self.forwarded = None if self.trusted.nobody else Forwarded(self.trusted)
        # The static files' memory is the server's: the apps share it.
        cache = cfg.static_cache_size // len(front.apps)
        targets = [
            Target(
                app.label,
                front.dispatchers[app.name],
                StaticFiles(app.cfg.replace(static_cache_size=cache), front.date)
                if app.cfg.static
                else None,
                ResponseCache(front, app.cfg, app.label, front.dispatchers[app.name])
                if app.cfg.cache_size
                else None,
            )
            for app in front.apps
        ]
        # One app: no lookup on the way of each request.
        self.single = targets[0] if len(targets) == 1 else None
        # Each app's response cache, by pool name, for purges and metrics.
        self.caches = {
            app.name: t.cache for app, t in zip(front.apps, targets, strict=True) if t.cache
        }
        self.routes = Routes(
            [(a.route, a.prefix, t) for a, t in zip(front.apps, targets, strict=True)]
        )
        self.date = front.date
        self.health = front.health  # --health-path, answered before routing
        name = cfg.request_id_header.encode("latin-1")
        self.id_name = name.lower()
        self.id_prefix = name + b": "
        # Ids need to be unique, not secret: a PRNG seeded per front process, no system call
        # per request.
        self.random = random.Random(os.urandom(32))

    def route(self, exchange: Exchange) -> None:
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
        health = self.health
        if health is not None and health.matches(head.target):
            health.serve(exchange)
            return
        target = self.single
        if target is None:
            hosts = fields.get(b"host")
            target = self.routes.choose(hosts[0] if hosts else b"", head.target)
            if target is None:
                self._no_app(exchange)
                return
            exchange.app = target.app
        static = target.static
        if static is not None:
            mount = static.match(head.target)
            if mount is not None:
                exchange.source = STATIC
                static.serve(exchange, mount)
                return
        cache = target.cache
        if cache is not None:
            cache.handle(exchange)
            return
        target.dispatcher.submit(exchange)

    def _no_app(self, exchange: Exchange) -> None:
        """No app takes the request: 404, and the connection goes on."""
        error = error_for(NO_APP)
        fields = error.fields() + exchange.extra_head
        head = b"".join((HEAD_STARTS[NO_APP], self.date.get(), CRLF, fields))
        exchange.respond_full(NO_APP, len(error.body), head, error.body)

    def _request_id(self, fields: dict[bytes, list[bytes]]) -> str:
        given = fields.get(self.id_name)
        if given is not None and _VALID_ID.fullmatch(given[0]):  # the first, when repeated
            return given[0].decode("ascii")
        # to_bytes().hex(), not "%032x": formatting a number that large costs twice as much.
        return self.random.getrandbits(_ID_BITS).to_bytes(_ID_BITS // 8, "big").hex()
