"""A spooled request body: a descriptor without a name once whole, closed by whoever holds it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

import pytest

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
    client_dn = ""

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


def spooled_exchange(tmp_path: Path) -> Exchange:
    body = Body(BUFFER, str(tmp_path))
    body.add(b"x" * (2 * BUFFER))
    head = RequestHead(b"POST", b"/", "1.1", [], True)
    exchange = Exchange(cast(Any, FakeConn()), head, body)
    body.end()
    exchange.state = ExchangeState.ROUTED  # complete, its turn: as its connection moves it
    return exchange


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_a_whole_body_is_a_descriptor_without_a_name(tmp_path: Path) -> None:
    exchange = spooled_exchange(tmp_path)
    assert list(tmp_path.iterdir()) == []  # nobody can open it by a name
    fd = exchange.body.fd
    assert os.pread(fd, 4 * BUFFER, 0) == b"x" * (2 * BUFFER)
    assert os.get_blocking(fd) and not os.get_inheritable(fd)
    with pytest.raises(OSError):
        os.write(fd, b"y")  # read-only: the worker that gets it cannot change it
    exchange.cancel()


def test_a_queued_request_cancelled_closes_its_body_at_once(tmp_path: Path) -> None:
    exchange = spooled_exchange(tmp_path)
    fd = exchange.body.fd
    exchange.cancel()
    assert not is_open(fd)


def test_a_dispatched_body_is_the_dispatchers_to_send_and_close(tmp_path: Path) -> None:
    exchange = spooled_exchange(tmp_path)
    frame, fd = exchange.request_frame(7)
    assert fd >= 0 and b"".join(frame)
    exchange.attach(cast(Any, FakeLink()), 7)
    exchange.cancel()
    exchange.respond_abort()  # the worker's ABORT: over
    assert is_open(fd)  # the dispatcher's now (it goes with the REQUEST, then is closed)
    os.close(fd)
