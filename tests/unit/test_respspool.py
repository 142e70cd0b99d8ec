"""The response spool (front/respspool.py), with a fake client transport and fake workers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from test_dispatcher import FakeTransport, Setup, requests, worker_frame

from maitred import link
from maitred.front.connection import ClientConnection
from maitred.front.exchange import Exchange
from maitred.front.sendfile import PIECE
from slowclients import open_files_in

BUFFER = 100  # --response-buffer-size: the first frame past it overflows
HEAD = b"HTTP/1.1 200 OK\r\n"
# Frames larger than a piece, so the spool feeds each in several.
FRAMES = [b"a" * 150, b"b" * (PIECE + 7), b"c" * (2 * PIECE), b"d" * 10]


class SlowTransport(FakeTransport):
    """A client transport whose peer reads only when the test says (`drain`): like asyncio's,
    it pauses its protocol past the high-water mark and resumes it once down to the low one."""

    def __init__(self) -> None:
        super().__init__()
        self.protocol: ClientConnection | None = None
        self.high, self.low = 1 << 16, 1 << 14
        self.buffered = 0
        self.paused = False

    def write(self, data: bytes) -> None:
        super().write(data)
        self.buffered += len(data)
        self._maybe_pause()

    def _maybe_pause(self) -> None:
        if self.buffered > self.high and not self.paused and self.protocol is not None:
            self.paused = True
            self.protocol.pause_writing()

    def drain(self) -> None:
        """The client takes everything buffered."""
        self.buffered = 0
        if self.paused and self.protocol is not None:
            self.paused = False
            self.protocol.resume_writing()

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self.low, self.high

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.high = 1 << 16 if high is None else high
        self.low = self.high // 4 if low is None else low
        self._maybe_pause()


class Spooling:
    """A front whose one worker answers one slow client, frame by frame."""

    def __init__(self, tmp_path: Path, **settings: Any) -> None:
        self.s = Setup(response_buffer_size=BUFFER, body_temp_dir=str(tmp_path), **settings)
        self.worker = self.s.worker(1, 1)
        self.transport = SlowTransport()
        self.conn, _ = self.s.client(transport=self.transport)
        self.transport.protocol = self.conn
        [(self.rid, _)] = requests(self.s.sent(self.worker))
        self.logged: list[Exchange] = []
        self.s.front.log_access = self.logged.append  # type: ignore[method-assign]

    def frame(self, kind: int, value: Any = ()) -> None:
        self.worker.data_received(worker_frame(kind, self.rid, value))

    def credit(self) -> int:
        """Credit the worker got since the last call."""
        frames = self.s.sent(self.worker)
        assert {kind for kind, _, _ in frames} <= {link.Kind.WINDOW}, frames
        return sum(window.size for _, _, window in frames)

    def drain_all(self) -> None:
        """The client reads until the response is over (bounded: one piece per drain)."""
        for _ in range(1000):
            if self.logged:
                return
            self.transport.drain()
        raise AssertionError("the response never ended")

    @property
    def exchange(self) -> Exchange:
        exchange = self.conn.active
        assert exchange is not None
        return exchange


def dechunk(data: bytes) -> bytes:
    """The body of a chunked message body that ends with its last chunk."""
    out = []
    while True:
        size_line, data = data.split(b"\r\n", 1)
        size = int(size_line, 16)
        if not size:
            assert data == b"\r\n", data
            return b"".join(out)
        out.append(data[:size])
        assert data[size : size + 2] == b"\r\n"
        data = data[size + 2 :]


@pytest.mark.parametrize("chunked", [False, True])
def test_past_the_buffer_the_body_spools_with_its_credit_back_at_once(
    tmp_path: Path, chunked: bool
) -> None:
    sp = Spooling(tmp_path)
    body = b"".join(FRAMES)
    sp.frame(link.Kind.HEAD, (200, -1 if chunked else len(body), HEAD))
    for data in FRAMES:
        sp.frame(link.Kind.BODY, data)
    # The first frame filled the transport's buffer (its credit waits for the client, as
    # without a spool); the app thread wrote all the others without waiting.
    assert sp.credit() == len(body) - len(FRAMES[0])
    assert sp.exchange.spool is not None
    assert list(tmp_path.iterdir()) == []  # the file has no name
    assert open_files_in(os.getpid(), tmp_path) == 1
    sp.frame(link.Kind.END)
    written_before_drain = len(sp.transport.written)
    assert sp.exchange.sent < len(body)  # the access log counts what went out, not spooled
    sp.drain_all()
    assert len(sp.transport.written) > written_before_drain
    head, _, sent = sp.transport.written.partition(b"\r\n\r\n")
    assert (dechunk(sent) if chunked else sent) == body
    assert (b"Transfer-Encoding: chunked" in head) == chunked
    [exchange] = sp.logged
    assert exchange.sent == len(body) and exchange.spool is None
    assert sp.credit() == len(FRAMES[0])
    assert sp.transport.high == BUFFER  # the next response is buffered as usual
    assert open_files_in(os.getpid(), tmp_path) == 0


def test_a_drained_spool_closes_and_a_later_overflow_opens_another(tmp_path: Path) -> None:
    sp = Spooling(tmp_path)
    sp.frame(link.Kind.HEAD, (200, -1, HEAD))
    sp.frame(link.Kind.BODY, b"a" * 150)
    sp.frame(link.Kind.BODY, b"b" * 20)
    first = sp.exchange.spool
    assert first is not None
    sp.transport.drain()  # the client takes the buffer: the spool's bytes follow
    assert sp.exchange.spool is first
    sp.transport.drain()  # and those: the spool is empty
    assert sp.exchange.spool is None and first.closed
    sp.frame(link.Kind.BODY, b"c" * 30)  # fits the buffer again: straight to the transport
    assert sp.exchange.spool is None
    sp.frame(link.Kind.BODY, b"d" * 200)
    sp.frame(link.Kind.BODY, b"e" * 5)  # past the buffer again
    assert sp.exchange.spool is not None and sp.exchange.spool is not first
    sp.frame(link.Kind.END)
    sp.drain_all()
    body = dechunk(sp.transport.written.partition(b"\r\n\r\n")[2])
    assert body == b"a" * 150 + b"b" * 20 + b"c" * 30 + b"d" * 200 + b"e" * 5
    assert sp.credit() == len(body)


def test_past_the_spool_size_the_credit_waits_for_the_client(tmp_path: Path) -> None:
    sp = Spooling(tmp_path, response_spool_size=1000)
    sp.frame(link.Kind.HEAD, (200, 150 + 900 + 200 + 50, HEAD))
    sp.frame(link.Kind.BODY, b"a" * 150)
    sp.frame(link.Kind.BODY, b"b" * 900)  # spooled
    assert sp.credit() == 900
    sp.frame(link.Kind.BODY, b"c" * 200)  # would pass 1000 bytes of spool: held, credit withheld
    sp.frame(link.Kind.BODY, b"d" * 50)  # behind it, though it would fit
    assert sp.credit() == 0
    for _ in range(100):  # the client reads the spool, then the bytes held behind it
        if sp.exchange.spool is None:
            break
        sp.transport.drain()
    sp.transport.drain()
    assert sp.credit() == 150 + 250  # once the client took them
    sp.frame(link.Kind.END)
    assert sp.transport.written.partition(b"\r\n\r\n")[2] == (
        b"a" * 150 + b"b" * 900 + b"c" * 200 + b"d" * 50
    )
    assert sp.logged


def test_without_a_spool_size_nothing_spools(tmp_path: Path) -> None:
    sp = Spooling(tmp_path, response_spool_size=0)
    sp.frame(link.Kind.HEAD, (200, -1, HEAD))
    sp.frame(link.Kind.BODY, b"a" * 150)
    sp.frame(link.Kind.BODY, b"b" * 20)
    assert sp.exchange.spool is None and sp.credit() == 0


def test_a_client_that_leaves_closes_the_spool(tmp_path: Path) -> None:
    sp = Spooling(tmp_path)
    sp.frame(link.Kind.HEAD, (200, 4000, HEAD))
    sp.frame(link.Kind.BODY, b"a" * 2000)
    sp.frame(link.Kind.BODY, b"b" * 2000)
    spool = sp.exchange.spool
    assert spool is not None and open_files_in(os.getpid(), tmp_path) == 1
    sp.conn.connection_lost(None)
    assert spool.closed and open_files_in(os.getpid(), tmp_path) == 0
    assert [kind for kind, _, _ in sp.s.sent(sp.worker)] == [link.Kind.WINDOW, link.Kind.CANCEL]
    sp.frame(link.Kind.END)  # the thread is free; the exchange is over
    [exchange] = sp.logged
    assert exchange.sent == 2000  # what the transport took, not what was spooled


def test_a_spool_that_cannot_be_opened_leaves_the_back_pressure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sp = Spooling(tmp_path / "missing")
    sp.frame(link.Kind.HEAD, (200, -1, HEAD))
    sp.frame(link.Kind.BODY, b"a" * 150)
    sp.frame(link.Kind.BODY, b"b" * 20)
    sp.frame(link.Kind.BODY, b"c" * 30)
    assert sp.credit() == 0  # held in memory, as without a spool
    assert caplog.text.count("cannot spool a response") == 1
    for _ in range(3):  # the buffer, then the bytes held behind the spool
        sp.transport.drain()
    assert sp.credit() == 200
    sp.frame(link.Kind.END)
    assert sp.logged
    body = b"a" * 150 + b"b" * 20 + b"c" * 30
    assert dechunk(sp.transport.written.partition(b"\r\n\r\n")[2]) == body


def test_the_hot_path_opens_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_file(*args: object) -> object:
        raise AssertionError("a file was opened for a response that fits the buffer")

    monkeypatch.setattr("maitred.front.respspool.open_unnamed", no_file)
    sp = Spooling(tmp_path)
    sp.frame(link.Kind.HEAD, (200, 40, HEAD))
    sp.frame(link.Kind.BODY, b"a" * 40)
    sp.frame(link.Kind.END)
    assert sp.logged and sp.credit() == 40
