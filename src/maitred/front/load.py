"""What a front tells the master about each pool's load: the figures its scaling decides on.

Theory of operation
-------------------
The dispatcher of a pool knows, at any instant, how many requests wait in its queue and since
when, and how many of its workers' threads run a request. A :class:`LoadMeter` samples that
every SAMPLE_INTERVAL (100 ms: ten samples per report, one timer for the whole front, nothing
on the request path) and, every REPORT_INTERVAL (about once per tick of the master), sums the
samples into one maitred.status.LoadReport: the mean and the peak of busy threads, the longest
wait of a queued request seen at any sample, the queue's length and the threads at the end,
and each worker's requests in flight (the master retires an idle one). Workers that drain
count neither their threads nor their requests: they are on their way out.

Owned by the event loop thread.
"""

from __future__ import annotations

from maitred.front.dispatcher import Dispatcher
from maitred.status import LoadReport

SAMPLE_INTERVAL = 0.1  # seconds between two samples of the load
REPORT_INTERVAL = 1.0  # seconds a report covers: the master decides once a second


class LoadMeter:
    """The samples of one pool's load since its last report."""

    def __init__(self, pool: str, dispatcher: Dispatcher, now: float) -> None:
        self.pool = pool
        self.dispatcher = dispatcher
        self._since = now
        self._samples = 0
        self._busy = 0  # busy threads, summed over the samples
        self._most_busy = 0
        self._oldest_wait = 0.0

    def sample(self, now: float) -> None:
        dispatcher = self.dispatcher
        busy = sum(len(w.exchanges) for w in dispatcher.workers if not w.draining)
        self._samples += 1
        self._busy += busy
        self._most_busy = max(self._most_busy, busy)
        if dispatcher.queue:
            self._oldest_wait = max(self._oldest_wait, now - dispatcher.queue[0].complete)

    def report(self, now: float) -> LoadReport:
        """The report of the samples so far; the next one starts from here."""
        dispatcher = self.dispatcher
        serving = [w for w in dispatcher.workers if not w.draining and w.threads]
        report = LoadReport(
            self.pool,
            queued=len(dispatcher.queue),
            oldest_wait=self._oldest_wait,
            busy=self._busy / self._samples if self._samples else 0.0,
            most_busy=self._most_busy,
            threads=sum(w.threads for w in serving),
            window=now - self._since,
            in_flight=tuple((w.pid, len(w.exchanges)) for w in serving),
        )
        self._since, self._samples, self._busy = now, 0, 0
        self._most_busy, self._oldest_wait = 0, 0.0
        return report
