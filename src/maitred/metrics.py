"""--stats-bind's figures: gathered in the master, written in Prometheus's formats.

Theory of operation
-------------------
Nothing is counted twice and nothing lives in files. The fronts count what they answer per app
(maitred.front.metrics) and send their cumulative counters about once a second on their status
pipes; the master already knows the rest: its workers and their states, why each exited
(maitred.exits classifies every exit), their memory (maitred.children.memory_of) and the fronts'
load reports (queue length, oldest wait, busy threads: maitred.status.LoadReport).

:class:`MetricsBook` keeps, per front pid, the last counters it sent; when a front exits (a
HUP that replaces the fronts, a crash), its last counters move into a `retired` total, so a sum
over `retired` and the living fronts never goes backwards. Each front sends a last report as it
stops, and the totals are the sum of all fronts (`--fronts 2`).

:class:`Collector` turns the book and the pools into metric families on each scrape;
prometheus_client writes them (text or OpenMetrics, as the scraper's Accept asks). Its
multiprocess mode is not used: one process holds every figure.

Owned by the master's loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector as CollectorBase

from maitred.children import WorkerChild, memory_of
from maitred.front.metrics import BUCKETS, DURATIONS
from maitred.pool import Pool
from maitred.status import LoadReport

Counts = dict[str, Any]  # one app's counters, as maitred.front.metrics sends them

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
    "cache_bypass": (
        "maitred_cache_bypass",
        "Requests the cache sent to the app as they were (method, cookie, no-store).",
    ),
    "cache_evictions": (
        "maitred_cache_evictions",
        "Stored responses dropped to make room (--cache-size).",
    ),
}

HELP = {
    "queue": "Seconds a request waited in the front for an app thread.",
    "app": "Seconds from a thread taking a request to the app's last byte.",
    "send": "Seconds from the app's last byte to the response's end.",
    "total": "Seconds from the request head in to the response's end.",
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
        self.fronts: dict[int, dict[str, Counts]] = {}  # front pid -> app -> its last counters
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
        elif isinstance(app, str):
            self.fronts.setdefault(pid, {})[app] = _received(figures)

    def load(self, pid: int, report: LoadReport) -> None:
        self.loads.setdefault(pid, {})[report.pool] = report

    def front_exited(self, pid: int) -> None:
        for app, counts in self.fronts.pop(pid, {}).items():
            _add(self.retired.setdefault(app, {}), counts)
        self.connections.pop(pid, None)
        self.loads.pop(pid, None)

    def worker_exited(self, app: str, cause: str) -> None:
        key = (app, cause)
        self.restarts[key] = self.restarts.get(key, 0) + 1

    def totals(self, app: str) -> Counts:
        """An app's counters summed over the fronts, living and exited."""
        total: Counts = {}
        _add(total, self.retired.get(app, {}))
        for apps in self.fronts.values():
            _add(total, apps.get(app, {}))
        return total


def worker_state(child: WorkerChild) -> str:
    if child.leaving is not None:
        return "draining"
    return "ready" if child.ready else "starting"


class Collector(CollectorBase):
    """The metric families of one scrape, from the book and the pools."""

    def __init__(self, book: MetricsBook, pools: Callable[[], Mapping[str, Pool]]) -> None:
        self.book = book
        self.pools = pools

    def collect(self) -> Iterator[Metric]:
        apps = list(self.pools())
        yield from self._requests(apps)
        yield from self._pools(apps)
        yield from self._load(apps)
        connections = GaugeMetricFamily(
            "maitred_connections", "Client connections open, by state.", labels=["state"]
        )
        states: dict[str, int] = {}
        for per_front in self.book.connections.values():
            for state, n in per_front.items():
                states[state] = states.get(state, 0) + n
        for state, n in sorted(states.items()):
            connections.add_metric([state], n)
        yield connections

    def _requests(self, apps: list[str]) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "maitred_requests",
            "Requests answered, by status class and method.",
            labels=["app", "status_class", "method"],
        )
        simple = {
            key: CounterMetricFamily(name, text, labels=["app"])
            for key, (name, text) in SIMPLE.items()
        }
        histograms = {
            name: HistogramMetricFamily(
                f"maitred_request_{name}_seconds", HELP[name], labels=["app"]
            )
            for name in DURATIONS
        }
        stored = GaugeMetricFamily(
            "maitred_cache_stored_bytes",
            "Bytes the response cache holds, over the living fronts.",
            labels=["app"],
        )
        for app in apps:
            stored.add_metric([app], self._stored_bytes(app))
            total = self.book.totals(app)
            for (cls, method), n in sorted(total.get("requests", {}).items()):
                requests.add_metric([app, cls, method], n)
            for key, counter in simple.items():
                counter.add_metric([app], total.get(key, 0))
            for name, histogram in histograms.items():
                counts, seconds = total.get("histograms", {}).get(name, [[0], 0.0])
                histogram.add_metric([app], _cumulative(counts), seconds)
        yield from (requests, *simple.values(), *histograms.values(), stored)

    def _stored_bytes(self, app: str) -> int:
        """A gauge: the living fronts' figures only (an exited front's memory is gone)."""
        return sum(
            int(apps.get(app, {}).get("cache_stored_bytes", 0))
            for apps in self.book.fronts.values()
        )

    def _pools(self, apps: list[str]) -> Iterator[Metric]:
        workers = GaugeMetricFamily(
            "maitred_workers", "Worker processes, by state.", labels=["app", "state"]
        )
        memory = {
            kind: GaugeMetricFamily(
                f"maitred_worker_{kind}_bytes",
                f"{kind.upper()} of each worker process.",
                labels=["app", "pid"],
            )
            for kind in ("rss", "pss")
        }
        restarts = CounterMetricFamily(
            "maitred_worker_exits", "Worker exits, by cause.", labels=["app", "cause"]
        )
        pools = self.pools()
        for app in apps:
            states = {"starting": 0, "ready": 0, "draining": 0}
            for child in pools[app].workers:
                states[worker_state(child)] += 1
                for kind, family in memory.items():
                    family.add_metric([app, str(child.pid)], memory_of(child.pid, kind))
            for state, n in states.items():
                workers.add_metric([app, state], n)
        for (app, cause), n in sorted(self.book.restarts.items()):
            restarts.add_metric([app, cause], n)
        yield from (workers, *memory.values(), restarts)

    def _load(self, apps: list[str]) -> Iterator[Metric]:
        queued = GaugeMetricFamily(
            "maitred_queue_length", "Requests waiting for an app thread.", labels=["app"]
        )
        oldest = GaugeMetricFamily(
            "maitred_queue_oldest_seconds",
            "Longest wait of a queued request over the last second.",
            labels=["app"],
        )
        busy = GaugeMetricFamily(
            "maitred_threads_busy",
            "App threads running a request (mean, last second).",
            labels=["app"],
        )
        slots = GaugeMetricFamily("maitred_threads", "App threads taking requests.", labels=["app"])
        for app in apps:
            reports = [r[app] for r in self.book.loads.values() if app in r]
            queued.add_metric([app], sum(r.queued for r in reports))
            oldest.add_metric([app], max((r.oldest_wait for r in reports), default=0.0))
            busy.add_metric([app], sum(r.busy for r in reports))
            slots.add_metric([app], sum(r.threads for r in reports))
        yield from (queued, oldest, busy, slots)


def _cumulative(counts: list[int]) -> list[tuple[str, float]]:
    """Prometheus's buckets (cumulative, by upper bound) from per-bucket counts."""
    bounds = [*(repr(b) for b in BUCKETS), "+Inf"]
    counts = counts if len(counts) == len(bounds) else [0] * len(bounds)
    buckets, running = [], 0
    for bound, n in zip(bounds, counts, strict=True):
        running += n
        buckets.append((bound, float(running)))
    return buckets
