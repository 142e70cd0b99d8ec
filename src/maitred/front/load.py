"""What a front tells the master about each pool's load: the figures its scaling decides on.

Theory of operation
-------------------
The dispatcher of a pool knows, at any instant, how many requests wait in its queue and since
when, and how many of its workers' threads run a request. A :class:`LoadMeter` samples that
every SAMPLE_INTERVAL (50 ms: twenty samples per report, one timer for the whole front, nothing
on the request path) and, every REPORT_INTERVAL (about once per tick of the master), sums the
samples into one maitred.status.LoadReport: the mean and the peak of busy threads, the longest
wait of a queued request seen at any sample, the queue's length and the threads at the end,
and each worker's requests in flight (the master retires an idle one). Workers that drain
count neither their threads nor their requests: they are on their way out.

A burst cannot wait for the end of the window. When the queue holds a worker's threads of
requests (maitred.scaling.queue_lacks) and at least twice what the last report said, the
dispatcher's call as the request joins the queue (`queued`) has a report go out at the end
of the loop's turn, with the requests that came in the same turn and a sample of the
moment: a burst is told as it arrives, and again as it deepens, a few times a window at
most. When a queued request has waited maitred.scaling.QUEUE_WAIT (the wait the pool grows
on) while the last report said none had, the meter asks for a report at once (`look`
answers True), and the master decides on it at once. Nor does it wait for the next sample:
one timer of the loop is set for the very moment the request at the head of the queue
reaches that wait (`crossing`), when a request joins the queue or a report was sent; if
that request left the queue before, the timer is set again for the new head, so it wakes
once per head at most and never polls. An empty queue costs nothing more than the
samples. Only the news is told early: while the wait lasts, reports come once per window
again, so a pool under pressure never floods its master.

Owned by the event loop thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from maitred.front.dispatcher import Dispatcher
from maitred.scaling import QUEUE_WAIT, queue_lacks
from maitred.status import LoadReport

SAMPLE_INTERVAL = QUEUE_WAIT  # seconds between two samples; at most QUEUE_WAIT (above)
# The shortest wait for a crossing not reached yet: the event loop's clock may have a
# millisecond's grain, and a timer may fire that much early.
LEAST_PAUSE = 0.001
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
        self._reported_wait = 0.0  # the oldest wait in the last report
        self._reported_depth = 0  # the queue's length in the last report
        self._telling = False  # a report on the queue's depth is on its way (`queued`)
        self._timer: asyncio.TimerHandle | None = None  # for the head's crossing
        # How a report goes out at once (front/reporter.py sets it); None: at the next sample.
        self.tell: Callable[[LoadMeter, float], None] | None = None
        dispatcher.on_queue = self.queued

    def sample(self, now: float) -> bool:
        """Take one sample; True as `look` says."""
        busy = sum(len(w.exchanges) for w in self.dispatcher.workers if not w.draining)
        self._samples += 1
        self._busy += busy
        self._most_busy = max(self._most_busy, busy)
        return self.look(now)

    def look(self, now: float) -> bool:
        """Note how long the head of the queue has waited; True when queued requests began
        to wait long enough for the pool to grow since the last report said none did:
        report now."""
        queue = self.dispatcher.queue
        if queue:
            self._oldest_wait = max(self._oldest_wait, now - queue[0].complete)
        return self._oldest_wait >= QUEUE_WAIT > self._reported_wait or self._deepens()

    def _deepens(self) -> bool:
        """Whether the queue holds a worker's threads of requests (scaling.queue_lacks), and
        at least twice what the last report said: a burst that keeps arriving is told as it
        deepens, a few reports a window at most however deep it gets."""
        depth = len(self.dispatcher.queue)
        threads = max((w.threads for w in self.dispatcher.workers if not w.draining), default=0)
        return queue_lacks(0.0, depth, threads) and depth >= 2 * self._reported_depth

    def queued(self) -> None:
        """A request joined the queue (the dispatcher calls this; every thread is busy): when
        that makes the queue deep enough to be news, report it at once, at the end of the
        loop's turn (the requests that arrived with it are queued by then)."""
        if self.tell is not None and not self._telling and self._deepens():
            self._telling = True
            self.dispatcher.loop.call_soon(self._tell_now)
        if self._timer is None:
            self._arm(self.dispatcher.loop.time())

    def _arm(self, now: float) -> None:
        """Set the timer for the head's crossing, if that is news and some `tell` hears it."""
        when = self.crossing()
        if when is not None and self.tell is not None:
            at = max(when, now + LEAST_PAUSE)
            self._timer = self.dispatcher.loop.call_at(at, self._at_crossing)

    def _at_crossing(self) -> None:
        self._timer = None
        now = self.dispatcher.loop.time()
        if self.tell is not None and self.look(now):
            self.tell(self, now)
        else:
            self._arm(now)  # its head left before (or the clock's grain): the new head's

    def _tell_now(self) -> None:
        self._telling = False
        now = self.dispatcher.loop.time()
        # A sample of the moment: the window's samples may all predate the burst, and the
        # pool counts the busy threads with the queue to size its step.
        if self.tell is not None and self.sample(now):
            self.tell(self, now)

    def crossing(self) -> float | None:
        """When the request at the head of the queue will have waited QUEUE_WAIT, if that is
        news (the last report said no request waited so long); None otherwise."""
        queue = self.dispatcher.queue
        if not queue or self._reported_wait >= QUEUE_WAIT:
            return None
        return queue[0].complete + QUEUE_WAIT

    def report(self, now: float) -> LoadReport:
        """The report of the samples so far; the next one starts from here."""
        if not self._samples:
            # A crossing told just after a report, before any sample: the threads busy now
            # are what it has to tell (the pool's step counts them), not "none".
            self.sample(now)
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
        self._reported_wait = self._oldest_wait
        self._reported_depth = report.queued
        if self._timer is None:
            self._arm(now)  # a wait no report told yet is news again
        self._most_busy, self._oldest_wait = 0, 0.0
        return report
