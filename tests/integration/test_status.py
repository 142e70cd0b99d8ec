"""--stats-bind's /status.json and /status: pools, workers, requests in flight, history; the
pool and spool metrics; /readyz over every app."""

from __future__ import annotations

import itertools
import socket
from pathlib import Path
from typing import Any

from harness import ServerFactory, wait_until
from procs import children_titled
from rawhttp import fetch, request_bytes
from statsclient import STATS, scrape, stats_port, status, value

HISTORY_SPAN = 4  # samples the history test waits for: their mean spacing is what it judges


def _app(port: int, name: str = "main") -> dict[str, Any]:
    app: dict[str, Any] = status(port)["apps"][name]
    return app


def _send_slow(port: int, path: str) -> socket.socket:
    """A request left running: the caller closes the socket."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(request_bytes("GET", path))
    return sock


def test_the_document_shows_the_server_the_pool_and_its_workers(servers: ServerFactory) -> None:
    server = servers.start("hello:application", "-w", "2", "--threads", "3", *STATS)
    port = stats_port(server)
    for _ in range(7):
        assert fetch(server.port, "GET", "/").status == 200
    workers = set(children_titled(server.pid, "maitred: worker"))

    def served() -> int:
        return sum(w["requests"] or 0 for w in _app(port)["workers"])

    wait_until(lambda: served() == 7, what="7 requests counted to the workers")
    doc = status(port)
    assert doc["schema"] == 1
    assert doc["server"]["pid"] == server.pid
    assert doc["server"]["state"] == "ready" and doc["server"]["draining"] is False
    assert {f["pid"] for f in doc["server"]["fronts"]} == set(
        children_titled(server.pid, "maitred: front")
    )
    app = doc["apps"]["main"]
    assert app["pool"] == {
        "size": 2,
        "min": 2,
        "max": 2,
        "threads": 3,
        "last_decision": {"action": "hold", "count": 0, "reason": ""},
    }
    assert {w["pid"] for w in app["workers"]} == workers
    assert {w["state"] for w in app["workers"]} == {"ready"}
    assert all(w["rss_bytes"] > 0 and w["age_seconds"] > 0 for w in app["workers"])
    assert app["slots"]["total"] == 6
    assert app["in_flight"] == []
    page = fetch(port, "GET", "/status")
    assert page.status == 200 and page.header("content-type") == "text/html; charset=utf-8"
    assert b"status.json" in page.body


def test_a_slow_request_shows_in_flight_in_its_phase_then_leaves(
    servers: ServerFactory, tmp_path: Path
) -> None:
    server = servers.start(
        "slow:application", "-w", "1", "--threads", "1", "--graceful-timeout", "1", *STATS
    )
    port = stats_port(server)
    mark = tmp_path / "running"
    running = _send_slow(server.port, f"/?s=30&mark={mark}")
    queued = _send_slow(server.port, "/?s=0&queued=yes")
    try:
        wait_until(mark.exists, what="the slow request running")

        def phases() -> dict[str, dict[str, Any]]:
            return {r["phase"]: r for r in _app(port)["in_flight"]}

        wait_until(lambda: set(phases()) == {"in app", "queued"}, what="both requests shown")
        shown = phases()
        (worker,) = children_titled(server.pid, "maitred: worker")
        in_app, waiting = shown["in app"], shown["queued"]
        assert in_app["method"] == "GET" and in_app["path"] == f"/?s=30&mark={mark}"
        assert in_app["worker_pid"] == worker and in_app["slot"] is not None
        assert in_app["request_id"]
        assert waiting["path"] == "/?s=0&queued=yes" and waiting["worker_pid"] is None
        first = in_app["age_seconds"]
        wait_until(
            lambda: phases()["in app"]["age_seconds"] > first + 0.5, what="the request aging"
        )
        app = _app(port)
        assert app["queue"]["length"] == 1
        queued_for = [r["age_seconds"] for r in app["in_flight"] if r["phase"] == "queued"]
        assert app["queue"]["oldest_seconds"] >= queued_for[0] > 0.5  # aged like the list
        assert app["slots"] == {"busy": 1, "total": 1}
    finally:
        running.close()
        queued.close()


def test_history_keeps_one_sample_a_second_with_the_request_rate(
    servers: ServerFactory,
) -> None:
    server = servers.start("hello:application", "-w", "1", *STATS)
    port = stats_port(server)

    def busy_second() -> bool:
        for _ in range(5):
            assert fetch(server.port, "GET", "/").status == 200
        history = _app(port)["history"]
        busy = any(rate > 0 for rate in history["requests_per_second"])
        return busy and len(history["time"]) >= HISTORY_SPAN

    wait_until(busy_second, what="a sample with requests in it")
    history = _app(port)["history"]
    assert history["interval_seconds"] == 1.0
    lengths = {len(column) for name, column in history.items() if name != "interval_seconds"}
    assert len(lengths) == 1
    times = history["time"]
    # A late tick is followed by one on the beat, so one gap may be short and the one before it
    # long on a loaded machine; over the whole span the samples still come about once a second.
    assert all(b > a for a, b in itertools.pairwise(times))
    assert 0.5 < (times[-1] - times[0]) / (len(times) - 1) < 2.0, times
    with_requests = [i for i, rate in enumerate(history["requests_per_second"]) if rate > 0]
    assert all(history["latency_p50_seconds"][i] is not None for i in with_requests)
    assert all(history["slots"][i] == 4 for i in with_requests)


def test_pool_bounds_and_spooled_bytes_are_metrics(servers: ServerFactory, tmp_path: Path) -> None:
    server = servers.start(
        "slow:application",
        "-w",
        "1",
        "--min-workers",
        "1",
        "--max-workers",
        "3",
        "--body-buffer-size",
        "1024",
        "--graceful-timeout",
        "1",
        *STATS,
    )
    port = stats_port(server)
    samples = scrape(port)
    assert value(samples, "maitred_pool_workers", app="main") == 1
    assert value(samples, "maitred_pool_min_workers", app="main") == 1
    assert value(samples, "maitred_pool_max_workers", app="main") == 3
    assert value(samples, "maitred_pool_last_scaling", app="main", action="hold") == 1
    assert value(samples, "maitred_spool_bytes") == 0
    mark = tmp_path / "running"
    body = b"x" * 100_000
    upload = socket.create_connection(("127.0.0.1", server.port))
    upload.sendall(request_bytes("POST", f"/?s=3&mark={mark}", body=body))
    try:
        wait_until(mark.exists, what="the upload running")
        wait_until(
            lambda: value(scrape(port), "maitred_spool_bytes") == len(body),
            what="the spooled body counted",
        )
        assert status(port)["server"]["spool_bytes"] == len(body)
        # Answered, its file closed: nothing is held any more.
        wait_until(lambda: value(scrape(port), "maitred_spool_bytes") == 0, what="none held")
    finally:
        upload.close()
