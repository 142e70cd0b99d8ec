"""Spooled request bodies (past --body-buffer-size) leave no temp file behind, on every path."""

from __future__ import annotations

import http.client
import io
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import Server, ServerFactory, wait_until
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


def wait_spooled(spool: Path, timeout: float = 5.0, at_least: int = 0) -> None:
    wait_until(
        lambda: any(f.stat().st_size >= at_least for f in spool.iterdir()),
        timeout,
        "a spooled body",
    )


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


@pytest.mark.expect_errors(
    r"worker \d+ died handling POST /crash",
    r"worker 1 \(pid \d+\) exited with status 3; restarting it",
)
def test_a_worker_dying_with_the_body_open_gets_502_and_removes_it(
    servers: ServerFactory, spool: Path
) -> None:
    server = start(servers, spool)
    response = fetch(server.port, "POST", "/crash", body=b"x" * SPOOLED)
    assert response.status == 502
    assert wait_empty(spool) == []
    # The master replaced the worker: the server still serves.
    wait_until(
        lambda: fetch(server.port, "POST", "/", body=b"y").status == 200, 10.0, "a new worker"
    )


# --- a body that cannot be written: 500 (as nginx), one error line, no traceback, no hang ---

SMALL_DISK = "1m"  # a tmpfs this size fills up with the first spooled megabyte


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    command = ["mount", "-t", "tmpfs", "-o", f"size={SMALL_DISK}", "tmpfs", str(mount)]
    if subprocess.run(command, capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def post_spooled(server: Server) -> int:
    """POST a body that must be spooled, as most clients do: all of it, then read."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("POST", "/", body=b"x" * (2 * SPOOLED))
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def assert_one_clean_error(server: Server) -> None:
    assert server.wait_for_log("cannot spool a request body")
    assert server.stderr.count("cannot spool a request body") == 1, server.stderr
    assert "Traceback" not in server.stderr, server.stderr
    assert fetch(server.port, "POST", "/", body=b"small").status == 200  # still serving


@pytest.mark.expect_errors(r"cannot spool a request body in .*\[Errno 28\] No space left on device")
def test_a_full_disk_gets_500(servers: ServerFactory, full_disk: Path) -> None:
    server = start(servers, full_disk)
    assert post_spooled(server) == 500
    assert_one_clean_error(server)
    assert wait_empty(full_disk) == []


@pytest.mark.expect_errors(r"cannot spool a request body in .*\[Errno 28\] No space left on device")
def test_a_disk_that_fills_with_the_last_bytes_gets_500(
    servers: ServerFactory, full_disk: Path
) -> None:
    """The last bytes wait in the spool file's buffer, so the disk is only found full when the
    complete body is flushed, which must still end the request (before: no answer at all)."""
    server = start(servers, full_disk, "--body-buffer-size", "512K")
    fits = 1 << 20  # what the tmpfs holds
    with RawConnection(server.port) as conn:
        conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % (fits + 100))
        conn.send(b"x" * fits)
        wait_spooled(full_disk, at_least=fits - io.DEFAULT_BUFFER_SIZE)
        conn.send(b"y" * 100)  # fits in the buffer: written (and refused) at the flush
        assert conn.read_response().status == 500
    assert_one_clean_error(server)
    assert wait_empty(full_disk) == []


@pytest.mark.expect_errors(
    r"cannot spool a request body in .*\[Errno 2\] No such file or directory"
)
def test_a_temp_dir_gone_gets_500(servers: ServerFactory, spool: Path) -> None:
    gone = spool / "gone"
    gone.mkdir()
    server = start(servers, gone)
    gone.rmdir()
    assert post_spooled(server) == 500
    assert_one_clean_error(server)
