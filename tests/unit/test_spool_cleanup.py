"""When a spooled request body is removed: never before the worker is done with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from maitred.front.exchange import Exchange
from maitred.front.spool import Body
from maitred.front.states import ExchangeState
from maitred.http.parser import RequestHead

BUFFER = 1024


class FakeLoop:
    def time(self) -> float:
        return 0.0


class FakeFront:
    loop = FakeLoop()


class FakeConn:
    front = FakeFront()
    peer = ("127.0.0.1", "1", "127.0.0.1", "80", "http")
    closing = False

    def write(self, data: bytes) -> None:
        pass

    def abort_after_write(self) -> None:
        pass

    def exchange_done(self, exchange: Exchange) -> None:
        pass


class FakeLink:
    def __init__(self) -> None:
        self.cancelled: list[int] = []

    def cancel(self, rid: int) -> None:
        self.cancelled.append(rid)


def spooled_exchange(tmp_path: Path) -> tuple[Exchange, Path]:
    body = Body(BUFFER, str(tmp_path))
    body.add(b"x" * (2 * BUFFER))
    head = RequestHead(b"POST", b"/", "1.1", [], True)
    exchange = Exchange(cast(Any, FakeConn()), head, body)
    body.end()
    exchange.state = ExchangeState.ROUTED  # complete, its turn: as its connection moves it
    _, path = body.finish()
    return exchange, Path(path)


def test_a_queued_request_cancelled_removes_its_body_at_once(tmp_path: Path) -> None:
    exchange, path = spooled_exchange(tmp_path)
    exchange.cancel()
    assert not path.exists()


def test_a_dispatched_request_cancelled_keeps_its_body_until_the_worker_is_done(
    tmp_path: Path,
) -> None:
    exchange, path = spooled_exchange(tmp_path)
    worker = FakeLink()
    exchange.attach(cast(Any, worker), 7)
    exchange.cancel()
    assert worker.cancelled == [7]
    assert path.exists(), "the worker may not have opened it yet"
    exchange.respond_abort()  # the worker's ABORT: its thread is done with the request
    assert not path.exists()
