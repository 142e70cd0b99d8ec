"""A second server on an address a running one serves is refused and leaves the first alone.

The second is started by hand (it is meant to exit at once); the first is checked to answer
every request afterwards, on connections of its own, so a second server that had joined the
port's SO_REUSEPORT group (and taken half the connections) or moved the unix socket's path to
itself would show.
"""

from __future__ import annotations

import os
import re
import signal
import socket
from pathlib import Path

import hello

from harness import APPS_DIR, CliResult, Server, ServerFactory, run_cli
from rawhttp import fetch, request_bytes

APP = ["--pythonpath", str(APPS_DIR), "hello:application"]
# Enough fresh connections that the kernel's hash would give a second group member some.
REQUESTS = 32
TIMEOUT = 10.0


def get_over_unix(path: Path) -> bytes:
    """The whole response to one GET / on a fresh connection to a unix socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.connect(str(path))
        sock.sendall(request_bytes("GET", "/", [("Connection", "close")]))
        return b"".join(iter(lambda: sock.recv(65536), b""))


def serve_on_unix(servers: ServerFactory, path: Path) -> Server:
    """A server on `path` (and on 127.0.0.1:0 first, whose line the helper waits for)."""
    server = servers.start("hello:application", "-w", "1", "-b", f"unix:{path}")
    assert server.wait_for_log(f"Listening at: unix:{re.escape(str(path))} "), server.stderr
    return server


def assert_refused(result: CliResult, address: str) -> None:
    """Exit status 1 and one error line that names the address. INFO lines are left out: a
    start also tidies what other servers on the machine left behind, and says so."""
    assert result.returncode == 1, result
    lines = [line for line in result.stderr.strip().splitlines() if "] [INFO] " not in line]
    assert len(lines) == 1, result.stderr
    assert "cannot listen" in lines[0] and "Address already in use" in lines[0], lines
    assert repr(address) in lines[0], lines


def error_text(result: CliResult) -> str:
    """The error line without its time and pid."""
    return result.stderr.strip().partition(" [ERROR] ")[2]


def test_a_second_server_with_fronts_is_refused_the_port(servers: ServerFactory) -> None:
    first = servers.start("hello:application", "--fronts", "2", "-w", "2")
    address = f"127.0.0.1:{first.port}"
    with_fronts = run_cli(["-b", address, "--fronts", "2", "-w", "2", *APP])
    assert_refused(with_fronts, address)
    alone = run_cli(["-b", address, "-w", "1", *APP])
    assert_refused(alone, address)
    assert error_text(with_fronts) == error_text(alone)
    for _ in range(REQUESTS):
        assert fetch(first.port, "GET", "/", [("Connection", "close")]).body == hello.BODY


def test_a_second_server_is_refused_a_live_unix_socket(
    servers: ServerFactory, tmp_path: Path
) -> None:
    path = tmp_path / "s.sock"
    serve_on_unix(servers, path)
    inode = path.stat().st_ino
    result = run_cli(["-b", f"unix:{path}", "-w", "1", *APP])
    assert_refused(result, f"unix:{path}")
    assert path.stat().st_ino == inode  # the first server's socket, still reachable
    assert get_over_unix(path).endswith(b"\r\n\r\n" + hello.BODY)


def test_the_socket_a_killed_server_left_is_replaced(
    servers: ServerFactory, tmp_path: Path
) -> None:
    path = tmp_path / "s.sock"
    crashed = serve_on_unix(servers, path)
    os.kill(crashed.pid, signal.SIGKILL)  # no cleanup: the socket file stays
    crashed.stop()  # reaps it and waits for its front and worker to go
    assert path.is_socket()
    serve_on_unix(servers, path)
    assert get_over_unix(path).endswith(b"\r\n\r\n" + hello.BODY)
