"""A client connection's lifecycle (front/connection.py, front/exchange.py, front/states.py),
driven through a fake transport, a fake loop and fake workers: no sockets, no sleeping."""

from __future__ import annotations

import pytest
from test_dispatcher import Setup, get, requests, worker_frame

from maitred import link
from maitred.front.exchange import Exchange
from maitred.front.flow import MAX_PIPELINED, RESUME_PIPELINED
from maitred.front.slots import Slot
from maitred.front.states import (
    CANCEL,
    FINISH,
    HEAD_IN,
    SLOT_OF,
    START,
    ConnState,
    ExchangeState,
    IllegalMove,
)

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
UPLOAD = b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
CHUNKED_HEAD = (200, -1, b"HTTP/1.1 200 OK\r\n")


class Client:
    """One connection of a front with one worker, and what the front logged."""

    def __init__(self, threads: int = 2, **settings: object) -> None:
        self.s = Setup(**settings)
        self.worker = self.s.worker(1, threads)
        self.conn, self.transport = self.s.connect()
        self.logged: list[Exchange] = []
        self.s.front.log_access = self.logged.append  # type: ignore[method-assign]

    def send(self, data: bytes) -> None:
        self.conn.data_received(data)

    def started(self) -> list[tuple[int, bytes]]:
        """(rid, target) of the requests the worker was given since the last call."""
        return requests(self.s.sent(self.worker))

    def frame(self, kind: int, rid: int, value: object = ()) -> None:
        self.worker.data_received(worker_frame(kind, rid, value))


def test_pipelined_requests_run_one_at_a_time_and_are_answered_in_order() -> None:
    c = Client()
    assert c.conn.state is ConnState.NEW and c.conn.slot() is Slot.HEAD
    c.send(get("/one") + get("/two"))
    [(first, target)] = c.started()  # a second thread is free, but responses go in order
    assert target == b"/one"
    assert c.conn.state is ConnState.BUSY and c.conn.slot() is Slot.IN_USE
    assert [e.state for e in c.conn.pipeline] == [ExchangeState.PIPELINED]
    c.s.answer(c.worker, first, b"first")
    [(second, target)] = c.started()
    assert target == b"/two"
    c.s.answer(c.worker, second, b"second")
    written = c.transport.written
    assert written.index(b"first") < written.index(b"second")
    assert [e.status for e in c.logged] == [200, 200]
    assert c.conn.state is ConnState.IDLE and c.conn.slot() is Slot.IDLE
    c.send(b"GET /three HTTP/1.1\r\n")  # part of the next head
    assert c.conn.slot() is Slot.HEAD


def test_too_many_pipelined_requests_pause_reading_until_half_are_answered() -> None:
    c = Client(threads=1)
    c.send(get() * (MAX_PIPELINED + 1))
    assert c.transport.reading_paused and c.conn.flow.read_paused
    while len(c.conn.pipeline) >= RESUME_PIPELINED:
        assert c.transport.reading_paused
        [(rid, _)] = c.started()
        c.s.answer(c.worker, rid)
    assert not c.transport.reading_paused


def test_100_continue_at_once_when_nothing_is_being_answered() -> None:
    c = Client()
    c.send(UPLOAD + b"Expect: 100-continue\r\n\r\n")
    assert c.transport.written == CONTINUE
    assert c.conn.reading is not None and c.conn.reading.state is ExchangeState.RECEIVING


def test_100_continue_waits_for_the_earlier_response() -> None:
    c = Client()
    c.send(get("/one") + UPLOAD + b"Expect: 100-continue\r\n\r\n")
    [(first, _)] = c.started()
    assert CONTINUE not in c.transport.written
    assert c.conn.reading is not None and c.conn.reading.state is ExchangeState.HELD
    c.s.answer(c.worker, first)
    assert c.transport.written.startswith(b"HTTP/1.1 200 OK")
    assert c.transport.written.endswith(CONTINUE)  # after the answer, not before
    assert c.conn.reading.state is ExchangeState.RECEIVING
    c.send(b"abc")
    assert [target for _, target in c.started()] == [b"/up"]


def test_a_client_that_leaves_mid_request_is_logged_400_and_never_runs() -> None:
    c = Client()
    c.send(UPLOAD + b"\r\na")
    exchange = c.conn.reading
    c.conn.connection_lost(None)
    assert c.started() == []
    assert c.logged == [exchange] and exchange is not None
    assert (exchange.status, exchange.state) == (400, ExchangeState.DONE)
    assert c.conn.state is ConnState.CLOSED and c.conn.slot() is Slot.IN_USE


def test_a_client_that_leaves_mid_response_holds_the_thread_until_the_worker_ends() -> None:
    c = Client()
    c.send(get() + get("/never"))
    [(rid, _)] = c.started()
    exchange = c.worker.exchanges[rid]
    c.frame(link.Kind.HEAD, rid, CHUNKED_HEAD)
    c.frame(link.Kind.BODY, rid, b"x" * 10)
    assert exchange.state is ExchangeState.RESPONDING
    c.s.sent(c.worker)  # the credit
    c.conn.eof_received()
    assert exchange.state is ExchangeState.CANCELLED
    assert [kind for kind, _, _ in c.s.sent(c.worker)] == [link.Kind.CANCEL]
    assert c.logged == []  # logged once it is over
    c.frame(link.Kind.BODY, rid, b"y" * 10)  # written before the worker saw CANCEL: dropped
    c.frame(link.Kind.END, rid)
    assert exchange.state is ExchangeState.DONE
    assert c.logged == [exchange]  # the pipelined request is dropped unlogged
    assert (exchange.status, exchange.sent) == (200, 10)
    assert c.started() == [] and not c.worker.exchanges


def test_a_bad_request_in_a_pipeline_is_answered_after_the_earlier_ones_then_lingers() -> None:
    c = Client()
    c.send(get("/one") + b"GET / HTTP/1.1\r\nno colon\r\n\r\n")
    [(rid, _)] = c.started()
    assert c.conn.state is ConnState.CLOSING and c.conn.pending_error.status == 400
    assert c.transport.written == b""
    c.s.answer(c.worker, rid)
    head, error = c.transport.written.split(b"ok", 1)
    assert head.startswith(b"HTTP/1.1 200") and b"Connection: close" not in head
    assert error.startswith(b"HTTP/1.1 400")
    assert c.conn.state is ConnState.LINGERING and c.transport.eof
    c.send(get("/after"))  # read and thrown away
    assert c.started() == [] and c.conn.slot() is Slot.IN_USE


def test_the_answer_to_a_last_request_closes_at_once_when_nothing_more_came() -> None:
    c = Client()
    c.send(get("/", "Connection: close\r\n"))
    [(rid, _)] = c.started()
    c.s.answer(c.worker, rid)
    assert b"Connection: close" in c.transport.written
    assert c.transport.closed and not c.transport.eof  # no shutdown, no lingering
    assert c.s.loop.timers == []


@pytest.mark.parametrize("apart", [False, True], ids=["one read", "two reads"])
def test_the_answer_to_a_last_request_lingers_when_the_client_sent_more(apart: bool) -> None:
    """Closed at once, the socket would answer what the client still sends with RST."""
    c = Client()
    last, more = get("/", "Connection: close\r\n"), get("/more")
    for data in (last, more) if apart else (last + more,):
        c.send(data)
    [(rid, _)] = c.started()
    c.s.answer(c.worker, rid)
    assert c.conn.state is ConnState.LINGERING and c.transport.eof and not c.transport.closed
    c.send(get("/after"))  # read and thrown away
    assert c.started() == []


def test_an_early_answer_lingers_then_closes() -> None:
    c = Client(limit_request_body=10)
    c.send(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n" + b"x" * 100)
    assert c.transport.written.startswith(b"HTTP/1.1 413")
    assert c.conn.state is ConnState.LINGERING and c.transport.eof and not c.transport.closed
    c.send(b"x" * 100)
    [timer] = c.s.loop.timers
    timer.callback()  # the client took too long to close
    assert c.transport.closed
    c.conn.connection_lost(None)
    assert c.conn.state is ConnState.CLOSED and timer.cancelled


def test_requests_behind_an_answer_that_closes_go_unanswered() -> None:
    """The same bytes carry a request answered (503, closing) at once and one after it."""
    c = Client(threads=0, max_queue=1)
    other, _ = c.s.connect()
    other.data_received(get("/queued"))  # fills the queue
    c.send(get("/shed") + get("/after"))
    assert c.transport.written.startswith(b"HTTP/1.1 503")
    assert c.transport.written.count(b"HTTP/1.1") == 1
    assert c.conn.state is ConnState.CLOSED and c.transport.closed


def test_a_kept_alive_connection_expires_after_keepalive_but_not_while_busy() -> None:
    c = Client(keepalive=5.0)
    sweep = c.s.front.timeouts.sweep
    c.send(get())
    [(rid, _)] = c.started()
    sweep(c.s.front.connections, c.s.loop.now + 60.0)
    assert not c.transport.closed  # its request runs: not idle
    c.s.loop.now += 1.0
    c.s.answer(c.worker, rid)
    assert c.conn.state is ConnState.IDLE
    sweep(c.s.front.connections, c.s.loop.now + 4.9)
    assert not c.transport.closed
    sweep(c.s.front.connections, c.s.loop.now + 5.0)
    assert c.transport.closed and c.conn.state is ConnState.CLOSED


def test_a_move_the_table_does_not_allow_raises_naming_event_and_state() -> None:
    with pytest.raises(IllegalMove, match="start on a thread is not allowed in state DONE"):
        START[ExchangeState.DONE]
    with pytest.raises(IllegalMove, match="request head is not allowed in state LINGERING"):
        HEAD_IN[ConnState.LINGERING]
    c = Client()
    c.send(get())
    [(rid, _)] = c.started()
    exchange = c.worker.exchanges[rid]
    c.s.answer(c.worker, rid)
    with pytest.raises(IllegalMove, match="cancel is not allowed in state DONE"):
        exchange.cancel()  # a request is cancelled at most once, and never once answered


def test_every_state_but_done_can_end() -> None:
    for state in ExchangeState:
        if state is not ExchangeState.DONE:
            assert CANCEL.get(state) is not None or FINISH.get(state) is not None, state
    assert set(SLOT_OF) == set(ConnState)
