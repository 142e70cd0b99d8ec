"""The last minutes of each app, one sample a second, for the status page's charts.

Theory of operation
-------------------
The master keeps, per app, a ring of HISTORY_LENGTH samples (five minutes at one a second),
so a page opened now shows what happened before it was opened. A sample holds the app's
requests per second, its latency percentiles (p50, p90, p99 of the total time: head in to
response out), its queue length and its busy and total slots (threads).

Rates come from the fronts' cumulative counters (maitred.front.metrics), which carry `at`,
the monotonic time they held at: for each front, the difference between its last two reports
over the time between them is its rate, and the difference of its histogram's buckets gives
the latencies of the requests of that interval. Measured on the front's own clock, a rate
does not jump when a report arrives a little before or after the master's sample; a front
whose last report is older than FRESH seconds adds nothing (it stopped, or stalls). Queue and
slots come from the fronts' load reports (maitred.status.LoadReport).

Percentiles are estimated from the buckets as Prometheus's histogram_quantile does: linear
within the bucket the rank falls in; past the last finite bound, that bound. No requests in
a second: no latency (None, a gap in the chart), not zero.

Sampling is driven by the master's loop (:meth:`History.tick`, through maitred.statsserver),
is O(fronts x apps) per second and reads nothing from disk.

Owned by the master's loop.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from maitred.status import BUCKETS, LoadReport

SAMPLE_INTERVAL = 1.0  # seconds between two samples
HISTORY_LENGTH = 300  # samples kept per app: five minutes
FRESH = 3.0  # seconds after which a front's last interval no longer counts
QUANTILES = (0.5, 0.9, 0.99)
# The columns of an app's history, as /status.json names them (maitred.statusdoc).
COLUMNS = (
    "time",
    "requests_per_second",
    "latency_p50_seconds",
    "latency_p90_seconds",
    "latency_p99_seconds",
    "queue_length",
    "busy_slots",
    "slots",
)


@dataclass
class Interval:
    """One front's latest report interval of one app."""

    at: float  # monotonic time of the report that ended it
    count: int  # requests answered in it
    seconds: float
    buckets: list[int]  # of the total time, per bucket (not cumulative)


def quantile(q: float, buckets: list[int]) -> float | None:
    """The q-quantile of durations counted per bucket (bounds: BUCKETS, then +Inf)."""
    total = sum(buckets)
    if not total:
        return None
    rank = q * total
    running = 0
    for i, n in enumerate(buckets):
        if running + n >= rank and n:
            if i >= len(BUCKETS):
                return BUCKETS[-1]
            lower = BUCKETS[i - 1] if i else 0.0
            return lower + (BUCKETS[i] - lower) * (rank - running) / n
        running += n
    return BUCKETS[-1]


def _total(counts: Mapping[str, Any]) -> tuple[float, list[int]] | None:
    """(at, buckets of the total time) of a front's counters, or None without them."""
    at = counts.get("at")
    histogram = counts.get("histograms", {}).get("total")
    if not isinstance(at, (int, float)) or not histogram:
        return None
    return float(at), list(histogram[0])


class History:
    """The ring of samples of every app; see the module's docstring."""

    def __init__(self) -> None:
        self.samples: dict[str, deque[tuple[Any, ...]]] = {}
        self._last: dict[tuple[int, str], tuple[float, list[int]]] = {}  # (front, app) -> report
        self._intervals: dict[tuple[int, str], Interval] = {}
        self._next = 0.0

    def tick(
        self,
        now: float,
        fronts: Mapping[int, Mapping[str, Mapping[str, Any]]],
        loads: Mapping[int, Mapping[str, LoadReport]],
        apps: Iterable[str],
    ) -> float:
        """Take a sample if one is due; the monotonic time the next one is."""
        if now >= self._next:
            # On the beat while the loop keeps up; from now when it fell behind.
            behind = now - self._next >= SAMPLE_INTERVAL
            self._next = (now if behind else self._next) + SAMPLE_INTERVAL
            self._follow(fronts)
            wall = time.time()  # for the chart's axis only
            for app in apps:
                ring = self.samples.setdefault(app, deque(maxlen=HISTORY_LENGTH))
                ring.append(self._sample(app, now, wall, loads))
        return self._next

    def series(self, app: str) -> dict[str, list[Any]]:
        """An app's samples, oldest first, as one list per column (COLUMNS)."""
        rows = self.samples.get(app, ())
        return {name: [row[i] for row in rows] for i, name in enumerate(COLUMNS)}

    def _follow(self, fronts: Mapping[int, Mapping[str, Mapping[str, Any]]]) -> None:
        """Turn each front's new report into its latest interval."""
        seen = set()
        for pid, apps in fronts.items():
            for app, counts in apps.items():
                key = (pid, app)
                seen.add(key)
                report = _total(counts)
                last = self._last.get(key)
                if report is None or (last is not None and report[0] <= last[0]):
                    continue
                self._last[key] = report
                if last is not None:
                    at, buckets = report
                    delta = [max(0, a - b) for a, b in zip(buckets, last[1], strict=False)]
                    self._intervals[key] = Interval(at, sum(delta), at - last[0], delta)
        for key in set(self._last) - seen:  # fronts that exited
            self._last.pop(key, None)
            self._intervals.pop(key, None)

    def _sample(
        self, app: str, now: float, wall: float, loads: Mapping[int, Mapping[str, LoadReport]]
    ) -> tuple[Any, ...]:
        fresh = [i for (_, a), i in self._intervals.items() if a == app and now - i.at < FRESH]
        rate = sum(i.count / i.seconds for i in fresh if i.seconds > 0)
        buckets = [0] * (len(BUCKETS) + 1)
        for interval in fresh:
            buckets = [a + b for a, b in zip(buckets, interval.buckets, strict=False)]
        latencies = [quantile(q, buckets) for q in QUANTILES]
        reports = [r[app] for r in loads.values() if app in r]
        return (
            round(wall, 3),
            round(rate, 2),
            *(None if x is None else round(x, 6) for x in latencies),
            sum(r.queued for r in reports),
            round(sum(r.busy for r in reports), 2),
            sum(r.threads for r in reports),
        )
