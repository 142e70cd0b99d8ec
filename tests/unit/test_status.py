"""The status page's pure parts: percentiles from buckets, the history's rates, the in-flight
message's bound, the status routes, and readiness over every app."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from maitred import masterstats, status
from maitred.front import inflight
from maitred.history import HISTORY_LENGTH, History, quantile
from maitred.readiness import Readiness
from maitred.statsserver import Answers, StatsServer, respond
from maitred.status import BUCKETS

NO_BUCKETS = [0] * (len(BUCKETS) + 1)


def buckets(**at_bound: int) -> list[int]:
    """Per-bucket counts; keyword `b0_01=3` puts 3 in the bucket whose bound is 0.01."""
    counts = list(NO_BUCKETS)
    for name, n in at_bound.items():
        bound = float(name[1:].replace("_", "."))
        counts[BUCKETS.index(bound) if bound in BUCKETS else len(BUCKETS)] = n
    return counts


def test_quantiles_interpolate_within_a_bucket_and_stop_at_the_last_bound() -> None:
    assert quantile(0.5, NO_BUCKETS) is None  # no requests: no latency, not zero
    assert quantile(0.5, buckets(b0_01=10)) == 0.005 + 0.005 * 0.5
    assert quantile(0.99, buckets(b0_001=99, b1_0=1)) == 0.001  # the 99th of 100 is fast
    assert quantile(0.995, buckets(b0_001=99, b1_0=1)) == pytest.approx(0.75)
    assert quantile(0.5, buckets(b99=4)) == BUCKETS[-1]


def counts(at: float, total: list[int]) -> dict[str, Any]:
    return {"at": at, "histograms": {"total": [total, 0.0]}}


def report(app: str, queued: int, busy: float, threads: int) -> status.LoadReport:
    return status.LoadReport(app, queued, 0.0, busy, busy, threads, 1.0)


def test_history_rates_come_from_each_fronts_own_interval() -> None:
    history = History()
    loads = {7: {"main": report("main", 2, 1.5, 4)}}
    # Two fronts; each report's `at` is its own clock: the rate is theirs, not the sample's.
    fronts = {7: {"main": counts(10.0, buckets(b0_01=100))}, 8: {"main": counts(10.5, NO_BUCKETS)}}
    assert history.tick(11.0, fronts, loads, ["main"]) == 12.0
    fronts = {
        7: {"main": counts(12.0, buckets(b0_01=300))},
        8: {"main": counts(11.0, buckets(b1_0=50))},
    }
    history.tick(12.0, fronts, loads, ["main"])
    series = history.series("main")
    assert series["requests_per_second"] == [0.0, 100.0 + 100.0]
    assert series["latency_p50_seconds"][0] is None
    assert series["latency_p99_seconds"][1] is not None and series["latency_p99_seconds"][1] > 0.5
    assert series["queue_length"] == [2, 2]
    assert series["busy_slots"] == [1.5, 1.5]
    assert series["slots"] == [4, 4]
    # A front that stops reporting counts for no more than FRESH seconds.
    history.tick(20.0, fronts, loads, ["main"])
    assert history.series("main")["requests_per_second"][-1] == 0.0


def test_history_keeps_the_last_minutes_only_and_is_due_once_a_second() -> None:
    history = History()
    now = 0.0
    for _ in range(HISTORY_LENGTH + 10):
        now = history.tick(now, {}, {}, ["main"])
    assert len(history.series("main")["time"]) == HISTORY_LENGTH
    assert history.tick(now - 0.5, {}, {}, ["main"]) == now  # not due: nothing taken
    assert len(history.series("main")["time"]) == HISTORY_LENGTH


def test_in_flight_past_one_atomic_write_sends_the_oldest_that_fit() -> None:
    entry = [1.0, "in app", "GET", "/" + "x" * inflight.PATH_LIMIT, 1, 1, "r" * 32]
    figures = {"app": "main", "at": 1.0, "in_flight": [entry] * 40, "served": []}
    message = inflight.encode(figures)
    assert message is not None and len(message) <= status.PIPE_BUF
    (said,) = status.StatusReader().feed(message)
    assert isinstance(said, status.MetricsReport)
    assert 0 < len(said.figures["in_flight"]) < 40
    assert inflight.encode({"app": None, "spool_bytes": 5}) is not None


def held_by(app: str, started: float) -> SimpleNamespace:
    """A connection whose request of `app` runs in a worker thread."""
    exchange = SimpleNamespace(
        source="app",
        state=None,  # not DONE
        app=app,
        started=started,
        dispatched=started,
        app_done=0.0,
        head=SimpleNamespace(method=b"GET", target=f"/{app}".encode()),
        worker=None,
        rid=1,
        request_id="",
        body=None,
        spool=None,
    )
    return SimpleNamespace(active=exchange, reading=None, pipeline=())


def test_in_flight_follows_the_apps_that_join_and_leave() -> None:
    dispatchers: dict[str, Any] = {"a": SimpleNamespace(workers=[])}
    activity = inflight.Activity([("a", "a"), ("b", "b")], dispatchers)
    dispatchers["c"] = SimpleNamespace(workers=[])  # c joined; b left, a request of b runs
    activity.add("c", "c")
    connections = [held_by("a", 1.0), held_by("b", 1.0), held_by("c", 2.0)]
    a, c, front = activity.snapshots(connections, 3.0)  # type: ignore[arg-type]
    assert [r[3] for r in a["in_flight"]] == ["/a"]
    assert [r[3] for r in c["in_flight"]] == ["/c"]
    assert front == {"app": None, "spool_bytes": 0}


def pool(*workers: tuple[bool, object]) -> SimpleNamespace:
    children = [SimpleNamespace(ready=ready, leaving=leaving) for ready, leaving in workers]
    return SimpleNamespace(app_imported=True, workers=children)


def test_readyz_needs_a_serving_worker_in_every_app() -> None:
    arbiter = SimpleNamespace(
        stopping=False,
        delay=SimpleNamespace(running=False),
        hold=False,  # not drained by `maitred ctl drain`
        pools={"shop": pool((True, None)), "blog": pool((True, "draining"), (False, None))},
    )
    assert masterstats.ready(arbiter) is Readiness.STARTING  # type: ignore[arg-type]
    arbiter.pools["blog"] = pool((True, None))
    assert masterstats.ready(arbiter) is Readiness.READY  # type: ignore[arg-type]


ANSWERS = Answers(
    metrics=lambda accept: ("text/plain", b""),
    alive=lambda: True,
    readiness=lambda: (200, b"ready\n"),
    status=lambda: json.dumps({"schema": 1}).encode(),
    page=b"<html>page</html>",
)


def test_status_routes() -> None:
    page = respond(b"GET /status HTTP/1.1\r\n\r\n", ANSWERS)
    assert page.startswith(b"HTTP/1.0 200 OK\r\n")
    assert b"Content-Type: text/html; charset=utf-8\r\n" in page
    assert page.endswith(b"<html>page</html>")
    document = respond(b"GET /status.json HTTP/1.1\r\n\r\n", ANSWERS)
    assert b"Content-Type: application/json\r\n" in document
    assert document.endswith(b'{"schema": 1}')
    assert respond(b"POST /status.json HTTP/1.1\r\n\r\n", ANSWERS).startswith(b"HTTP/1.0 405")


def test_the_loop_wakes_for_the_tick_when_it_is_due() -> None:
    ticks: list[float] = []

    def tick(now: float) -> float:
        ticks.append(now)
        return now + 1.0

    answers = Answers(ANSWERS.metrics, ANSWERS.alive, ANSWERS.readiness, tick=tick)
    server = StatsServer(SimpleNamespace(fileno=lambda: -1), "", answers)  # type: ignore[arg-type]
    assert server.timeout(5.0) == 0.0  # never ticked: due now
    server.turn([])
    assert len(ticks) == 1
    assert 0.9 < (server.timeout(ticks[0]) or 0) <= 1.0
    server.turn([])  # not due yet
    assert len(ticks) == 1
