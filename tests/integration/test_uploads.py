"""Large uploads read straight into their buffer (front/bodyread.py), on a real server: the
requests that follow them, 100-continue, and clients that stall or leave mid-body."""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import time

import pytest

from harness import Server, ServerFactory
from rawhttp import RawConnection, fetch, request_bytes

UPLOAD = bytes(range(256)) * 2048  # 512 KiB: held in memory, and long enough to be lent
BODY_TIMEOUT = 1.0
SLACK = 1.5  # the timeout sweep's granularity plus a loaded machine's scheduling delays


@pytest.fixture(scope="module")
def echo_server(module_servers: ServerFactory) -> Server:
    return module_servers.start("echo:application", "-w", "1", "--body-timeout", str(BODY_TIMEOUT))


def upload_head(extra: list[tuple[str, str]] | None = None) -> bytes:
    return request_bytes("POST", "/up", extra, UPLOAD)[: -len(UPLOAD)]


def echoed(conn: RawConnection) -> dict[str, object]:
    response = conn.read_response()
    assert response.status == 200, response.body[:200]
    report: dict[str, object] = json.loads(response.body)
    return report


def test_an_upload_in_pieces_then_pipelined_requests(echo_server: Server) -> None:
    with RawConnection(echo_server.port, timeout=10.0) as conn:
        for _ in range(2):  # the connection reads on as before after a lent body
            conn.send(upload_head() + UPLOAD[:1000])
            conn.send(UPLOAD[1000:300_000])
            conn.send(UPLOAD[300_000:] + request_bytes("GET", "/after"))
            report = echoed(conn)
            assert report["body_sha256"] == hashlib.sha256(UPLOAD).hexdigest()
            assert report["body_length"] == len(UPLOAD)
            assert echoed(conn)["path"] == "/after"


def test_an_upload_after_100_continue(echo_server: Server) -> None:
    with RawConnection(echo_server.port, timeout=10.0) as conn:
        conn.send(upload_head([("Expect", "100-continue")]))
        assert conn.read_response().status == 100
        conn.send(UPLOAD)
        assert echoed(conn)["body_sha256"] == hashlib.sha256(UPLOAD).hexdigest()


def test_a_stalled_upload_gets_408_and_the_server_goes_on(echo_server: Server) -> None:
    sock = socket.create_connection(("127.0.0.1", echo_server.port))
    with sock:
        sock.sendall(upload_head() + UPLOAD[:200_000])  # then nothing
        start = time.monotonic()
        sock.settimeout(BODY_TIMEOUT + 2 * SLACK)
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
        assert time.monotonic() - start <= BODY_TIMEOUT + 2 * SLACK
        with contextlib.suppress(OSError):  # read and thrown away while the connection lingers
            sock.sendall(UPLOAD[200_000:])
    left = socket.create_connection(("127.0.0.1", echo_server.port))
    left.sendall(upload_head() + UPLOAD[:300_000])
    left.close()  # gone mid-body
    assert fetch(echo_server.port, "GET", "/").status == 200
