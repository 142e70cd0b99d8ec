"""What the master keeps of the fronts' reports and its own supervision, for the status pages.

:class:`MetricsBook` keeps, per front pid, the last counters it sent; when a front exits (a
HUP that replaces the fronts, a crash), its last counters move into a `retired` total, so a sum
over `retired` and the living fronts never goes backwards (maitred.metrics says more). It
also keeps what the status page shows beside the counters (maitred.statusdoc): the requests in
flight, the spool bytes, the history of the last minutes, the workers' memory.

Apart from maitred.metrics so that the master keeps its book without importing
prometheus_client, which only a master that serves --stats-bind needs.

Owned by the master's loop.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from maitred.children import memory_of
from maitred.history import History
from maitred.status import LoadReport

Counts = dict[str, Any]  # one app's counters, as maitred.front.metrics sends them
MEMORY_FRESH = 2.0  # seconds a worker's memory reading is reused

# The plain counters of an app, each with its metric's name and help.
SIMPLE = {
    "shed": ("maitred_requests_shed", "Requests answered 503 (queue full, queue timeout)."),
    "timed_out": ("maitred_requests_timed_out", "Requests answered 504 (--timeout)."),
    "static_files": ("maitred_static_files", "Files served from --static directories."),
    "static_bytes": ("maitred_static_bytes", "Bytes of the bodies of those files sent."),
    "cache_hit": ("maitred_cache_hits", "Requests answered from the response cache, fresh."),
    "cache_stale": (
        "maitred_cache_stale",
        "Requests answered from a stale entry (stale-while-revalidate, stale-if-error).",
    ),
    "cache_miss": ("maitred_cache_misses", "Cacheable requests that went to the app."),
    "cache_revalidated": (
        "maitred_cache_revalidated",
        "Requests answered from a stored response the app confirmed unchanged (304).",
    ),
    "cache_bypass": (
        "maitred_cache_bypass",
        "Requests the cache sent to the app as they were (method, cookie, no-store).",
    ),
    "cache_evictions": (
        "maitred_cache_evictions",
        "Stored responses dropped to make room (--cache-size).",
    ),
}


def _add(into: Counts, counts: Counts) -> None:
    """Add counters (as :func:`_received` keeps them) into a total."""
    requests = into.setdefault("requests", {})
    for key, n in counts.get("requests", {}).items():
        requests[key] = requests.get(key, 0) + n
    for name, (buckets, total) in counts.get("histograms", {}).items():
        mine = into.setdefault("histograms", {}).setdefault(name, [[0] * len(buckets), 0.0])
        mine[0] = [a + b for a, b in zip(mine[0], buckets, strict=False)]
        mine[1] += total
    for key in SIMPLE:
        into[key] = into.get(key, 0) + counts.get(key, 0)


def _received(figures: Mapping[str, Any]) -> Counts:
    """A front's counters as the book keeps them: requests by (status class, method)."""
    counts = dict(figures)
    requests: dict[tuple[str, str], int] = {}
    for cls, method, n in figures.get("requests", ()):
        requests[(str(cls), str(method))] = int(n)
    counts["requests"] = requests
    return counts


class MetricsBook:
    """What the fronts and the master's own supervision tell about each app."""

    def __init__(self) -> None:
        self.started = time.monotonic()  # the master's start, near enough: its uptime
        self.fronts: dict[int, dict[str, Counts]] = {}  # front pid -> app -> its last counters
        # front pid -> app -> the requests it holds and its workers' requests served
        # (maitred.front.inflight)
        self.activity: dict[int, dict[str, Counts]] = {}
        self.spool: dict[int, int] = {}  # front pid -> bytes of spool files it holds
        self.history = History()  # the last minutes, for the status page's charts
        self.memory = MemoryReadings()
        self.retired: dict[str, Counts] = {}  # app -> the counters of fronts that exited
        self.connections: dict[int, dict[str, int]] = {}  # front pid -> state -> count
        self.loads: dict[int, dict[str, LoadReport]] = {}  # front pid -> app -> last report
        self.restarts: dict[tuple[str, str], int] = {}  # (app, cause) -> exits

    def front_said(self, pid: int, figures: Mapping[str, Any]) -> None:
        app = figures.get("app")
        if app is None:
            connections = figures.get("connections")
            if isinstance(connections, dict):
                self.connections[pid] = connections
            spool = figures.get("spool_bytes")
            if isinstance(spool, int):
                self.spool[pid] = spool
        elif isinstance(app, str) and "in_flight" in figures:
            self.activity.setdefault(pid, {})[app] = dict(figures)
        elif isinstance(app, str):
            self.fronts.setdefault(pid, {})[app] = _received(figures)

    def load(self, pid: int, report: LoadReport) -> None:
        self.loads.setdefault(pid, {})[report.pool] = report

    def front_exited(self, pid: int) -> None:
        for app, counts in self.fronts.pop(pid, {}).items():
            _add(self.retired.setdefault(app, {}), counts)
        self.connections.pop(pid, None)
        self.loads.pop(pid, None)
        self.activity.pop(pid, None)
        self.spool.pop(pid, None)

    def worker_exited(self, app: str, cause: str) -> None:
        key = (app, cause)
        self.restarts[key] = self.restarts.get(key, 0) + 1

    def tick(self, now: float, apps: Iterable[str]) -> float:
        """Sample the history if due (maitred.history); when the next sample is due."""
        return self.history.tick(now, self.fronts, self.loads, apps)

    def totals(self, app: str) -> Counts:
        """An app's counters summed over the fronts, living and exited."""
        total: Counts = {}
        _add(total, self.retired.get(app, {}))
        for apps in self.fronts.values():
            _add(total, apps.get(app, {}))
        return total


class MemoryReadings:
    """Workers' RSS and PSS, read at most every MEMORY_FRESH seconds per worker: a scrape and
    a status page each ask, and reading /proc/PID/smaps_rollup walks the process's mappings."""

    def __init__(self) -> None:
        self._read: dict[int, tuple[float, int, int]] = {}  # pid -> (when, rss, pss)

    def of(self, pid: int, now: float) -> tuple[int, int]:
        """(RSS, PSS) in bytes; 0 for what cannot be read."""
        known = self._read.get(pid)
        if known is not None and now - known[0] < MEMORY_FRESH:
            return known[1], known[2]
        rss, pss = memory_of(pid, "rss"), memory_of(pid, "pss")
        self._read[pid] = (now, rss, pss)
        return rss, pss

    def keep(self, pids: Iterable[int]) -> None:
        """Forget the workers not in `pids` (they exited)."""
        alive = set(pids)
        for pid in [p for p in self._read if p not in alive]:
            del self._read[pid]
