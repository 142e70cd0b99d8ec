"""--stats-bind: /metrics counts exactly and never backwards; /livez and /readyz; slow scrapers."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest

from harness import Server, ServerFactory, run_cli, wait_until
from procs import children_titled, read_proc
from rawhttp import fetch, read_to_close, request_bytes, send_closing_get, unix_get, unix_listening
from slowclients import open_idle
from statsclient import REQUESTS, STATS, Samples, scrape, stats_port, value, wait_count


@pytest.mark.expect_errors("boom-before-head")
def test_counters_and_histograms_count_each_request_once(servers: ServerFactory) -> None:
    server = servers.start("failing:application", "-w", "1", *STATS)
    port = stats_port(server)
    for _ in range(5):
        assert fetch(server.port, "GET", "/").status == 200
    for _ in range(3):
        assert fetch(server.port, "POST", "/", body=b"x").status == 200
    for _ in range(2):
        assert fetch(server.port, "GET", "/before").status == 500
    samples = wait_count(port, 10)
    assert value(samples, REQUESTS, app="main", status_class="2xx", method="GET") == 5
    assert value(samples, REQUESTS, status_class="2xx", method="POST") == 3
    assert value(samples, REQUESTS, status_class="5xx", method="GET") == 2
    for name in ("queue", "app", "send", "total"):
        histogram = f"maitred_request_{name}_seconds"
        assert value(samples, f"{histogram}_count", app="main") == 10
        assert value(samples, f"{histogram}_bucket", app="main", le="+Inf") == 10
    assert value(samples, "maitred_workers", app="main", state="ready") == 1
    assert value(samples, "maitred_worker_rss_bytes", app="main") > 0
    assert value(samples, "maitred_threads", app="main") > 0


def test_static_files_count_with_their_bytes_and_health_checks_do_not(
    servers: ServerFactory, tmp_path: Path
) -> None:
    (tmp_path / "page.txt").write_bytes(b"x" * 1000)
    server = servers.start(
        "hello:application",
        "-w",
        "1",
        "--static",
        f"/s={tmp_path}",
        "--health-path",
        "/healthz",
        *STATS,
    )
    port = stats_port(server)
    for _ in range(3):
        assert fetch(server.port, "GET", "/s/page.txt").status == 200
    assert fetch(server.port, "GET", "/s/missing.txt").status == 404
    assert fetch(server.port, "GET", "/healthz").status == 200
    assert fetch(server.port, "GET", "/").status == 200
    samples = wait_count(port, 5)
    assert value(samples, "maitred_static_files_total", app="main") == 3
    assert value(samples, "maitred_static_bytes_total", app="main") == 3000
    assert value(samples, "maitred_request_queue_seconds_count", app="main") == 1


def test_connections_by_phase(servers: ServerFactory, tmp_path: Path) -> None:
    server = servers.start(
        "slow:application", "-w", "1", "--graceful-timeout", "1", *STATS
    )  # the slow request is cut short at the end
    port = stats_port(server)
    mark = tmp_path / "running"
    idle = open_idle(server.port, 2)
    silent = socket.create_connection(("127.0.0.1", server.port))
    partial = socket.create_connection(("127.0.0.1", server.port))
    partial.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # the head is still coming
    waiting = socket.create_connection(("127.0.0.1", server.port))
    waiting.sendall(request_bytes("GET", f"/?s=30&mark={mark}"))
    wanted = {"new": 1, "idle": 2, "reading": 1, "waiting": 1, "writing": 0}
    try:
        wait_until(mark.exists, what="the slow request running")

        def phases() -> dict[str, float]:
            samples = scrape(port)
            return {phase: value(samples, "maitred_connections", state=phase) for phase in wanted}

        wait_until(lambda: phases() == wanted, what=f"connections {wanted}")
    finally:
        for sock in [*idle, silent, partial, waiting]:
            sock.close()


def test_openmetrics_when_the_scraper_asks(servers: ServerFactory) -> None:
    server = servers.start("hello:application", "-w", "1", *STATS)
    port = stats_port(server)
    accept = [("Accept", "application/openmetrics-text; version=1.0.0; charset=utf-8")]
    response = fetch(port, "GET", "/metrics", headers=accept)
    assert response.status == 200
    assert response.body.endswith(b"# EOF\n")
    assert fetch(port, "GET", "/nothing").status == 404
    assert fetch(port, "POST", "/metrics").status == 405


@pytest.mark.expect_errors(r"worker \d \(pid \d+\) exited", r"front \d \(pid \d+\) exited")
def test_counters_never_go_back_across_hup_killed_worker_and_two_fronts(
    servers: ServerFactory,
) -> None:
    server = servers.start("hello:application", "-w", "2", "--fronts", "2", *STATS)
    port = stats_port(server)
    for _ in range(20):  # two fronts: each connection to either, the sum counts them all
        assert fetch(server.port, "GET", "/").status == 200
    wait_count(port, 20)
    os.kill(server.pid, signal.SIGHUP)  # new workers; --fronts unchanged: same fronts
    wait_count(port, 2, "maitred_worker_exits_total", cause="reload")
    wait_count(port, 2, "maitred_workers", state="ready")
    assert value(scrape(port), REQUESTS) == 20
    os.kill(_worker_pids(scrape(port))[0], signal.SIGKILL)
    wait_count(port, 1, "maitred_worker_exits_total", cause="crash")
    fronts = _fronts(server)
    os.kill(min(fronts), signal.SIGKILL)  # its counts stay in the totals
    wait_until(lambda: len(_fronts(server) - fronts) == 1, what="the front replaced")
    assert value(scrape(port), REQUESTS) == 20
    wait_count(port, 2, "maitred_workers", state="ready")
    for _ in range(10):
        assert fetch(server.port, "GET", "/").status == 200
    samples = wait_count(port, 30)
    assert value(samples, "maitred_request_total_seconds_count") == 30


@pytest.mark.expect_errors(r"front \(pid \d+\) exited")
def test_a_front_that_stops_gives_its_last_counts(servers: ServerFactory) -> None:
    server = servers.start("hello:application", "-w", "1", *STATS)
    port = stats_port(server)
    (front,) = _fronts(server)
    for _ in range(10):
        assert fetch(server.port, "GET", "/").status == 200
    os.kill(front, signal.SIGTERM)  # it stops at once, before its next periodic report
    wait_until(lambda: _fronts(server) - {front}, what="the front replaced")
    wait_count(port, 10)


def test_a_stats_address_in_use_stops_the_start_with_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        result = run_cli(["-b", "127.0.0.1:0", "--stats-bind", address, "hello:application"])
    assert result.returncode == 1
    assert f"cannot serve --stats-bind {address}" in result.stderr


def test_usr2_hands_the_stats_address_to_the_new_master(
    servers: ServerFactory, tmp_path: Path
) -> None:
    with socket.socket() as probe:  # a port for both masters, free once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pidfile = tmp_path / "maitred.pid"
    server = servers.start(
        "hello:application",
        "-w",
        "1",
        "--pidfile",
        str(pidfile),
        "--stats-bind",
        f"127.0.0.1:{port}",
    )
    old_master = server.pid
    wait_until(lambda: pidfile.exists() and pidfile.read_text().strip() == str(old_master))
    os.kill(old_master, signal.SIGUSR2)
    server.spawned.proc.wait(15)  # the old master stops once the new one serves
    wait_until(lambda: server.stderr.count("Stats at:") == 2, what="the new master's stats")
    new_master = int(pidfile.read_text())
    try:
        assert new_master != old_master
        assert fetch(port, "GET", "/readyz").status == 200
    finally:
        os.kill(new_master, signal.SIGTERM)
        wait_until(
            lambda: read_proc(new_master) is None or read_proc(new_master).state == "Z",
            what="the new master to stop",
        )


def _fronts(server: Server) -> set[int]:
    return set(children_titled(server.pid, "maitred: front"))


def _worker_pids(samples: Samples) -> list[int]:
    return [
        int(dict(labels)["pid"]) for (name, labels) in samples if name == "maitred_worker_rss_bytes"
    ]


def test_readyz_fails_until_the_app_imports_and_while_draining(
    servers: ServerFactory, tmp_path: Path
) -> None:
    hold = tmp_path / "hold"
    hold.touch()
    stats = tmp_path / "stats.sock"
    spawned = servers.launch(
        "heldimport:application",
        "-w",
        "1",
        "--stats-bind",
        f"unix:{stats}",
        "--shutdown-delay",
        "60",
        env={"HOLD_FILE": str(hold)},
    )
    try:
        wait_until(lambda: unix_listening(stats), what="the stats socket")
        assert unix_get(stats, "/readyz") == (503, b"starting\n")
        assert unix_get(stats, "/livez")[0] == 200
    finally:
        hold.unlink()
    server = servers.serving(spawned)
    wait_until(lambda: unix_get(stats, "/readyz")[0] == 200, what="ready")
    os.kill(server.pid, signal.SIGTERM)
    wait_until(lambda: unix_get(stats, "/readyz") == (503, b"draining\n"), what="draining")
    assert fetch(server.port, "GET", "/").status == 200  # served on, not ready
    os.kill(server.pid, signal.SIGTERM)
    assert server.spawned.proc.wait(15) == 0
    assert not stats.exists()  # its path goes with the server


def test_a_silent_scraper_holds_up_neither_the_server_nor_other_scrapes(
    servers: ServerFactory,
) -> None:
    server = servers.start("hello:application", "-w", "1", *STATS)
    port = stats_port(server)
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    half = socket.create_connection(("127.0.0.1", port))
    half.sendall(b"GET /metrics HTTP/1.1\r\n")  # a head that never ends
    try:
        assert fetch(server.port, "GET", "/").status == 200
        assert fetch(port, "GET", "/livez").status == 200
        wait_count(port, 1)
        with socket.create_connection(("127.0.0.1", port)) as sock:
            send_closing_get(sock, "/readyz")
            assert read_to_close(sock) == (200, b"ready\n")
        silent[0].settimeout(15)
        assert silent[0].recv(1) == b""  # closed by the server past its time
    finally:
        for sock in [*silent, half]:
            sock.close()
