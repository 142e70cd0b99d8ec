"""A stopping server turns new clients away at once and serves the ones that came before.

During a graceful stop (SIGTERM) the requests in flight finish, which may take long; a client
that connects meanwhile must be refused at once, so that a load balancer tries another server,
not left in a listen backlog that nobody accepts from, to be reset when the server exits. The
clients that connected before the stop, whether they had sent their request or not, are served.
Each test holds a slow request in flight (tests/apps/slow.py) and probes with new clients,
over TCP and over a unix socket.
"""

from __future__ import annotations

import contextlib
import enum
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from harness import Server, ServerFactory
from rawhttp import RawConnection, request_bytes

from .test_supervisor import wait_until

# The request in flight while the server drains: it outlasts a probe's wait for an answer, so a
# probe left in a backlog shows as hung, not as reset when the server exits.
SLOW = 5.0
# How long a probe waits to connect and then for an answer. A client the front accepted just
# before it stopped is answered in milliseconds; a hung one never is.
PROBE_TIMEOUT = 3.0
# The fronts take the stop in milliseconds; this leaves room for a loaded 2-core machine.
REFUSED_WITHIN = 4.0
# A refusal or a reset comes from the kernel: no wait at all, but the test's own scheduling.
AT_ONCE = 0.5
# After the first refusal, every later client is refused too.
LATER_PROBES = 3
# Clients connected before the stop, of each kind (enough to reach both fronts of --fronts 2).
EARLY_CLIENTS = 3
DONE_TIMEOUT = SLOW + 15.0


class Outcome(enum.Enum):
    SERVED = "served"  # accepted before the front stopped, and answered
    REFUSED = "refused"  # ECONNREFUSED, or the unix socket's path is gone
    RESET = "reset"  # taken into a backlog and reset: allowed only at once
    HUNG = "hung"  # no answer within PROBE_TIMEOUT: the bug


def connect_tcp(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT)


def connect_unix(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(PROBE_TIMEOUT)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        raise
    return sock


def probe(connect: Callable[[], socket.socket]) -> tuple[Outcome, float]:
    """One new client: what became of it, and how long it waited for that."""
    started = time.monotonic()
    try:
        with connect() as sock:
            sock.sendall(request_bytes("GET", "/", [("Connection", "close")]))
            answer = sock.recv(64)
    except (ConnectionRefusedError, FileNotFoundError):
        outcome = Outcome.REFUSED
    except TimeoutError:
        outcome = Outcome.HUNG
    except (ConnectionResetError, BrokenPipeError):
        outcome = Outcome.RESET
    else:
        outcome = Outcome.SERVED if answer.startswith(b"HTTP/1.1 200 ") else Outcome.RESET
    return outcome, time.monotonic() - started


def wait_refused(connect: Callable[[], socket.socket], server: Server, what: str) -> float:
    """Probe until a client is refused; returns the seconds from now until then. Fails on a
    client left hanging or reset late, or when no client is refused while the server drains."""
    started = time.monotonic()
    while True:
        outcome, waited = probe(connect)
        since = time.monotonic() - started
        assert outcome is not Outcome.HUNG, f"{what}: a new client hung {waited:.1f} s"
        assert outcome is not Outcome.RESET or waited < AT_ONCE, (
            f"{what}: a new client was reset after {waited:.1f} s"
        )
        if outcome is Outcome.REFUSED:
            assert waited < AT_ONCE, f"{what}: refused only after {waited:.1f} s"
            # Still draining: the refusal is the stop's doing, not the server being gone.
            assert server.spawned.proc.poll() is None, server.stderr
            return since
        assert since < REFUSED_WITHIN, f"{what}: new clients still accepted {since:.1f} s on"


@pytest.mark.parametrize("fronts", [1, 2], ids=["one-front", "two-fronts"])
def test_a_draining_server_refuses_new_clients_and_serves_earlier_ones(
    servers: ServerFactory, tmp_path: Path, fronts: int
) -> None:
    path = tmp_path / "s.sock"
    server = servers.start(
        "slow:application",
        *("-b", f"unix:{path}", "--fronts", str(fronts), "-w", str(fronts), "--threads", "2"),
    )
    with contextlib.ExitStack() as clients:
        drain_with_clients(server, path, tmp_path / "running", clients)
    assert server.spawned.proc.wait(DONE_TIMEOUT) == 0
    assert not path.exists()


def drain_with_clients(
    server: Server, path: Path, mark: Path, clients: contextlib.ExitStack
) -> None:
    """SIGTERM with a slow request in flight and clients connected before it, then probes."""

    def connect() -> RawConnection:
        return clients.enter_context(RawConnection(server.port, timeout=DONE_TIMEOUT))

    slow = connect()
    slow.send(request_bytes("GET", f"/?s={SLOW}&mark={mark}"))
    wait_until(mark.exists, what="the slow request in a worker")
    sent = [connect() for _ in range(EARLY_CLIENTS)]
    for conn in sent:
        conn.send(request_bytes("GET", "/?s=0"))
    silent = [connect() for _ in range(EARLY_CLIENTS)]  # no request yet

    os.kill(server.pid, signal.SIGTERM)
    tcp = wait_refused(lambda: connect_tcp(server.port), server, "tcp")
    unix = wait_refused(lambda: connect_unix(path), server, "unix")
    print(f"\nnew clients refused {tcp:.3f} s (tcp), {unix:.3f} s (unix) after the TERM")
    for _ in range(LATER_PROBES):
        assert probe(lambda: connect_tcp(server.port))[0] is Outcome.REFUSED
        assert probe(lambda: connect_unix(path))[0] is Outcome.REFUSED

    for conn in silent:
        assert conn.request("GET", "/?s=0").status == 200
        assert conn.at_eof()  # stopping: the connection closes after its response
    for conn in sent:
        assert conn.read_response().status == 200
    assert slow.read_response().status == 200
