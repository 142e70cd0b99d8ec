"""Which app serves a request: by Host, then by the longest path prefix. Pure; no I/O.

Theory of operation
-------------------
:class:`Routes` is built once per front from the apps' routing (maitred.apps.Route) and asked
once per request, in :meth:`Routes.choose`:

1. The Host is normalised: lower case, the port and a trailing dot dropped (``Shop.Example.COM.:
   8000`` is ``shop.example.com``; an IPv6 literal keeps its brackets).
2. The apps that name that host exactly are the candidates; if none does, the apps of the most
   specific ``*.`` wildcard that matches it (``*.example.com`` matches ``a.example.com`` and
   ``a.b.example.com``, not ``example.com``); if none does, the apps marked ``default = true``
   and those that name no host at all.
3. Among the candidates, the longest path prefix that matches on a segment boundary wins:
   ``/shop`` takes ``/shop``, ``/shop/x`` and ``/shop?q``, not ``/shopping``; the prefix ""
   takes every path. The path is compared percent-decoded, as the worker's PATH_INFO is.

A request no app takes gets 404 from the front (maitred.front.router). Not 421 Misdirected
Request: 421 asks a client to retry on another connection, which helps an HTTP/2 client that
reused a connection for several origins; an HTTP/1.1 client has nothing to retry, and a 404 is
what nginx's default server block and the peers behind it have always answered, so monitoring
and users read it as they expect.

Owned by the event loop thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar
from urllib.parse import unquote_to_bytes

from maitred.apps import Route

T = TypeVar("T")
WILDCARD = b"*."

# Candidates for one Host: (prefix, the prefix followed by "/", app), longest prefix first.
Candidates = list[tuple[bytes, bytes, T]]


def host_name(host: bytes) -> bytes:
    """A Host field's name as apps list it: lower case, without port or trailing dot."""
    if host.startswith(b"["):  # an IPv6 literal, [::1]:8000
        return host[: host.find(b"]") + 1].lower()
    name = host.partition(b":")[0]
    return name.rstrip(b".").lower()


def request_path(target: bytes) -> bytes:
    """The path of a request target as routing compares it: without the query, absolute-form's
    scheme and authority, and percent-escapes."""
    path = target.partition(b"?")[0]
    if not path.startswith(b"/"):
        _, sep, rest = path.partition(b"://")
        path = b"/" + rest.partition(b"/")[2] if sep else path
    return unquote_to_bytes(path) if path.find(b"%") >= 0 else path


class Routes(Generic[T]):
    """The routing table of a front's apps (each given as its route, its prefix and itself)."""

    def __init__(self, apps: Sequence[tuple[Route, str, T]]) -> None:
        self.exact: dict[bytes, Candidates[T]] = {}
        self.wildcards: list[tuple[bytes, Candidates[T]]] = []  # (".example.com", ...)
        self.default: Candidates[T] = []
        suffixes: dict[bytes, Candidates[T]] = {}
        for route, prefix, app in apps:
            entry = (prefix.encode("latin-1"), prefix.encode("latin-1") + b"/", app)
            for host in route.hosts:
                name = host.encode("ascii")  # maitred.apps.HOST allows no other
                if name.startswith(WILDCARD):
                    suffixes.setdefault(name[1:], []).append(entry)
                else:
                    self.exact.setdefault(name, []).append(entry)
            if route.any_host:
                self.default.append(entry)
        self.wildcards = sorted(suffixes.items(), key=lambda item: len(item[0]), reverse=True)
        for candidates in (*self.exact.values(), *suffixes.values(), self.default):
            candidates.sort(key=lambda entry: len(entry[0]), reverse=True)

    def choose(self, host: bytes, target: bytes) -> T | None:
        """The app that serves a request for `host` (its Host field) and `target`, if any.
        An absolute-form target's authority is the host (RFC 9112 section 3.2.2)."""
        if not target.startswith(b"/"):
            _, sep, rest = target.partition(b"://")
            host = rest.partition(b"/")[0].partition(b"?")[0] if sep else host
        name = host_name(host)
        candidates = self.exact.get(name)
        if candidates is None:
            candidates = self.default
            for suffix, matching in self.wildcards:
                if name.endswith(suffix) and len(name) > len(suffix):
                    candidates = matching
                    break
        path = request_path(target)
        for prefix, under, app in candidates:
            if not prefix or path == prefix or path.startswith(under):
                return app
        return None
