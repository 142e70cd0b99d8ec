"""The accept gate (front/accept.py): the open-file plan, stopping and resuming accepts."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import resource
import socket
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, cast

import pytest
import uvloop

from maitred.front import accept
from maitred.front.accept import FD_RESERVE, AcceptGate, fd_plan

INFINITY = resource.RLIM_INFINITY
WAIT = 2.0  # an accept on loopback takes microseconds; a second or two is a wide margin
NOT_ACCEPTED_FOR = 0.3  # how long a connection must stay unaccepted to count as refused


@pytest.mark.parametrize(
    ("wanted", "soft", "hard", "plan"),
    [
        (10_000, 1024, 524_288, (10_000 + FD_RESERVE, 10_000)),  # raised to fit
        (10_000, 20_000, 20_000, (20_000, 10_000)),  # already fits: left alone
        (10_000, 1024, 4096, (4096, 4096 - FD_RESERVE)),  # capped by the hard limit
        (10_000, 1024, INFINITY, (10_000 + FD_RESERVE, 10_000)),
        (10, 64, 64, (64, 1)),  # never below one connection
    ],
)
def test_fd_plan(wanted: int, soft: int, hard: int, plan: tuple[int, int]) -> None:
    assert fd_plan(wanted, soft, hard) == plan


class Conn(asyncio.Protocol):
    """What the front does with a connection, reduced to the gate's part."""

    def __init__(self, open_conns: set[Conn], gate: Callable[[], AcceptGate]) -> None:
        self.open_conns = open_conns
        self.gate = gate
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.open_conns.add(self)
        gate = self.gate()
        gate.update()
        if len(self.open_conns) > gate.limit:  # no slot for it (the front answers 503)
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.open_conns.discard(self)
        self.gate().update()


async def wait_until(predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def close_all(
    clients: list[socket.socket], open_conns: set[Conn], listener: socket.socket
) -> None:
    """A scenario's teardown: its clients, the connections the gate accepted, the listener."""
    for client in clients:
        client.close()
    for conn in list(open_conns):
        if conn.transport is not None:
            conn.transport.close()
    await wait_until(lambda: not open_conns)
    listener.close()


async def gate_scenario() -> None:
    loop = asyncio.get_running_loop()
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    open_conns: set[Conn] = set()
    gate = AcceptGate(loop, lambda _: Conn(open_conns, lambda: gate), [listener], 16, open_conns, 2)
    await gate.start()
    clients = []
    try:
        for expected in (1, 2):
            clients.append(socket.create_connection(("127.0.0.1", port)))
            assert await wait_until(lambda n=expected: len(open_conns) == n)  # type: ignore[misc]
        clients.append(socket.create_connection(("127.0.0.1", port)))  # waits in the backlog
        assert not await wait_until(lambda: len(open_conns) > 2, NOT_ACCEPTED_FOR)
        first = next(iter(open_conns))
        assert first.transport is not None
        first.transport.close()
        assert await wait_until(lambda: len(open_conns) == 2 and first not in open_conns)
        gate.stop()
        assert not gate.servers
    finally:
        await close_all(clients, open_conns, listener)


async def overshoot_scenario(overshoot: int) -> None:
    """Connections that arrive together: asyncio accepts them in one batch before any
    connection_made, so those past the limit are closed at once (the front answers them 503);
    uvloop makes each connection inside its accept loop, so it stops exactly at the limit."""
    loop = asyncio.get_running_loop()
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    open_conns: set[Conn] = set()
    gate = AcceptGate(loop, lambda _: Conn(open_conns, lambda: gate), [listener], 16, open_conns, 2)
    await gate.start()
    # All three wait in the backlog before the loop runs again.
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    try:
        assert await wait_until(lambda: len(open_conns) == 2)
        closed = 0
        for client in clients:
            client.settimeout(NOT_ACCEPTED_FOR)
            with contextlib.suppress(TimeoutError):  # still waiting in the backlog
                closed += client.recv(1) == b""
        assert closed == overshoot
    finally:
        gate.stop()
        await close_all(clients, open_conns, listener)


async def stop_scenario(family: socket.AddressFamily, where: Any) -> None:
    """A stop takes the connections waiting in the backlog (one under the limit is served, one
    past it closed at once), then closes the listener: the next client is refused."""
    loop = asyncio.get_running_loop()
    listener = socket.create_server(where, family=family)
    address = listener.getsockname()
    open_conns: set[Conn] = set()
    gate = AcceptGate(loop, lambda _: Conn(open_conns, lambda: gate), [listener], 16, open_conns, 2)
    await gate.start()
    clients: list[socket.socket] = []

    def connect() -> socket.socket:
        clients.append(socket.socket(family))
        clients[-1].connect(address)
        return clients[-1]

    try:
        connect()
        assert await wait_until(lambda: len(open_conns) == 1)
        # The loop does not run between these connects and stop(): both wait in the backlog.
        waiting = [connect(), connect()]
        adopting = gate.stop()
        assert await wait_until(lambda: len(open_conns) == 2)
        await asyncio.gather(*adopting)
        closed = 0
        for client in waiting:
            client.settimeout(NOT_ACCEPTED_FOR)
            with contextlib.suppress(TimeoutError):
                closed += client.recv(1) == b""
        assert closed == 1  # past the limit: the front answers it 503 and closes it
        assert listener.fileno() == -1
        with pytest.raises(ConnectionRefusedError):
            connect()
    finally:
        await close_all(clients, open_conns, listener)


class FlakyListener:
    """A listener whose next dup() fails once (EMFILE), as when descriptors ran out."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fail_next = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)

    def dup(self) -> socket.socket:
        if self.fail_next:
            self.fail_next = False
            raise OSError(24, "Too many open files")
        return self.sock.dup()


async def resume_retry_scenario() -> None:
    loop = asyncio.get_running_loop()
    listener = socket.create_server(("127.0.0.1", 0))
    flaky = FlakyListener(listener)
    port = listener.getsockname()[1]
    open_conns: set[Conn] = set()
    gate = AcceptGate(
        loop, lambda _: Conn(open_conns, lambda: gate), [cast(Any, flaky)], 16, open_conns, 1
    )
    await gate.start()
    clients = [socket.create_connection(("127.0.0.1", port))]
    try:
        assert await wait_until(lambda: len(open_conns) == 1)
        clients.append(socket.create_connection(("127.0.0.1", port)))  # waits: at the limit
        flaky.fail_next = True
        first = next(iter(open_conns))
        assert first.transport is not None
        first.transport.close()  # the gate tries to serve again, fails, retries later
        assert await wait_until(lambda: len(open_conns) == 1 and first not in open_conns)
    finally:
        gate.stop()
        await close_all(clients, open_conns, listener)


LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


def run(loop_name: str, coro: Coroutine[Any, Any, None]) -> None:
    loop = LOOPS[loop_name]()
    try:
        loop.run_until_complete(coro)
    finally:
        loop.close()


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_gate_stops_accepting_at_the_limit_and_resumes(loop_name: str) -> None:
    run(loop_name, gate_scenario())


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_connections_past_the_limit_in_one_batch_are_closed(loop_name: str) -> None:
    run(loop_name, overshoot_scenario(overshoot=1 if loop_name == "asyncio" else 0))


def test_serving_again_is_retried_when_descriptors_ran_out(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(accept, "RESUME_RETRY", 0.05)
    run("uvloop", resume_retry_scenario())
    assert "cannot accept connections again yet" in caplog.text


EMFILE = OSError(errno.EMFILE, "Too many open files")


def test_a_shortage_is_one_line_a_second_and_one_when_it_is_over(
    caplog: pytest.LogCaptureFixture,
) -> None:
    shortage = accept.Shortage(interval=1.0)
    with caplog.at_level(logging.INFO, logger="maitred.error"):
        for tick in range(300):  # three seconds of a failure every 10 ms
            shortage.failed(EMFILE, tick / 100)
        shortage.ok(3.0)  # a descriptor again, but failures were seen within the second
        shortage.ok(4.0)
        shortage.ok(5.0)
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "front: cannot accept connections: [Errno 24] Too many open files; "
        "raise `ulimit -n` or lower --max-connections"
    ] * 3 + ["front: accepting connections again"]


class ReportingLoop:
    """The two things the exception handler uses of a loop."""

    def __init__(self) -> None:
        self.handed_on: list[dict[str, Any]] = []

    def time(self) -> float:
        return 7.0

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        self.handed_on.append(context)


def test_asyncio_reports_of_failed_accepts_are_counted_and_the_rest_handed_on() -> None:
    shortage = accept.Shortage()
    handle = accept.accept_errors(shortage)
    loop = ReportingLoop()
    handle(
        cast(Any, loop), {"message": "socket.accept() out of system resource", "exception": EMFILE}
    )
    other = {"message": "Exception in callback", "exception": EMFILE}
    handle(cast(Any, loop), other)
    assert shortage.last_failure == 7.0  # counted, not handed on
    assert loop.handed_on == [other]


def test_a_failed_accept_ends_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The next accept() says "nothing more" instead of failing again; the one after tries."""
    listener = socket.create_server(("127.0.0.1", 0))
    dup = listener.dup()
    batch = accept.BatchEndingListener(dup.family, dup.type, dup.proto, dup.detach())
    calls: list[str] = []

    def failing_accept(self: socket.socket) -> tuple[socket.socket, Any]:
        calls.append("accept")
        raise EMFILE

    try:
        monkeypatch.setattr(socket.socket, "accept", failing_accept)
        with pytest.raises(OSError) as first:
            batch.accept()
        assert first.value.errno == errno.EMFILE
        with pytest.raises(BlockingIOError):
            batch.accept()
        with pytest.raises(OSError):
            batch.accept()
        assert calls == ["accept", "accept"]
    finally:
        batch.close()
        listener.close()


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
@pytest.mark.parametrize("family", ["tcp", "unix"])
def test_a_stop_takes_the_backlog_then_closes_the_listener(
    loop_name: str, family: str, tmp_path: Path
) -> None:
    if family == "unix":
        run(loop_name, stop_scenario(socket.AF_UNIX, str(tmp_path / "listener.sock")))
    else:
        run(loop_name, stop_scenario(socket.AF_INET, ("127.0.0.1", 0)))
