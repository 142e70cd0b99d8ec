"""Draining behind a real load balancer: HAProxy (loopback only) checks --health-path of two
maitred servers; one gets SIGTERM under continuous load.

HAProxy is set up not to hide a refused connection (`retries 0`, no redispatch): whatever it
sends to a server that no longer accepts is a failed request. With --shutdown-delay the check
fails first, HAProxy takes the server out, and only then does it stop accepting: no request is
lost. Without the delay (the control) the server stops accepting before HAProxy notices.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from harness import Server, ServerFactory, wait_until
from load import Load
from rawhttp import fetch

pytestmark = pytest.mark.skipif(
    shutil.which("haproxy") is None, reason="haproxy (Debian's package) is not installed"
)

CHECK_INTERVAL_MS = 200  # HAProxy checks each server this often; two failures take it out
LOAD_CLIENTS = 4
LOAD_LIMIT = 60.0  # seconds: the load is stopped by the test long before
BEFORE, AFTER = 50, 100  # answers to see before the TERM, and after the server is gone

CONFIG = """
global
    maxconn 512
defaults
    mode http
    timeout connect 2s
    timeout client 20s
    timeout server 20s
    retries 0
frontend web
    bind 127.0.0.1:{port}
    default_backend app
    http-response set-header X-Served-By %[srv_name]
backend app
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter {interval}ms fall 2 rise 1
    server a 127.0.0.1:{a} check
    server b 127.0.0.1:{b} check
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_haproxy(tmp_path: Path, a: Server, b: Server) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(CONFIG.format(port=port, interval=CHECK_INTERVAL_MS, a=a.port, b=b.port))
    proc = subprocess.Popen(
        ["haproxy", "-db", "-f", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    return proc, port


def served_by(port: int) -> str | None:
    try:
        return fetch(port, "GET", "/").header("x-served-by")
    except OSError:
        return None


def term_under_load(servers: ServerFactory, tmp_path: Path, delay: str) -> Load:
    """TERM server a behind HAProxy under load; the load, once a has exited and b has
    answered AFTER more requests."""
    args = ("-w", "1", "--threads", "4", "--health-path", "/readyz", "--shutdown-delay", delay)
    a = servers.start("hello:application", *args)
    b = servers.start("hello:application", *args)
    haproxy, port = start_haproxy(tmp_path, a, b)
    try:
        seen: set[str | None] = set()
        wait_until(lambda: seen.add(served_by(port)) or {"a", "b"} <= seen, what="a and b up")
        with Load(port, "/", clients=LOAD_CLIENTS, duration=LOAD_LIMIT) as load:
            load.wait_for(BEFORE)
            os.kill(a.pid, signal.SIGTERM)
            assert a.spawned.proc.wait(30) == 0
            load.wait_for(len(load.results) + AFTER)
        return load
    finally:
        haproxy.terminate()
        haproxy.wait(15)


def test_term_with_a_shutdown_delay_loses_no_request(
    servers: ServerFactory, tmp_path: Path
) -> None:
    load = term_under_load(servers, tmp_path, "3")
    assert load.failures() == [], load.outcomes


def test_without_the_delay_haproxy_sends_to_a_server_gone(
    servers: ServerFactory, tmp_path: Path
) -> None:
    """The control: the same stop with --shutdown-delay 0 loses requests."""
    load = term_under_load(servers, tmp_path, "0")
    assert load.failures(), load.outcomes
