"""What the master answers on --stats-bind: its figures, its liveness and its readiness.

The stats server (maitred.statsserver) speaks HTTP; the book (maitred.metrics) holds the
figures; this joins them to the master's own state:

* /metrics: the book and the pools, written by prometheus_client in the format the scraper's
  Accept header asks for (OpenMetrics or the classic text format);
* /livez: 200 while the master runs its loop (it answers) and every serving front beat within
  the watchdog's seconds: the same test as systemd's watchdog (maitred.sdnotify);
* /readyz: the answer of maitred.readiness, as the fronts' --health-path gives it: STARTING
  until every app has imported, DRAINING from a TERM (with --shutdown-delay or not) and while
  `maitred ctl drain` holds it.

Owned by the master's loop.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from maitred import readiness, sdnotify
from maitred.metrics import Collector
from maitred.statsserver import Answers, StatsServer

if TYPE_CHECKING:
    from maitred.arbiter import Arbiter


def start(arbiter: Arbiter, address: str, fresh: float) -> StatsServer:
    """Serve the arbiter's figures at `address` (OSError when it cannot listen); a front
    silent for more than `fresh` seconds is not alive."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector(arbiter.book, lambda: arbiter.pools))

    def metrics(accept: str) -> tuple[str, bytes]:
        encoder, content_type = choose_encoder(accept)
        return content_type, encoder(registry)

    return StatsServer.bind(
        address,
        Answers(metrics, lambda: alive(arbiter, fresh), lambda: readiness.answer(ready(arbiter))),
    )


def alive(arbiter: Arbiter, fresh: float) -> bool:
    """The fronts beat (while stopping they leave on purpose: the loop answering counts)."""
    if arbiter.stopping or arbiter.fronts is None:
        return True
    beats = [front.last_seen for front in arbiter.fronts.fronts()]
    return bool(beats) and sdnotify.fronts_answer(beats, time.monotonic(), fresh)


def ready(arbiter: Arbiter) -> readiness.Readiness:
    if arbiter.stopping or arbiter.delay.running or arbiter.hold:
        return readiness.Readiness.DRAINING
    if arbiter.pools and all(pool.app_imported for pool in arbiter.pools.values()):
        return readiness.Readiness.READY
    return readiness.Readiness.STARTING
