"""--health-path answered by the front, and --shutdown-delay: failing the check while serving."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from harness import ServerFactory, wait_until
from rawhttp import fetch, unix_get, unix_listening

LONG = 15.0


def test_the_check_fails_until_the_app_imported_and_stays_out_of_the_access_log(
    servers: ServerFactory, tmp_path: Path
) -> None:
    hold = tmp_path / "hold"
    hold.touch()
    sock_path = tmp_path / "s.sock"
    access = tmp_path / "access.log"
    args = ["-w", "1", "-b", f"unix:{sock_path}", "--health-path", "/readyz"]
    spawned = servers.launch(
        "heldimport:application",
        *args,
        "--access-logfile",
        str(access),
        env={"HOLD_FILE": str(hold)},
    )
    try:
        wait_until(lambda: unix_listening(sock_path), what="the unix socket")
        assert unix_get(sock_path, "/readyz") == (503, b"starting\n")
    finally:
        hold.unlink()
    server = servers.serving(spawned)
    wait_until(lambda: fetch(server.port, "GET", "/readyz").status == 200, what="ready")
    assert fetch(server.port, "GET", "/readyz").body == b"ready\n"
    assert fetch(server.port, "GET", "/app").status == 200
    wait_until(lambda: "/app" in access.read_text(), what="the access log line")
    assert "/readyz" not in access.read_text()


def test_health_checks_are_logged_when_asked(servers: ServerFactory, tmp_path: Path) -> None:
    access = tmp_path / "access.log"
    server = servers.start(
        "hello:application",
        "-w",
        "1",
        "--health-path",
        "/readyz",
        "--log-health-checks",
        "--access-logfile",
        str(access),
    )
    assert fetch(server.port, "GET", "/readyz").status == 200
    wait_until(lambda: "/readyz" in access.read_text(), what="the check's access log line")


def test_term_fails_the_check_serves_on_and_a_second_term_ends_the_delay(
    servers: ServerFactory,
) -> None:
    server = servers.start(
        "hello:application", "-w", "1", "--health-path", "/readyz", "--shutdown-delay", "60"
    )
    os.kill(server.pid, signal.SIGTERM)
    wait_until(lambda: fetch(server.port, "GET", "/readyz").status == 503, what="draining")
    assert fetch(server.port, "GET", "/readyz").body == b"draining\n"
    assert fetch(server.port, "GET", "/").status == 200  # new connections are served still
    assert server.spawned.proc.poll() is None
    os.kill(server.pid, signal.SIGTERM)
    assert server.spawned.proc.wait(LONG) == 0
    assert "SIGTERM again: stopping without the rest of --shutdown-delay" in server.stderr


def test_a_delay_ends_by_itself_and_int_never_waits(servers: ServerFactory) -> None:
    short = servers.start("hello:application", "-w", "1", "--shutdown-delay", "1")
    started = time.monotonic()
    os.kill(short.pid, signal.SIGTERM)
    assert short.wait_for_log("--shutdown-delay is over", LONG)
    assert short.spawned.proc.wait(LONG) == 0
    assert time.monotonic() - started >= 1.0
    long = servers.start("hello:application", "-w", "1", "--shutdown-delay", "60")
    os.kill(long.pid, signal.SIGINT)
    assert long.spawned.proc.wait(LONG) == 0
    assert "--shutdown-delay" not in long.stderr
