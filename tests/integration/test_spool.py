"""Spooled request bodies (past --body-buffer-size) leave no temp file behind, on every path."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from harness import Server, ServerFactory
from rawhttp import RawConnection, chunked, fetch
from slowclients import wait_empty

SPOOLED = 2 << 20  # past the default 1 MiB body buffer


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    return tmp_path


def start(servers: ServerFactory, spool: Path, *args: str) -> Server:
    return servers.start(
        "crash:application", "-w", "1", "--threads", "1", "--body-temp-dir", str(spool), *args
    )


def wait_spooled(spool: Path, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not list(spool.iterdir()):
        assert time.monotonic() < deadline, "the body was never spooled"
        time.sleep(0.01)


def test_a_served_request_removes_its_body(servers: ServerFactory, spool: Path) -> None:
    server = start(servers, spool)
    response = fetch(server.port, "POST", "/", body=b"x" * SPOOLED)
    assert response.body == b"%d\n" % SPOOLED
    assert wait_empty(spool) == []


def test_a_client_gone_mid_body_removes_it(servers: ServerFactory, spool: Path) -> None:
    server = start(servers, spool)
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % (4 * SPOOLED))
    sock.sendall(b"x" * SPOOLED)
    wait_spooled(spool)
    sock.close()
    assert wait_empty(spool) == []


def test_a_chunked_body_past_the_limit_gets_413_and_is_removed(
    servers: ServerFactory, spool: Path
) -> None:
    server = start(servers, spool, "--limit-request-body", "3M")
    with RawConnection(server.port) as conn:
        conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        conn.send(chunked(*[b"x" * (1 << 20)] * 4)[:-5])  # 4 MiB, no last chunk
        response = conn.read_response()
        assert response.status == 413 and conn.at_eof()
    assert wait_empty(spool) == []


def test_a_worker_dying_with_the_body_open_gets_502_and_removes_it(
    servers: ServerFactory, spool: Path
) -> None:
    server = start(servers, spool)
    response = fetch(server.port, "POST", "/crash", body=b"x" * SPOOLED)
    assert response.status == 502
    assert wait_empty(spool) == []
    # The master replaced the worker: the server still serves.
    deadline = time.monotonic() + 10.0
    while fetch(server.port, "POST", "/", body=b"y").status != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
