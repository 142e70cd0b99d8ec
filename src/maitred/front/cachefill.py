"""A request the response cache sends to the app: its response recorded on its way out.

Theory of operation
-------------------
When the cache (maitred.front.cache) forwards a GET to the app, it turns the exchange into a
:class:`CachedExchange`: the same object, its class changed in place (it adds no slots, so
Python allows it). Only exchanges of cached apps pay for what follows; every other exchange
keeps the plain methods of maitred.front.exchange and the cache costs them nothing.

The subclass watches the response frames as they pass through:

* the head: parsed into fields once, to decide with maitred.http.caching whether the response
  may be stored, and to add ``Cache-Status`` (RFC 9211) when asked;
* the body: kept while it stays under --cache-max-object;
* the end: the whole response goes to the cache's store, and the requests that waited for
  this fetch (a stampede of misses for one key) are answered from it. A body with a
  Content-Length ends with its last byte, not with the worker's END frame: the client may have
  that byte, and ask again, before END is read, and must find the page stored.

A fetch that revalidates a stale entry sends the app its validators (If-None-Match,
If-Modified-Since) as extra request fields, in the REQUEST frame only: the exchange's own head,
which the cache reads again to answer the client, keeps the client's fields. The app's 304 to
them answers the client from the refreshed entry (maitred.front.cachefetch.Fetch.revalidated).

When the app fails (a 5xx head, the front's own 502/503/504: a dead worker, a full queue, a
timeout) and a stale entry may stand in for errors (stale-if-error), the client gets that entry
instead; a 5xx whose body was still to come has its thread told to stop (CANCEL).

A refresh that no client waits for (stale-while-revalidate) runs on a :class:`NoClient`: the
few methods of a client connection an exchange calls, writing nowhere.

Owned by the event loop thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from maitred import link
from maitred.front.exchange import Exchange
from maitred.front.states import COMPLETE, GONE, ROUTE
from maitred.http import framing
from maitred.http.caching import Fields

if TYPE_CHECKING:
    from maitred.front.cachefetch import Fetch
    from maitred.front.main import Front

SERVER_ERROR = 500
NOT_MODIFIED = 304


def parse_head(head: bytes) -> tuple[bytes, Fields, list[bytes]]:
    """A head as a worker writes it (status line, then ``Name: value`` lines, each ending in
    CRLF): its status line, its fields by lower-case name, and its lines."""
    status_line, _, rest = head.partition(b"\r\n")
    lines = rest.split(b"\r\n")
    fields: Fields = {}
    for line in lines:
        name, sep, value = line.partition(b":")
        if sep:
            fields.setdefault(name.strip().lower(), []).append(value.strip())
    return status_line + b"\r\n", fields, lines


class CachedExchange(Exchange):
    """An exchange whose response the cache records (see the module docstring)."""

    __slots__ = ()

    def _fetch(self) -> Fetch:
        fetch = self.cache_fetch
        assert fetch is not None
        return fetch

    def request_frame(self, rid: int) -> tuple[list[link.Chunk], int]:
        extra = self._fetch().validators
        if not extra:
            return Exchange.request_frame(self, rid)
        head = self.head
        headers = head.headers
        head.headers = headers + extra  # for the frame only: see the module docstring
        try:
            return Exchange.request_frame(self, rid)
        finally:
            head.headers = headers

    def respond_head(self, status: int, length: int, head: bytes) -> None:
        if self.state in GONE:
            return
        fetch = self._fetch()
        if (status >= SERVER_ERROR and fetch.stand_in(self)) or (
            status == NOT_MODIFIED and fetch.revalidated(self, head)
        ):
            fetch.swallowing = True  # the rest of the app's answer is not the client's
            return
        Exchange.respond_head(self, status, length, fetch.head(self, status, length, head))

    def respond_body(self, data: bytes) -> None:
        fetch = self._fetch()
        if fetch.swallowing:
            return  # a 5xx answered from a stale entry: the thread was told to stop
        if self.state not in GONE:
            fetch.body(data)
            if fetch.size == fetch.length:
                # Every declared byte came: stored now, not at the worker's END, which may be
                # read after the client, holding its last byte, asked again.
                fetch.complete = True
                fetch.over(self)
        Exchange.respond_body(self, data)

    def respond_end(self) -> None:
        fetch = self._fetch()
        if fetch.swallowing:
            return
        fetch.complete = self.state not in GONE
        Exchange.respond_end(self)

    def respond_full(self, status: int, length: int, head: bytes, body: bytes) -> None:
        if self.state in GONE:
            Exchange.respond_full(self, status, length, head, body)
            return
        fetch = self._fetch()
        if status >= SERVER_ERROR and fetch.stand_in(self):
            return
        if status == NOT_MODIFIED and fetch.revalidated(self, head):
            return
        head = fetch.head(self, status, length, head)
        fetch.body(body)
        fetch.complete = True
        Exchange.respond_full(self, status, length, head, body)

    def respond_error(self, status: int, extra: bytes = b"") -> None:
        if self.state not in GONE and self._fetch().stand_in(self):
            return
        Exchange.respond_error(self, status, extra)

    def _done(self) -> None:
        Exchange._done(self)
        self._fetch().over(self)


class _NoFlow:
    write_paused = False


class NoClient:
    """The client of a refresh nobody waits for: what an exchange calls of its connection."""

    def __init__(self, front: Front, peer: tuple[str, str, str, str, str]) -> None:
        self.front = front
        self.peer = peer
        self.client_dn = ""
        self.flow = _NoFlow()

    def write(self, data: bytes) -> None:
        pass  # nobody reads it: the cache keeps what it needs

    frame = staticmethod(framing.frame)

    def last_answer(self) -> bool:
        return False

    def abort_after_write(self) -> None:
        pass

    def exchange_done(self, exchange: Exchange) -> None:
        pass  # not a client's request: neither logged nor counted


def refresh_exchange(front: Front, model: Exchange) -> CachedExchange:
    """A request like `model`'s (a GET without a body) for the app, with no client: a
    stale-while-revalidate refresh, ROUTED to go to a thread."""
    conn = NoClient(front, model.peer)
    exchange = CachedExchange(conn, model.head, None)  # type: ignore[arg-type]
    exchange.state = ROUTE[COMPLETE[exchange.state]]
    exchange.request_id = model.request_id
    exchange.app = model.app
    exchange.peer = model.peer
    return exchange
