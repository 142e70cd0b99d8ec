"""What a front counts of the requests it answers, for --stats-bind (maitred.metrics).

Theory of operation
-------------------
Every request a front answers passes its connection's `exchange_done`; there the front adds it
to the :class:`AppCounters` of its app: one integer for its status class and method, one bucket
and one sum for each of four durations (queued, in the app, sending, total), the 503s it
shed, the 504s it timed out, and the files it served from --static directories and their
bytes. That is one dict lookup and a few list cells per request (under 1 us), no allocation
and no label built on the steady path: labels are made once a second, when the counters are
sent (AppCounters.requests), so a front with --stats-bind pays next to nothing.

The counters are cumulative for the front's life. About once a second (with the load reports,
maitred.front.load) the front writes each app's counters, whole, to the master on its status
pipe (maitred.status.encode_metrics); the master keeps the last of each front and adds in the
fronts that exited (maitred.metrics). Whole snapshots rather than deltas: a lost or dropped
message (a full pipe) costs freshness, never a count.

Methods outside the common few count as OTHER, so a client cannot grow the label set.

Owned by the event loop thread.
"""

from __future__ import annotations

import functools
import time
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from maitred.front.exchange import STATIC
from maitred.front.states import HEAD_SENT, WAITING, ConnState
from maitred.status import BUCKETS, DURATIONS

if TYPE_CHECKING:
    from maitred.front.cache import ResponseCache
    from maitred.front.connection import ClientConnection
    from maitred.front.exchange import Exchange

QUEUE, APP, SEND, TOTAL = range(len(DURATIONS))
METHODS = frozenset((b"GET", b"HEAD", b"POST", b"PUT", b"PATCH", b"DELETE", b"OPTIONS"))
OTHER = b"OTHER"
SHED = 503  # the front turned it away: the queue was full or it waited too long
TIMED_OUT = 504  # the app ran past --timeout
# Most durations (a queue that does not wait, a quick send) fall in the first bucket: one
# comparison finds it, the search is for the others.
FASTEST = BUCKETS[0]
_bucket = functools.partial(bisect_left, BUCKETS)


# What a client connection is doing, as an operator asks: nothing yet (new), waiting for its
# next request (idle), sending one (reading), waiting for its answer (waiting: queued or in the
# app), being answered (writing), or on its way out (closing).
PHASES = ("new", "idle", "reading", "waiting", "writing", "closing")
_BY_STATE = {ConnState.NEW: "new", ConnState.IDLE: "idle", ConnState.CLOSING: "closing"}
_BY_STATE[ConnState.LINGERING] = "closing"


def phase_of(conn: ClientConnection) -> str | None:
    """One of PHASES, or None for a closed connection."""
    state = conn.state
    if state is ConnState.BUSY:
        active = conn.active
        if active is not None and active.state in HEAD_SENT:
            return "writing"
        return "reading" if conn.reading is not None or active is None else "waiting"
    if state in WAITING and conn.parser.in_head:  # a request head has begun
        return "reading"
    return _BY_STATE.get(state)


# The label of each status class, by status // 100: a row of counts per method has one cell
# for each; a status outside 100..599 counts in cell 0.
CLASSES = ("other", "1xx", "2xx", "3xx", "4xx", "5xx", "other", "other", "other", "other")


class AppCounters:
    """One app's requests as one front answered them, since the front started."""

    __slots__ = (
        "buckets",
        "by_method",
        "cache",
        "shed",
        "static_bytes",
        "static_files",
        "sums",
        "timed_out",
    )

    def __init__(self) -> None:
        # method -> the count of each status class (CLASSES); a method outside METHODS
        # counts as OTHER. Labelled when sent (requests): a list cell costs less per request
        # than a dict keyed by label.
        self.by_method: dict[bytes, list[int]] = {}
        # Per duration (DURATIONS, in order): the count in each bucket (the last +Inf), and
        # the sum. Plain lists, not objects: this runs for every request.
        self.buckets = [[0] * (len(BUCKETS) + 1) for _ in DURATIONS]
        self.sums = [0.0] * len(DURATIONS)
        self.shed = 0
        self.timed_out = 0
        self.static_files = 0
        self.static_bytes = 0  # of the files' bodies sent
        # What the response cache made of requests (maitred.front.cachefetch.OUTCOMES).
        self.cache: dict[str, int] = {}

    def count(self, exchange: Exchange, now: float) -> None:
        status = exchange.status
        try:  # the steady path: a method seen before, a three-digit status
            self.by_method[exchange.head.method][status // 100] += 1
        except (KeyError, IndexError):
            self._first(status, exchange.head.method)
        if status >= SHED:
            self.shed += status == SHED
            self.timed_out += status == TIMED_OUT
        if exchange.cache:  # "" when the app has no response cache
            cache = self.cache
            cache[exchange.cache] = cache.get(exchange.cache, 0) + 1
        if exchange.source == STATIC and status < 400:  # a file it sent (not a 404, a 403)
            self.static_files += 1
            self.static_bytes += exchange.sent
        queue, app, send, total = self.buckets
        sums = self.sums
        took = now - exchange.started
        total[_bucket(took) if took > FASTEST else 0] += 1
        sums[TOTAL] += took
        dispatched = exchange.dispatched
        if not dispatched:  # it never reached a thread (static, shed)
            return
        app_done = exchange.app_done
        took = dispatched - exchange.complete
        queue[_bucket(took) if took > FASTEST else 0] += 1
        sums[QUEUE] += took
        if app_done:
            took = app_done - dispatched
            app[_bucket(took) if took > FASTEST else 0] += 1
            sums[APP] += took
            took = now - app_done
            if took < 0.0:  # clocks read apart; never a negative time
                took = 0.0
            send[_bucket(took) if took > FASTEST else 0] += 1
            sums[SEND] += took

    def _first(self, status: int, method: bytes) -> None:
        """A method not counted yet, or a status past 999. A method outside the common few
        counts as OTHER, so that a client's made-up methods cannot grow the table."""
        if method not in METHODS:
            method = OTHER
        row = self.by_method.get(method)
        if row is None:
            row = self.by_method[method] = [0] * len(CLASSES)
        row[status // 100 if 100 <= status < 600 else 0] += 1

    @property
    def requests(self) -> dict[tuple[str, str], int]:
        """The counts by (status class, method), as the master is sent them: labelled once
        a second, not for each request."""
        labelled: dict[tuple[str, str], int] = {}
        for method, row in self.by_method.items():
            name = method.decode("latin-1")
            for cls, n in enumerate(row):
                if n:
                    key = (CLASSES[cls], name)
                    labelled[key] = labelled.get(key, 0) + n
        return labelled

    def snapshot(self, app: str) -> dict[str, Any]:
        """What the master is sent: plain JSON types."""
        return {
            "app": app,
            "at": time.monotonic(),  # when these counts held, for the master's rates
            "requests": [[cls, method, n] for (cls, method), n in self.requests.items()],
            "histograms": {
                name: [self.buckets[i], self.sums[i]] for i, name in enumerate(DURATIONS)
            },
            "shed": self.shed,
            "timed_out": self.timed_out,
            "static_files": self.static_files,
            "static_bytes": self.static_bytes,
            **{f"cache_{outcome}": n for outcome, n in self.cache.items()},
        }


class FrontCounters:
    """The counters of every app a front serves, found by the label its exchanges carry."""

    def __init__(
        self, apps: Iterable[tuple[str, str]], caches: Mapping[str, ResponseCache] | None = None
    ) -> None:
        """`apps`: (pool name, label) of each app; the only app's exchanges carry no label.
        `caches`: the response caches of the apps that have one, by pool name."""
        self.caches = caches or {}
        pairs = list(apps)
        self.by_name = {name: AppCounters() for name, _ in pairs}
        self._by_label = {label: self.by_name[name] for name, label in pairs}
        if len(pairs) == 1:
            self._by_label[""] = self.by_name[pairs[0][0]]

    def add(self, name: str, label: str) -> None:
        """An app the front serves from now on (front/apptable.py); counted from zero."""
        if name not in self.by_name:
            self.by_name[name] = self._by_label[label] = AppCounters()

    def count(self, exchange: Exchange, now: float) -> None:
        counters = self._by_label.get(exchange.app)
        if counters is not None:  # else no app took it (an unrouted host): not an app's
            counters.count(exchange, now)

    def snapshots(self, connections: Iterable[ClientConnection]) -> list[dict[str, Any]]:
        """One message's worth per app, then the front's connections by phase."""
        states = dict.fromkeys(PHASES, 0)
        for conn in connections:
            phase = phase_of(conn)
            if phase is not None:
                states[phase] += 1
        apps = [counters.snapshot(name) for name, counters in self.by_name.items()]
        for figures in apps:
            cache = self.caches.get(figures["app"])
            if cache is not None:
                figures.update(cache.figures())
        return [*apps, {"app": None, "connections": states}]
