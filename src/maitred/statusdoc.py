"""The status document: one JSON-ready dict behind /status.json, the /status page and `ctl`.

Theory of operation
-------------------
Everything here is already in the master's memory: its pools and workers (maitred.pool), the
fronts' load reports, in-flight requests (maitred.front.inflight) and counters (with
--stats-bind), sent about once a second (maitred.book.MetricsBook), and the history of the last
minutes (maitred.history). :func:`snapshot` only reads and arranges them; the one thing it
reads from the system is each worker's memory, through a cache that reads a worker at most
every two seconds (maitred.metrics.MemoryReadings). Its cost is bounded by workers +
IN_FLIGHT_SHOWN per app + the history (300 samples), so building it never holds up the master's
loop.

Figures from the fronts are up to about a second old; an in-flight request's age is aged by
the time since its front's report. Without --stats-bind the fronts send no counters and the
master samples no history: `history` is then empty (in_flight and a worker's `requests` are
sent either way; `requests` is null until its front's first report).

The shape (SCHEMA 1). Fields may be added; none is renamed or removed. Durations are seconds,
sizes bytes, times in `history.time` Unix seconds; null means "not known".

    {
      "schema": 1,
      "server": {
        "pid": int, "version": str, "uptime_seconds": float,
        "state": "starting" | "ready" | "draining",   # as /readyz says
        "draining": bool,
        "fronts": [{"pid": int, "number": int, "age_seconds": float,
                    "last_seen_seconds": float}],
        "spool_bytes": int                              # request/response spool files held
      },
      "apps": {
        "<app>": {
          "pool": {"size": int, "min": int, "max": int, "threads": int,   # threads per worker
                   "last_decision": {"action": "hold" | "grow" | "shrink",
                                     "count": int, "reason": str}},
          "workers": [{"pid": int, "id": int, "state": "starting" | "ready" | "draining",
                       "requests": int | null,       # answered, as its front counts them
                       "in_flight": int | null, "rss_bytes": int | null,
                       "pss_bytes": int | null, "age_seconds": float}],
          "queue": {"length": int,
                    "oldest_seconds": float},   # its longest wait, aged like in_flight
          "slots": {"busy": int, "total": int},
          "in_flight": [{"method": str, "path": str, "worker_pid": int | null,
                         "slot": int | null,     # the link's request number on that worker
                         "age_seconds": float, "phase": "queued" | "in app" | "sending",
                         "request_id": str | null}],                 # oldest first
          "history": {"interval_seconds": float, "time": [...], "requests_per_second": [...],
                      "latency_p50_seconds": [...], "latency_p90_seconds": [...],
                      "latency_p99_seconds": [...], "queue_length": [...],
                      "busy_slots": [...], "slots": [...]}            # oldest first
        }
      }
    }

Owned by the master's loop.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from maitred import __version__, masterstats, scaling
from maitred.book import MetricsBook
from maitred.front import inflight
from maitred.history import SAMPLE_INTERVAL
from maitred.metrics import worker_state
from maitred.readiness import Readiness

if TYPE_CHECKING:
    from maitred.arbiter import Arbiter
    from maitred.children import WorkerChild
    from maitred.pool import Pool
    from maitred.status import LoadReport

SCHEMA = 1
IN_FLIGHT_SHOWN = 50  # requests listed per app, oldest first


def snapshot(arbiter: Arbiter, history: bool = True) -> dict[str, Any]:
    """The status document (the module's docstring gives its shape); `history=False` leaves
    the charts' samples out (a terminal view does not draw them)."""
    now = time.monotonic()
    book = arbiter.book
    book.memory.keep(c.pid for pool in arbiter.pools.values() for c in pool.workers)
    apps = {name: _app(name, pool, book, now, history) for name, pool in arbiter.pools.items()}
    return {"schema": SCHEMA, "server": _server(arbiter, now), "apps": apps}


def _server(arbiter: Arbiter, now: float) -> dict[str, Any]:
    fronts = arbiter.fronts.fronts() if arbiter.fronts is not None else []
    state = masterstats.ready(arbiter)
    return {
        "pid": arbiter.pid,
        "version": __version__,
        "uptime_seconds": round(now - arbiter.book.started, 3),
        "state": state.value,
        "draining": state is Readiness.DRAINING,
        "fronts": [
            {
                "pid": front.pid,
                "number": front.number,
                "age_seconds": round(now - front.started, 3),
                "last_seen_seconds": round(now - front.last_seen, 3),
            }
            for front in fronts
        ],
        "spool_bytes": sum(arbiter.book.spool.values()),
    }


def _app(name: str, pool: Pool, book: MetricsBook, now: float, history: bool) -> dict[str, Any]:
    reports = [r[name] for r in book.loads.values() if name in r]
    held = {pid: n for r in reports for pid, n in r.in_flight}
    activity = [apps[name] for apps in book.activity.values() if name in apps]
    served: dict[int, int] = {}
    for figures in activity:
        for pid, n in figures.get("served", ()):
            served[pid] = served.get(pid, 0) + n
    bounds = scaling.Bounds.of(pool.cfg)
    decision = pool.last_decision
    in_flight = _in_flight(activity, now)
    doc: dict[str, Any] = {
        "pool": {
            "size": pool.wanted,
            "min": bounds.least,
            "max": bounds.most,
            "threads": pool.cfg.threads,
            "last_decision": {
                "action": decision.action.name.lower(),
                "count": decision.count,
                "reason": decision.reason,
            },
        },
        "workers": [_worker(child, book, served, held, now) for child in pool.workers],
        "queue": {
            "length": sum(r.queued for r in reports),
            "oldest_seconds": _oldest_queued(reports, in_flight),
        },
        "slots": {"busy": sum(held.values()), "total": sum(r.threads for r in reports)},
        "in_flight": in_flight,
    }
    if history:
        doc["history"] = {"interval_seconds": SAMPLE_INTERVAL, **book.history.series(name)}
    return doc


def _worker(
    child: WorkerChild, book: MetricsBook, served: dict[int, int], held: dict[int, int], now: float
) -> dict[str, Any]:
    rss, pss = book.memory.of(child.pid, now)
    return {
        "pid": child.pid,
        "id": child.worker_id,
        "state": worker_state(child),
        "requests": served.get(child.pid),
        "in_flight": held.get(child.pid),
        "rss_bytes": rss or None,
        "pss_bytes": pss or None,
        "age_seconds": round(now - child.started, 3),
    }


def _oldest_queued(reports: list[LoadReport], in_flight: list[dict[str, Any]]) -> float:
    """The longest wait of a queued request: the load reports' (over their last second), or
    that of a queued request listed, aged to now, when it is longer."""
    waits = [r.oldest_wait for r in reports if r.queued]
    waits += [r["age_seconds"] for r in in_flight if r["phase"] == inflight.QUEUED]
    return round(max(waits, default=0.0), 3)


def _in_flight(activity: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
    """The fronts' oldest requests of an app, aged to now, oldest first."""
    requests = []
    for figures in activity:
        since = max(0.0, now - float(figures.get("at", now)))
        for age, phase, method, path, pid, rid, request_id in figures.get("in_flight", ()):
            requests.append(
                {
                    "method": method,
                    "path": path,
                    "worker_pid": pid or None,
                    "slot": rid or None,
                    "age_seconds": round(age + since, 3),
                    "phase": phase,
                    "request_id": request_id or None,
                }
            )
    requests.sort(key=lambda r: -r["age_seconds"])
    return requests[:IN_FLIGHT_SHOWN]
