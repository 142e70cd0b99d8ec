"""Draining behind a real load balancer: HAProxy (loopback only) checks --health-path of two
maitred servers; one gets SIGTERM under continuous load.

HAProxy is set up not to hide a refused connection (`retries 0`, no redispatch): whatever it
sends to a server that no longer accepts is a failed request. With --shutdown-delay the check
fails first, HAProxy takes the server out, and only then does it stop accepting: no request is
lost. Without the delay (the control) the server stops accepting before HAProxy notices.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from haproxyfront import (
    CHECK_INTERVAL_MS,
    PREAMBLE,
    HAProxy,
    free_port,
    haproxy_binary,
    start_haproxy,
    wait_serving,
)
from harness import Server, ServerFactory
from load import Load

pytestmark = pytest.mark.skipif(
    haproxy_binary() is None, reason="haproxy (Debian's package) is not installed"
)

LOAD_CLIENTS = 4
LOAD_LIMIT = 60.0  # seconds: the load is stopped by the test long before
# Requests: hello answers through HAProxy at up to ~1,000 a second, and the stop takes the delay
# plus the drain; the load's default of 5,000 could run out before the test has seen AFTER.
LOAD_COUNT = 50_000
BEFORE, AFTER = 50, 100  # answers to see before the TERM, and after the server is gone

CONFIG = (
    PREAMBLE
    + """\
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
)


def start_for(tmp_path: Path, a: Server, b: Server) -> tuple[HAProxy, int]:
    port = free_port()
    text = CONFIG.format(port=port, interval=CHECK_INTERVAL_MS, a=a.port, b=b.port)
    return start_haproxy(tmp_path, text), port


def term_under_load(servers: ServerFactory, tmp_path: Path, delay: str) -> Load:
    """TERM server a behind HAProxy under load; the load, once a has exited and b has
    answered AFTER more requests."""
    args = ("-w", "1", "--threads", "4", "--health-path", "/readyz", "--shutdown-delay", delay)
    a = servers.start("hello:application", *args)
    b = servers.start("hello:application", *args)
    haproxy, port = start_for(tmp_path, a, b)
    try:
        wait_serving(port, {"a", "b"})
        with Load(port, "/", clients=LOAD_CLIENTS, duration=LOAD_LIMIT, limit=LOAD_COUNT) as load:
            load.wait_for(BEFORE)
            os.kill(a.pid, signal.SIGTERM)
            assert a.spawned.proc.wait(30) == 0
            load.wait_for(len(load.results) + AFTER)
        return load
    finally:
        haproxy.stop()


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
