"""Connection timeouts (front/timeouts.py) with fake connections and a fake clock: no sleeping."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from maitred.config import Config
from maitred.front.states import ConnState, ExchangeState
from maitred.front.timeouts import ConnectionTimeouts, sweep_interval
from maitred.http.errors import ProtocolError

CFG = Config(
    keepalive=5.0,
    header_timeout=10.0,
    body_timeout=30.0,
    min_body_rate=100,
    send_timeout=20.0,
)


@dataclass
class FakeTransport:
    buffered: int = 0
    aborted: bool = False

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def abort(self) -> None:
        self.aborted = True


@dataclass
class FakeParser:
    in_head: bool = False
    messages: int = 0


@dataclass
class FakeBody:
    size: int = 0


@dataclass
class FakeExchange:
    body: FakeBody = field(default_factory=FakeBody)
    state: ExchangeState = ExchangeState.RECEIVING
    sent: int = 0


@dataclass
class FakeFlow:
    read_paused: bool = False


@dataclass(eq=False)  # hashable by identity, like a real connection
class FakeConn:
    transport: FakeTransport = field(default_factory=FakeTransport)
    parser: FakeParser = field(default_factory=FakeParser)
    reading: FakeExchange | None = None
    active: FakeExchange | None = None
    state: ConnState = ConnState.IDLE
    flow: FakeFlow = field(default_factory=FakeFlow)
    idle_since: float = 0.0
    peer: tuple[str, ...] = ("127.0.0.1",)
    rejected: list[int] = field(default_factory=list)
    closed: bool = False

    def __post_init__(self) -> None:
        if self.reading is not None or self.active is not None:
            self.state = ConnState.BUSY

    def reject(self, exc: ProtocolError) -> None:
        self.rejected.append(exc.status)
        self.state = ConnState.CLOSING

    def close(self) -> None:
        self.closed = True
        self.state = ConnState.CLOSED


class Clock:
    """Sweeps a set of connections at chosen times."""

    def __init__(self, cfg: Config = CFG) -> None:
        self.timeouts = ConnectionTimeouts(cfg)

    def at(self, now: float, *conns: FakeConn) -> None:
        self.timeouts.sweep(cast(Any, conns), now)


def test_idle_connection_closed_after_keepalive() -> None:
    conn, clock = FakeConn(idle_since=100.0), Clock()
    clock.at(104.9, conn)
    assert not conn.closed
    clock.at(105.0, conn)
    assert conn.closed and not conn.rejected  # silently: no request to answer


def test_head_timeout_counts_the_whole_head_not_the_gaps() -> None:
    conn, clock = FakeConn(parser=FakeParser(in_head=True, messages=1)), Clock()
    for now in range(10):  # bytes keep trickling in, the head never completes
        clock.at(float(now), conn)
        assert not conn.rejected
    clock.at(10.0, conn)
    assert conn.rejected == [408]


def test_each_new_head_gets_its_own_time() -> None:
    conn, clock = FakeConn(parser=FakeParser(in_head=True, messages=1)), Clock()
    clock.at(0.0, conn)
    conn.parser.messages = 2  # the first request completed, a second one began
    clock.at(9.0, conn)
    clock.at(18.0, conn)
    assert not conn.rejected
    clock.at(19.0, conn)
    assert conn.rejected == [408]


def test_a_head_the_front_stopped_reading_does_not_time_out() -> None:
    conn = FakeConn(parser=FakeParser(in_head=True, messages=1), flow=FakeFlow(read_paused=True))
    clock = Clock()
    clock.at(0.0, conn)
    clock.at(100.0, conn)
    assert not conn.rejected


def body_conn(**kwargs: Any) -> tuple[FakeConn, FakeExchange]:
    exchange = FakeExchange(**kwargs)
    return FakeConn(reading=exchange), exchange


def test_a_stalled_body_times_out_after_one_period() -> None:
    conn, exchange = body_conn()
    clock = Clock(CFG.replace(min_body_rate=0))
    clock.at(0.0, conn)
    exchange.body.size = 1000
    clock.at(29.0, conn)
    clock.at(30.0, conn)  # the first period brought bytes: a new one starts
    assert not conn.rejected
    clock.at(59.0, conn)
    clock.at(60.0, conn)  # nothing in the second period
    assert conn.rejected == [408]


def test_a_body_slower_than_the_minimum_rate_times_out() -> None:
    conn, exchange = body_conn()
    clock = Clock()  # 100 bytes/s over 30 s periods: 3000 bytes a period
    clock.at(0.0, conn)
    for now in range(1, 31):
        exchange.body.size += 99  # a byte a second short of the rate
        clock.at(float(now), conn)
    assert conn.rejected == [408]


def test_a_body_at_the_minimum_rate_goes_on() -> None:
    conn, exchange = body_conn()
    clock = Clock()
    clock.at(0.0, conn)
    for now in range(1, 91):
        exchange.body.size += 100
        clock.at(float(now), conn)
    assert not conn.rejected


def test_a_body_waiting_for_100_continue_does_not_time_out() -> None:
    conn, _ = body_conn(state=ExchangeState.HELD)
    clock = Clock()
    clock.at(0.0, conn)
    clock.at(100.0, conn)
    assert not conn.rejected


def test_a_client_that_stops_reading_is_dropped() -> None:
    exchange = FakeExchange(sent=4 << 20)
    conn = FakeConn(active=exchange, transport=FakeTransport(buffered=1 << 20))
    clock = Clock()
    clock.at(0.0, conn)
    exchange.sent += 1 << 20  # the app wrote more; the client read nothing of it
    conn.transport.buffered += 1 << 20
    clock.at(19.0, conn)
    assert not conn.transport.aborted
    clock.at(20.0, conn)
    assert conn.transport.aborted


def test_a_slow_reader_that_reads_is_kept() -> None:
    exchange = FakeExchange(sent=4 << 20)
    conn = FakeConn(active=exchange, transport=FakeTransport(buffered=1 << 20))
    clock = Clock()
    for now in range(0, 100, 10):
        clock.at(float(now), conn)
        exchange.sent += 1000
        conn.transport.buffered += 999  # one byte a period reaches the client
    assert not conn.transport.aborted


def test_a_closing_connection_that_never_drains_is_dropped() -> None:
    conn = FakeConn(state=ConnState.CLOSING, transport=FakeTransport(buffered=100))
    clock = Clock()
    clock.at(0.0, conn)
    clock.at(20.0, conn)
    assert conn.transport.aborted


def test_zero_disables_a_timeout() -> None:
    conn = FakeConn(parser=FakeParser(in_head=True, messages=1))
    clock = Clock(CFG.replace(header_timeout=0.0))
    clock.at(0.0, conn)
    clock.at(1000.0, conn)
    assert not conn.rejected


@pytest.mark.parametrize(
    ("changes", "interval"),
    [({}, 1.0), ({"header_timeout": 1.0}, 0.25), ({"keepalive": 0.0, "send_timeout": 0.01}, 0.05)],
)
def test_sweep_interval_follows_the_shortest_timeout(
    changes: dict[str, float], interval: float
) -> None:
    assert sweep_interval(CFG.replace(**changes)) == interval
