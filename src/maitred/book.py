"""What the master keeps of the fronts' counters and its own supervision, for --stats-bind.

:class:`MetricsBook` keeps, per front pid, the last counters it sent; when a front exits (a
HUP that replaces the fronts, a crash), its last counters move into a `retired` total, so a sum
over `retired` and the living fronts never goes backwards (maitred.metrics says more).

Apart from maitred.metrics so that the master keeps its book without importing
prometheus_client, which only a master that serves --stats-bind needs.

Owned by the master's loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from maitred.status import LoadReport

Counts = dict[str, Any]  # one app's counters, as maitred.front.metrics sends them

# The plain counters of an app, each with its metric's name and help.
SIMPLE = {
    "shed": ("maitred_requests_shed", "Requests answered 503 (queue full, queue timeout)."),
    "timed_out": ("maitred_requests_timed_out", "Requests answered 504 (--timeout)."),
    "static_files": ("maitred_static_files", "Files served from --static directories."),
    "static_bytes": ("maitred_static_bytes", "Bytes of the bodies of those files sent."),
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
