"""A cacheable response is stored when its body is whole, not when the worker's END is read.

The client has every byte once the Content-Length is reached and may ask again at once; the
worker's END frame can be read in a later turn of the front's loop. These tests drive a
ResponseCache and its CachedExchange in that order, with fake connections: no sockets.
"""

from __future__ import annotations

from typing import Any, cast

from maitred.config import Config
from maitred.front.cache import ResponseCache
from maitred.front.cachefetch import HIT, MISS
from maitred.front.exchange import Exchange
from maitred.front.states import COMPLETE, ROUTE, ExchangeState
from maitred.http import framing
from maitred.http.parser import RequestHead

BODY = b"a page for everyone\n"
HEAD = b"HTTP/1.1 200 OK\r\nCache-Control: s-maxage=60\r\nContent-Length: %d\r\n" % len(BODY)


class FakeLoop:
    def time(self) -> float:
        return 100.0

    def call_later(self, delay: float, callback: Any, *args: Any) -> Any:
        return cast(Any, FakeTimer())


class FakeTimer:
    def cancel(self) -> None:
        pass


class FakeDate:
    def get(self) -> bytes:
        return b"Mon, 07 Dec 2026 21:00:00 GMT"


class FakeRouter:
    id_name = b"x-request-id"


class FakeFront:
    loop = FakeLoop()
    date = FakeDate()
    router = FakeRouter()
    stopping = False


class FakeFlow:
    write_paused = False


class FakeConn:
    front = FakeFront()
    peer = ("127.0.0.1", "1", "127.0.0.1", "80", "http")
    client_dn = ""
    flow = FakeFlow()
    frame = staticmethod(framing.frame)

    def __init__(self) -> None:
        self.written = b""

    def write(self, data: bytes) -> None:
        self.written += data

    def last_answer(self) -> bool:
        return False

    def abort_after_write(self) -> None:
        pass

    def exchange_done(self, exchange: Exchange) -> None:
        pass


class FakeWorker:
    def credit(self, rid: int, size: int) -> None:
        pass

    def cancel(self, rid: int) -> None:
        pass


class FakeDispatcher:
    def __init__(self) -> None:
        self.submitted: list[Exchange] = []

    def submit(self, exchange: Exchange) -> None:
        self.submitted.append(exchange)
        exchange.attach(cast(Any, FakeWorker()), len(self.submitted))


def request(cache: ResponseCache) -> tuple[Exchange, FakeConn]:
    conn = FakeConn()
    head = RequestHead(b"GET", b"/shared/", "1.1", [(b"Host", b"example.test")], True)
    exchange = Exchange(cast(Any, conn), head, None)
    exchange.state = ROUTE[COMPLETE[exchange.state]]  # as the router hands it over
    cache.handle(exchange)
    return exchange, conn


def make_cache() -> tuple[ResponseCache, FakeDispatcher]:
    dispatcher = FakeDispatcher()
    cfg = Config(cache_size=1 << 20, cache_status_header=True)
    return ResponseCache(cast(Any, FakeFront()), cfg, "main", cast(Any, dispatcher)), dispatcher


def test_a_request_after_the_last_byte_but_before_end_is_a_hit() -> None:
    cache, dispatcher = make_cache()
    first, _ = request(cache)
    assert dispatcher.submitted == [first] and first.cache == MISS
    first.respond_head(200, len(BODY), HEAD)
    first.respond_body(BODY[:5])
    first.respond_body(BODY[5:])  # the client has the whole response now
    second, conn = request(cache)
    assert dispatcher.submitted == [first], "the second request went to the app"
    assert second.cache == HIT and conn.written.endswith(BODY)
    first.respond_end()  # the worker's END, read later: changes nothing
    assert first.state is ExchangeState.DONE
    third, _ = request(cache)
    assert third.cache == HIT and dispatcher.submitted == [first]


def test_a_request_while_the_body_is_partial_waits_and_is_answered_from_the_store() -> None:
    cache, dispatcher = make_cache()
    first, _ = request(cache)
    first.respond_head(200, len(BODY), HEAD)
    first.respond_body(BODY[:5])
    second, conn = request(cache)
    assert conn.written == b"" and dispatcher.submitted == [first]  # it waits on the fetch
    first.respond_body(BODY[5:])
    assert second.cache == HIT and conn.written.endswith(BODY)
    first.respond_end()
    assert dispatcher.submitted == [first]


def test_a_body_cut_short_is_not_stored() -> None:
    cache, dispatcher = make_cache()
    first, _ = request(cache)
    first.respond_head(200, len(BODY), HEAD)
    first.respond_body(BODY[:5])
    first.respond_abort()  # the app failed mid-body
    second, _ = request(cache)
    assert second.cache == MISS and dispatcher.submitted == [first, second]


def test_a_client_that_leaves_after_the_last_byte_leaves_the_page_stored() -> None:
    cache, dispatcher = make_cache()
    first, _ = request(cache)
    first.respond_head(200, len(BODY), HEAD)
    first.respond_body(BODY)
    first.cancel()  # it read every byte and closed before the worker's END was read
    first.respond_end()
    second, conn = request(cache)
    assert second.cache == HIT and conn.written.endswith(BODY)
    assert dispatcher.submitted == [first]


def test_a_client_that_leaves_mid_body_leaves_nothing_stored() -> None:
    cache, dispatcher = make_cache()
    first, _ = request(cache)
    first.respond_head(200, len(BODY), HEAD)
    first.respond_body(BODY[:5])
    first.cancel()
    first.respond_body(BODY[5:])  # the rest still comes, for nobody
    first.respond_end()
    second, _ = request(cache)
    assert second.cache == MISS and dispatcher.submitted == [first, second]


def test_the_connection_fields_of_a_stored_response_are_not_replayed() -> None:
    """Connection and Keep-Alive describe the connection a response first went out on (a
    WSGI worker refuses them, another sender of frames may not): a hit never repeats them,
    nor the stored request id."""
    cache, dispatcher = make_cache()
    first, _ = request(cache)
    per_connection = b"Connection: close\r\nKeep-Alive: timeout=5\r\nX-Request-ID: first\r\n"
    first.respond_full(200, len(BODY), HEAD + per_connection, BODY)
    second, conn = request(cache)
    assert second.cache == HIT and dispatcher.submitted == [first]
    head = conn.written.partition(b"\r\n\r\n")[0].lower()
    assert b"cache-control: s-maxage=60" in head
    for name in (b"connection:", b"keep-alive:", b"x-request-id: first"):
        assert name not in head
