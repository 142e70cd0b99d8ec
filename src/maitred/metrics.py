"""--stats-bind's figures: gathered in the master, written in Prometheus's formats.

Theory of operation
-------------------
Nothing is counted twice and nothing lives in files. The fronts count what they answer per app
(maitred.front.metrics) and send their cumulative counters about once a second on their status
pipes; the master already knows the rest: its workers and their states, why each exited
(maitred.exits classifies every exit), their memory (maitred.children.memory_of) and the fronts'
load reports (queue length, oldest wait, busy threads: maitred.status.LoadReport).

:class:`~maitred.book.MetricsBook` keeps, per front pid, the last counters it sent; when a
front exits (a HUP that replaces the fronts, a crash), its last counters move into a `retired`
total, so a sum over `retired` and the living fronts never goes backwards. Each front sends a
last report as it stops, and the totals are the sum of all fronts (`--fronts 2`).

The book also keeps what the status page shows beside the counters (maitred.statusdoc): the
requests each front holds now and its workers' requests served (maitred.front.inflight), the
spool bytes it holds, the history of the last minutes (maitred.history, sampled once a second
through `tick`), and the workers' memory, read at most every MEMORY_FRESH seconds per worker
however often scrapers and pages ask.

:class:`Collector` turns the book and the pools into metric families on each scrape;
prometheus_client writes them (text or OpenMetrics, as the scraper's Accept asks). Its
multiprocess mode is not used: one process holds every figure.

Owned by the master's loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector as CollectorBase

from maitred import scaling
from maitred.book import SIMPLE, MetricsBook
from maitred.children import WorkerChild
from maitred.pool import Pool
from maitred.status import BUCKETS, DURATIONS

HELP = {
    "queue": "Seconds a request waited in the front for an app thread.",
    "app": "Seconds from a thread taking a request to the app's last byte.",
    "send": "Seconds from the app's last byte to the response's end.",
    "total": "Seconds from the request head in to the response's end.",
}


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
        yield GaugeMetricFamily(
            "maitred_spool_bytes",
            "Bytes of request bodies and responses spooled to disk, held now.",
            value=sum(self.book.spool.values()),
        )

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
        now = time.monotonic()
        for app in apps:
            states = {"starting": 0, "ready": 0, "draining": 0}
            for child in pools[app].workers:
                states[worker_state(child)] += 1
                rss, pss = self.book.memory.of(child.pid, now)
                memory["rss"].add_metric([app, str(child.pid)], rss)
                memory["pss"].add_metric([app, str(child.pid)], pss)
            for state, n in states.items():
                workers.add_metric([app, state], n)
        for (app, cause), n in sorted(self.book.restarts.items()):
            restarts.add_metric([app, cause], n)
        yield from (workers, *memory.values(), restarts, *self._sizes(apps))

    def _sizes(self, apps: list[str]) -> Iterator[Metric]:
        """Each pool's size, its bounds, and its last scaling decision."""
        size = GaugeMetricFamily(
            "maitred_pool_workers", "Workers the pool wants now.", labels=["app"]
        )
        bounds = {
            edge: GaugeMetricFamily(
                f"maitred_pool_{edge}_workers",
                f"The pool's {edge}imum of workers (--{edge}-workers, or --workers).",
                labels=["app"],
            )
            for edge in ("min", "max")
        }
        decision = GaugeMetricFamily(
            "maitred_pool_last_scaling",
            "The pool's last scaling decision: 1 for its action, 0 for the others.",
            labels=["app", "action"],
        )
        pools = self.pools()
        for app in apps:
            pool = pools[app]
            limits = scaling.Bounds.of(pool.cfg)
            size.add_metric([app], pool.wanted)
            bounds["min"].add_metric([app], limits.least)
            bounds["max"].add_metric([app], limits.most)
            for action in scaling.Action:
                chosen = pool.last_decision.action is action
                decision.add_metric([app, action.name.lower()], 1 if chosen else 0)
        yield from (size, *bounds.values(), decision)

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
