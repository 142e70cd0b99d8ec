"""The requests a front holds right now, per app, for the status page and `maitred ctl`.

Theory of operation
-------------------
Nothing is recorded per request for this. The front already holds every request it serves: a
connection's `active` exchange is the one being served (queued in its app's dispatcher, run by
a worker thread, or being sent), and its times say how long each phase took. So about once a
second, with its load reports (and its counters with --stats-bind: maitred.front.metrics),
:meth:`Activity.snapshots` walks the connections once and sends, per app:

* the IN_FLIGHT_LIMIT oldest requests (the ones worth looking at: a stuck one is old), each
  with its age, its phase (queued, in app, sending), method, path (cut to PATH_LIMIT), the
  worker pid and link request number that run it, and its request id;
* each linked worker's requests answered (one integer per worker, counted when its thread
  frees: maitred.front.dispatcher);
* and once for the front, the bytes of the request bodies spooled to disk and of the response
  spools it holds (a body being received is not any app's yet).

This is sent with or without --stats-bind, since `maitred ctl top` (the control socket is
always on) shows it. Why at report time and not on demand: the front has no channel from the
master but signals, and the master's loop must never wait on a front; a one-second-old view
costs one walk over the connections per second and nothing per request. Why bounded: a message
goes whole in one atomic pipe write (maitred.status.PIPE_BUF); if the oldest do not fit, fewer
are sent.

Ages are measured on the front's loop clock at `at`, a time.monotonic() reading: the master
(the same machine's monotonic clock) ages them by the time the message took.

Owned by the event loop thread.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from maitred import status
from maitred.front.exchange import APP
from maitred.front.states import DONE

if TYPE_CHECKING:
    from maitred.front.connection import ClientConnection
    from maitred.front.dispatcher import Dispatcher
    from maitred.front.exchange import Exchange

IN_FLIGHT_LIMIT = 20  # oldest requests sent per app: a screenful, and well under PIPE_BUF
PATH_LIMIT = 120  # characters of a path sent: enough to know the route
QUEUED, IN_APP, SENDING = "queued", "in app", "sending"


def phase(exchange: Exchange) -> str:
    """Where a request's time goes now."""
    if not exchange.dispatched:
        return QUEUED
    return SENDING if exchange.app_done else IN_APP


def spooled_bytes(exchange: Exchange) -> int:
    """Bytes of this request's body and response held in spool files."""
    held = 0
    body = exchange.body
    if body is not None and body.size > body.buffer_size:  # past the buffer: in a file
        held += body.size
    if exchange.spool is not None:
        held += exchange.spool.written
    return held


def describe(exchange: Exchange, now: float) -> list[Any]:
    """One request as the message carries it: a list, to keep the message small."""
    worker = exchange.worker
    return [
        round(now - exchange.started, 3),
        phase(exchange),
        exchange.head.method.decode("latin-1"),
        exchange.head.target.decode("latin-1")[:PATH_LIMIT],
        worker.pid if worker is not None else 0,
        exchange.rid,
        exchange.request_id,
    ]


class Activity:
    """What a front reports of each app's requests in flight; see the module's docstring."""

    def __init__(
        self, apps: Iterable[tuple[str, str]], dispatchers: Mapping[str, Dispatcher]
    ) -> None:
        """`apps`: (pool name, label) of each app; the only app's exchanges carry no label."""
        pairs = list(apps)
        self.names = {label: name for name, label in pairs}
        if len(pairs) == 1:
            self.names[""] = pairs[0][0]
        self.dispatchers = dispatchers

    def add(self, name: str, label: str) -> None:
        """An app the front serves from now on (front/apptable.py)."""
        self.names[label] = name

    def snapshots(
        self, connections: Iterable[ClientConnection], now: float
    ) -> list[dict[str, Any]]:
        """One message's figures per app, then the front's spooled bytes (`now`: the loop's
        clock)."""
        held: dict[str, list[Exchange]] = {name: [] for name in self.dispatchers}
        spool = 0
        for conn in connections:
            exchange = conn.active
            if exchange is not None and exchange.source == APP and exchange.state is not DONE:
                name = self.names.get(exchange.app)
                # None for an app that left (its dispatcher with it) while this one ran.
                requests = held.get(name) if name is not None else None
                if requests is not None:
                    requests.append(exchange)
            if conn.reading is not None or exchange is not None:
                spool += sum(map(spooled_bytes, _held(conn)))
        at = time.monotonic()
        apps = [
            {
                "app": name,
                "at": at,
                "in_flight": [
                    describe(e, now)
                    for e in heapq.nsmallest(IN_FLIGHT_LIMIT, held[name], key=_started)
                ],
                "served": [[w.pid, w.served] for w in dispatcher.workers],
            }
            for name, dispatcher in self.dispatchers.items()
        ]
        return [*apps, {"app": None, "spool_bytes": spool}]


def _held(conn: ClientConnection) -> Iterable[Exchange]:
    """The exchanges of a connection that may hold spool files."""
    if conn.reading is not None:
        yield conn.reading
    if conn.active is not None:
        yield conn.active
    yield from conn.pipeline


def _started(exchange: Exchange) -> float:
    return exchange.started


def encode(figures: dict[str, Any]) -> bytes | None:
    """A METRICS message; one of an app's activity with as many of its oldest requests as
    fit one atomic write. None when it does not fit even so (a worker list past the pipe's
    size)."""
    if "in_flight" not in figures:
        return status.encode_metrics(figures)
    in_flight = figures["in_flight"]
    while True:
        message = status.encode_metrics({**figures, "in_flight": in_flight})
        if message is not None or not in_flight:
            return message
        in_flight = in_flight[: len(in_flight) // 2]
