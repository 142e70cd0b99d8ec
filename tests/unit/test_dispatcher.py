"""The dispatcher's rules, with fake transports and a fake loop: no sockets, no sleeping."""

from __future__ import annotations

import marshal
import socket
from collections.abc import Callable
from typing import Any

import pytest
from test_linger import FakeTimer

from maitred import apps, link
from maitred.config import Config
from maitred.front import connection, dispatcher
from maitred.front.bodyread import BodyReader
from maitred.front.connection import ClientConnection
from maitred.front.dispatcher import WorkerConnection
from maitred.front.main import Front
from maitred.http.errors import RequestTimeout


class FakeLoop:
    def __init__(self) -> None:
        self.now = 100.0
        self.soon: list[Callable[[], None]] = []
        self.timers: list[FakeTimer] = []

    def time(self) -> float:
        return self.now

    def call_soon(self, callback: Callable[[], None]) -> None:
        self.soon.append(callback)

    def create_future(self) -> Any:
        return None

    def call_later(self, delay: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(delay, callback)
        self.timers.append(timer)
        return timer

    def run_soon(self) -> None:
        soon, self.soon = self.soon, []
        for callback in soon:
            callback()


class FakeTransport:
    def __init__(self) -> None:
        self.written = b""
        self.closed = False
        self.eof = False  # write side shut (a lingering close)
        self.reading_paused = False

    def write(self, data: bytes) -> None:
        self.written += data

    def writelines(self, data: list[bytes]) -> None:
        for part in data:
            self.write(part)

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 5555) if name in ("peername", "sockname") else None

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def set_write_buffer_limits(self, high: int) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0  # the client reads all at once

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def pause_reading(self) -> None:
        self.reading_paused = True

    def resume_reading(self) -> None:
        self.reading_paused = False


class Setup:
    """A front with fake workers and clients."""

    def __init__(self, **settings: Any) -> None:
        self.loop = FakeLoop()
        self.front = Front(Config(**settings), self.loop)  # type: ignore[arg-type]
        self.dispatcher = self.front.dispatchers[apps.IMPLICIT]
        self.transports: dict[int, FakeTransport] = {}

    def worker(self, pid: int, threads: int) -> WorkerConnection:
        worker = WorkerConnection(self.dispatcher)
        transport = self.transports[id(worker)] = FakeTransport()
        worker.connection_made(transport)  # type: ignore[arg-type]
        worker.data_received(link.encode_hello(0, pid, pid, threads))
        return worker

    def connect(
        self, transport: FakeTransport | None = None
    ) -> tuple[ClientConnection, FakeTransport]:
        """A new client connection that has sent nothing yet."""
        conn = ClientConnection(self.front)
        transport = transport or FakeTransport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        return conn, transport

    def client(
        self, path: str = "/", transport: FakeTransport | None = None
    ) -> tuple[ClientConnection, FakeTransport]:
        conn, transport = self.connect(transport)
        conn.data_received(get(path))
        self.loop.run_soon()
        return conn, transport

    def sent(self, worker: WorkerConnection) -> list[tuple[int, int, Any]]:
        """Frames the front wrote to a worker since the last call."""
        self.loop.run_soon()
        transport = self.transports[id(worker)]
        data, transport.written = transport.written, b""
        return [(k, r, link.decode(k, p)) for k, r, p in link.FrameBuffer().feed(data)]

    @staticmethod
    def answer(worker: WorkerConnection, rid: int, body: bytes = b"ok") -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n" % len(body)
        worker.data_received(link.encode_full(rid, 200, len(body), head, body))


def get(path: str = "/", fields: str = "") -> bytes:
    """A GET request, with header lines `fields` (each ending in CRLF)."""
    return f"GET {path} HTTP/1.1\r\nHost: h\r\n{fields}\r\n".encode()


# A worker's response frames by kind, for tests that play the worker frame by frame.
_WORKER_ENCODERS: dict[int, Callable[..., bytes]] = {
    link.Kind.HEAD: link.encode_head,
    link.Kind.END: link.encode_end,
    link.Kind.ABORT: link.encode_abort,
    link.Kind.FULL: link.encode_full,
}


def worker_frame(kind: int, rid: int, value: Any = ()) -> bytes:
    """The frame a worker sends: BODY carries bytes, the others their fields as a tuple."""
    if kind == link.Kind.BODY:
        return link.encode_body(rid, value)
    return _WORKER_ENCODERS[kind](rid, *value)


def requests(frames: list[tuple[int, int, Any]]) -> list[tuple[int, bytes]]:
    """(rid, target) of the REQUEST frames."""
    return [(rid, value[1]) for kind, rid, value in frames if kind == link.Kind.REQUEST]


def test_least_busy_worker_gets_the_request_and_the_rest_queue() -> None:
    s = Setup()
    a, b = s.worker(1, 2), s.worker(2, 1)
    for _ in range(4):
        s.client()
    assert len(requests(s.sent(a))) == 2 and len(requests(s.sent(b))) == 1
    assert len(s.dispatcher.queue) == 1  # never more in flight than threads


def test_a_freed_thread_takes_the_oldest_queued_request() -> None:
    s = Setup()
    a = s.worker(1, 1)
    _, first = s.client("/first")
    s.client("/second")
    s.client("/third")
    [(rid, _)] = requests(s.sent(a))
    s.answer(a, rid)
    assert [target for _, target in requests(s.sent(a))] == [b"/second"]
    assert first.written.startswith(b"HTTP/1.1 200 OK")
    assert len(s.dispatcher.queue) == 1


def test_draining_worker_gets_nothing_new() -> None:
    s = Setup()
    a, b = s.worker(1, 4), s.worker(2, 1)
    a.data_received(link.encode_drain(0))
    assert [kind for kind, _, _ in s.sent(a)] == [link.Kind.DRAINED]
    s.client()
    s.client()
    assert len(requests(s.sent(b))) == 1
    assert s.sent(a) == []


def test_dead_worker_fails_its_requests_with_502_and_keeps_the_queue() -> None:
    s = Setup()
    a = s.worker(1, 1)
    _, doomed = s.client()
    s.client()  # queued
    a.connection_lost(None)
    assert doomed.written.startswith(b"HTTP/1.1 502")
    assert len(s.dispatcher.queue) == 1
    b = s.worker(2, 1)
    assert len(requests(s.sent(b))) == 1


def test_cancelled_request_keeps_its_thread_busy_until_the_worker_says_so() -> None:
    s = Setup()
    a = s.worker(1, 1)
    conn, _ = s.client()
    [(rid, _)] = requests(s.sent(a))
    conn.connection_lost(None)
    assert [kind for kind, _, _ in s.sent(a)] == [link.Kind.CANCEL]
    s.client()
    assert requests(s.sent(a)) == []  # the thread still runs the cancelled request
    a.data_received(link.encode_abort(rid))
    assert len(requests(s.sent(a))) == 1


def test_body_credit_returns_as_the_client_takes_bytes() -> None:
    s = Setup(response_spool_size=0)  # no spool: the credit waits (front/respspool.py)
    a = s.worker(1, 1)
    conn, transport = s.client()
    [(rid, _)] = requests(s.sent(a))
    a.data_received(link.encode_head(rid, 200, -1, b"HTTP/1.1 200 OK\r\n"))
    a.data_received(link.encode_body(rid, b"x" * 100))
    assert s.sent(a) == [(link.Kind.WINDOW, rid, link.Window(100))]
    conn.pause_writing()
    a.data_received(link.encode_body(rid, b"y" * 50))
    assert s.sent(a) == []  # the client's buffer is full: the credit waits
    conn.resume_writing()
    assert s.sent(a) == [(link.Kind.WINDOW, rid, link.Window(50))]
    assert b"Transfer-Encoding: chunked" in transport.written
    assert b"64\r\n" + b"x" * 100 + b"\r\n" in transport.written


def test_timeout_answers_504_and_tells_the_worker() -> None:
    s = Setup(timeout=5.0)
    a = s.worker(1, 1)
    _, transport = s.client()
    [(rid, _)] = requests(s.sent(a))
    s.dispatcher.expire(s.loop.now - 5.0)  # dispatched just now: not expired
    assert transport.written == b""
    s.loop.now += 6
    s.dispatcher.expire(s.loop.now - 5.0)
    assert transport.written.startswith(b"HTTP/1.1 504")
    assert s.sent(a) == [(link.Kind.TIMEOUT, rid, link.Timeout())]
    s.answer(a, rid)  # the late answer only frees the thread
    assert not a.exchanges


def test_time_held_back_by_a_slow_client_does_not_count_against_the_timeout() -> None:
    s = Setup(timeout=5.0, response_spool_size=0)
    a = s.worker(1, 1)
    conn, transport = s.client()
    [(rid, _)] = requests(s.sent(a))
    a.data_received(link.encode_head(rid, 200, -1, b"HTTP/1.1 200 OK\r\n"))
    conn.pause_writing()
    s.loop.now += 1
    a.data_received(link.encode_body(rid, b"x" * 10))  # credit now withheld
    s.loop.now += 10
    s.dispatcher.expire(s.loop.now - 5.0)
    assert b"0\r\n\r\n" not in transport.written and not transport.closed  # not timed out
    conn.resume_writing()  # 10 s of client time is forgiven
    s.loop.now += 3
    s.dispatcher.expire(s.loop.now - 5.0)
    assert not transport.closed  # 1 + 3 s of app time
    s.loop.now += 2
    s.dispatcher.expire(s.loop.now - 5.0)
    assert transport.closed  # 6 s of app time: past the timeout, the response is cut


def test_a_worker_that_breaks_the_protocol_has_its_link_closed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    s = Setup()
    a = s.worker(1, 1)
    s.client()
    [(rid, _)] = requests(s.sent(a))
    head = marshal.dumps((200, b"HTTP/1.1 200 OK\r\n"), link.MARSHAL_VERSION)  # no length
    a.data_received(link.HEADER.pack(len(head), link.Kind.HEAD, rid) + head)
    assert s.transports[id(a)].closed
    [record] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "worker 1 broke the link protocol" in record.getMessage()
    assert "malformed HEAD message" in record.getMessage()


@pytest.mark.parametrize(
    "frame",
    [
        link.HEADER.pack(0, 99, 0),  # a frame type nobody sends
        link.encode_window(0, 10),  # the front's own message
        link.encode_hello(0, 1, 1, 1),  # a second HELLO
        link.encode_end(42),  # a request this worker does not hold
    ],
)
def test_a_frame_the_front_does_not_take_closes_the_link(frame: bytes) -> None:
    s = Setup()
    a = s.worker(1, 1)
    a.data_received(frame)
    assert s.transports[id(a)].closed


def test_the_front_frames_a_streamed_response_by_its_request() -> None:
    """A worker's head without a length: chunks for HTTP/1.1, a body that ends with the
    connection for HTTP/1.0, and nothing but the head for HEAD (maitred.http.framing)."""
    s = Setup()
    worker = s.worker(1, 4)
    transports = {}
    for target, request in (
        (b"/new", b"GET /new HTTP/1.1\r\nHost: h\r\n\r\n"),
        (b"/old", b"GET /old HTTP/1.0\r\n\r\n"),
        (b"/head", b"HEAD /head HTTP/1.1\r\nHost: h\r\n\r\n"),
    ):
        conn = ClientConnection(s.front)
        transports[target] = FakeTransport()
        conn.connection_made(transports[target])  # type: ignore[arg-type]
        conn.data_received(request)
    head = b"HTTP/1.1 200 OK\r\n"
    for rid, _ in requests(s.sent(worker)):
        worker.data_received(
            link.encode_head(rid, 200, -1, head)
            + link.encode_body(rid, b"hi")
            + link.encode_end(rid)
        )
    chunked = b"Transfer-Encoding: chunked\r\n"
    assert transports[b"/new"].written == head + chunked + b"\r\n2\r\nhi\r\n0\r\n\r\n"
    assert transports[b"/old"].written == head + b"Connection: close\r\n\r\nhi"
    assert transports[b"/old"].closed and not transports[b"/new"].closed
    assert transports[b"/head"].written == head + chunked + b"\r\n"


def test_a_link_has_room_for_a_whole_in_memory_body() -> None:
    """So that a 1 MiB upload crosses to its worker in one write, not five rounds of wake-ups."""
    front_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with front_end, worker_end:
        transport = FakeTransport()
        transport.get_extra_info = lambda name: front_end  # type: ignore[method-assign]
        WorkerConnection(Setup().dispatcher).connection_made(transport)  # type: ignore[arg-type]
        with open("/proc/sys/net/core/wmem_max") as limit:
            room = min(dispatcher.LINK_SEND_BUFFER, int(limit.read()))
        # Linux doubles what it is given, for its own bookkeeping.
        assert front_end.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) >= room


UPLOAD = bytes(range(256)) * 1024  # past DIRECT_MIN: read straight into its buffer


def upload_head(length: int = len(UPLOAD)) -> bytes:
    return b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % length


def lent(transport: FakeTransport) -> BodyReader:
    reader = getattr(transport, "protocol", None)
    assert isinstance(reader, BodyReader), "the body is not read into its buffer"
    return reader


def receive(reader: BodyReader, data: bytes) -> None:
    """What the event loop does for a buffered protocol: read into the buffer it gives."""
    buffer = reader.get_buffer(-1)
    buffer[: len(data)] = data
    reader.buffer_updated(len(data))


def test_a_large_body_is_received_straight_into_its_buffer() -> None:
    setup = Setup()
    worker = setup.worker(1, 1)
    conn, transport = setup.connect()
    conn.data_received(upload_head() + UPLOAD[:1000])
    reader = lent(transport)
    for start in range(1000, len(UPLOAD), 100_000):
        receive(reader, UPLOAD[start : start + 100_000])
    assert transport.protocol is conn  # given back with the body whole
    [(kind, _, request)] = setup.sent(worker)
    assert kind == link.Kind.REQUEST and request.body == UPLOAD
    setup.answer(worker, 1)
    conn.data_received(get())  # the connection reads on as before
    assert setup.sent(worker)[0][0] == link.Kind.REQUEST


def test_a_read_after_the_front_gave_up_on_a_lent_body_is_the_connections() -> None:
    setup = Setup()
    conn, transport = setup.connect()
    conn.data_received(upload_head() + UPLOAD[:1000])
    reader = lent(transport)
    receive(reader, UPLOAD[1000:5000])
    assert conn.reading is not None and conn.reading.body is not None
    assert conn.reading.body.size == 5000  # what the body timeout measures
    conn.reject(RequestTimeout("request body too slow"))
    assert transport.written.startswith(b"HTTP/1.1 408 ")
    receive(reader, b"more of the body")
    assert transport.protocol is conn and conn.linger is not None


def test_whether_a_body_is_lent_is_decided_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not again on every read of a body that is not: nothing that ruled it out changes."""
    asked: list[object] = []
    monkeypatch.setattr(connection, "read_rest", lambda conn, exchange: asked.append(exchange))
    setup = Setup(body_buffer_size=len(UPLOAD) // 2)  # spooled: read as before
    conn, _ = setup.connect()
    conn.data_received(upload_head() + b"x")
    for start in range(1, len(UPLOAD), 10_000):
        conn.data_received(UPLOAD[start : start + 10_000])
    assert asked == [conn.active]  # the request is whole: it went on
    conn.connection_lost(None)


def test_a_small_or_spooled_body_is_read_as_before() -> None:
    setup = Setup(body_buffer_size=len(UPLOAD) // 2)
    for length in (10_000, len(UPLOAD)):  # too little left to lend; past the buffer: spooled
        conn, transport = setup.connect()
        conn.data_received(upload_head(length) + b"x")
        assert not hasattr(transport, "protocol")
        conn.connection_lost(None)
