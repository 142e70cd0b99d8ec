"""Lingering close: a client still sending its request can read the front's early answer.

Without it the front closes a socket with unread bytes, the kernel answers the client's next
segment with RST, and a client that sends its whole body before reading (http.client, urllib3)
fails with ECONNRESET or EPIPE before it ever reads the 413.
"""

from __future__ import annotations

import http.client
import socket
import time

import pytest

from harness import SRC_DIR, TESTS_DIR, Server, ServerFactory, wait_until
from maitred.front.linger import LINGER_TIME
from rawhttp import RawConnection, request_bytes

LIMIT = "1M"
BODY = 16 << 20  # well past the limit, well within what the front reads and discards
PIECE = 64 << 10
NEVER_ENDING = 1 << 40  # a Content-Length no client in these tests ever finishes
CUT_OFF_WITHIN = 15.0  # the front stops reading after LINGER_BYTES or LINGER_TIME (5 s)


@pytest.fixture(scope="module")
def server(module_servers: ServerFactory) -> Server:
    return module_servers.start("echo:application", "-w", "1", "--limit-request-body", LIMIT)


def test_a_client_that_sends_its_whole_body_first_gets_the_413(server: Server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("POST", "/", body=b"x" * BODY)  # before the fix: ECONNRESET here
        response = conn.getresponse()
        assert response.status == 413
        response.read()
    finally:
        conn.close()


def test_a_body_growing_past_the_limit_in_a_loop_still_gets_its_413(server: Server) -> None:
    """Chunked, so the front only finds out mid-way; every send succeeds, then the answer and
    the end of the stream (FIN, not RST) are there to read."""
    with RawConnection(server.port) as conn:
        conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        piece = b"%x\r\n%s\r\n" % (PIECE, b"x" * PIECE)
        for _ in range(BODY // PIECE):
            conn.send(piece)
        response = conn.read_response()
        assert response.status == 413
        assert conn.at_eof()


def test_a_malformed_request_followed_by_more_data_still_gets_its_400(server: Server) -> None:
    with RawConnection(server.port) as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n")
        for _ in range(BODY // PIECE):
            conn.send(b"y" * PIECE)
        assert conn.read_response().status == 400
        assert conn.at_eof()


def test_a_client_that_never_stops_sending_is_cut_off(server: Server) -> None:
    """The front reads and discards for a bounded time and number of bytes, then closes: the
    client's sends fail, and the status line still waits in its receive buffer."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % NEVER_ENDING)
        deadline = time.monotonic() + CUT_OFF_WITHIN
        with pytest.raises(OSError):  # EPIPE or ECONNRESET once the front closed
            while time.monotonic() < deadline:
                sock.sendall(b"x" * PIECE)
        assert time.monotonic() < deadline, "the front never stopped reading"
        assert sock.recv(64).startswith(b"HTTP/1.1 413 ")
    finally:
        sock.close()


@pytest.fixture(scope="module")
def asyncio_server(module_servers: ServerFactory) -> Server:
    """The same server on the standard asyncio loop: tests/shadow hides uvloop."""
    shadow = {"PYTHONPATH": f"{SRC_DIR}:{TESTS_DIR / 'shadow'}"}
    return module_servers.start("echo:application", "-w", "1", env=shadow)


@pytest.mark.parametrize("loop", ["server", "asyncio_server"], ids=["uvloop", "asyncio"])
def test_a_request_pipelined_after_connection_close_is_read_not_reset(
    loop: str, request: pytest.FixtureRequest
) -> None:
    """The client sent more after its last request (Connection: close), and may still be
    sending: the front lingers, as nginx does, reading and throwing away what comes next.
    Closed at once, its socket would answer the next segment with RST, which on many systems
    drops the response before the client reads it (RFC 9112, section 9.6); on Linux the
    reset only ends the server's end of the connection."""
    server: Server = request.getfixturevalue(loop)
    with RawConnection(server.port) as conn:
        last = request_bytes("GET", "/", [("Connection", "close")])
        conn.send(last + request_bytes("GET", "/"))
        response = conn.read_response()  # answered: the front closed, or shut its writing down
        assert response.status == 200 and response.header("Connection") == "close"
        conn.send(request_bytes("GET", "/"))  # still sending
        # Read by the front that still holds its end; else reset, or left unread to the kernel.
        wait_until(conn.read_by_server, LINGER_TIME, "the front to read what came after")
        assert conn.at_eof()
