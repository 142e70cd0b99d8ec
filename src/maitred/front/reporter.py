"""What a front tells the master on its status pipe: that its loop runs (a HEARTBEAT a few
times per --front-timeout: a front that stops is killed), each pool's load about once a second
or at once when its requests begin to wait (front/load.py: the master scales the pool from
it), and the requests it holds with, for --stats-bind, each app's counters (front/inflight.py,
front/metrics.py).

Each message goes in one write of at most PIPE_BUF bytes, whole or not at all, on a pipe that
never blocks: a busy master misses a report, never stops the loop. Without a pipe (a front on
its own, in tests) it says nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Collection, Mapping

from maitred import status
from maitred.front import inflight
from maitred.front.connection import ClientConnection
from maitred.front.inflight import Activity
from maitred.front.load import REPORT_INTERVAL, SAMPLE_INTERVAL, LoadMeter
from maitred.front.metrics import FrontCounters

HEARTBEAT_INTERVAL = 1.0  # the master hears from a front about this often


class Reporter:
    """The front's end of its status pipe. `meters` are the pools' load meters by app (they
    change at run time), `connections` the front's open connections, `warn_once` logs a
    report that does not fit."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        meters: Mapping[str, LoadMeter],
        connections: Collection[ClientConnection],
        activity: Activity,
        counters: FrontCounters | None,
        warn_once: Callable[..., None],
    ) -> None:
        self.loop = loop
        self.meters = meters
        self.connections = connections
        self.activity = activity
        self.counters = counters
        self.warn_once = warn_once
        self.status_fd = -1  # the write end of the status pipe to the master
        self.last_beat = 0.0

    def beat(self, now: float) -> None:
        """Tell the master the loop runs; short sweep intervals do not make it chattier."""
        if self.status_fd < 0 or now - self.last_beat < HEARTBEAT_INTERVAL / 2:
            return
        self.last_beat = now
        with contextlib.suppress(OSError):  # a full pipe (the master is busy) or no master
            os.write(self.status_fd, status.encode(status.HEARTBEAT))

    async def report_load(self) -> None:
        """Sample each pool's load, and report it to the master once per REPORT_INTERVAL, or
        at once when its requests begin to wait (front/load.py)."""
        samples = round(REPORT_INTERVAL / SAMPLE_INTERVAL)
        while True:
            meters = list(self.meters.values())  # the apps change at run time
            for meter in meters:
                meter.tell = self._report  # a deep queue is told at once (front/load.py)
            for _ in range(samples):
                await asyncio.sleep(SAMPLE_INTERVAL)  # crossings have their timers
                now = self.loop.time()
                for meter in meters:
                    if meter.sample(now):
                        self._report(meter, now)
            for meter in meters:
                self._report(meter, now)
            self.report_metrics()

    def _report(self, meter: LoadMeter, now: float) -> None:
        """One pool's load in one write: at most PIPE_BUF, so it goes whole or not at all."""
        with contextlib.suppress(OSError):  # a full pipe (a busy master), no master
            os.write(self.status_fd, status.encode_load(meter.report(now)))

    def report_metrics(self) -> None:
        """The requests it holds now and, with --stats-bind, each app's counters so far, one
        whole message each."""
        if self.status_fd < 0:
            return
        reports = self.activity.snapshots(self.connections, self.loop.time())
        if self.counters is not None:
            reports = [*self.counters.snapshots(self.connections), *reports]
        for figures in reports:
            message = inflight.encode(figures)
            if message is None:
                self.warn_once("metrics", "metrics of %s do not fit one message", figures["app"])
                continue
            with contextlib.suppress(OSError):  # a full pipe: the next report says it all
                os.write(self.status_fd, message)
