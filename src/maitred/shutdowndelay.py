"""--shutdown-delay: the time between a SIGTERM and the start of the graceful stop.

Theory of operation
-------------------
A load balancer keeps sending a server new clients until its health check fails a few times.
A server that stopped accepting at once on SIGTERM would refuse (or, without the listeners
closed, strand) those clients. So with a delay the master, on the first TERM, tells the fronts
(SIGUSR2) to answer the health check 503 and keeps everything serving and accepting for the
delay; then the usual graceful stop begins (maitred.arbiter: listeners closed, backlogs taken,
requests in flight finished). A second TERM ends the delay at once; INT and QUIT never wait.

A front learns of the delay by a signal, which it handles only once its event loop runs (until
then the signal would be ignored, as every child ignores USR2 after fork): so a front is told
once it has sent a heartbeat, which its loop sends. Fronts started during the delay (one that
crashed is restarted) are told the same way, on the master's next turn.

Owned by the master's loop.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterable

from maitred.children import FrontChild


class ShutdownDelay:
    """The delay under way, if any: when it ends, and which fronts know."""

    def __init__(self) -> None:
        self.deadline: float | None = None  # monotonic; None: no delay under way
        self._told: set[int] = set()

    @property
    def running(self) -> bool:
        return self.deadline is not None

    def begin(self, seconds: float, fronts: Iterable[FrontChild]) -> None:
        self.deadline = time.monotonic() + seconds
        self.tell(fronts)

    def end(self) -> None:
        self.deadline = None

    def due(self, now: float) -> bool:
        return self.deadline is not None and now >= self.deadline

    def timeout(self, now: float) -> float | None:
        """Seconds until the delay ends, while one runs."""
        return None if self.deadline is None else max(0.0, self.deadline - now)

    def tell(self, fronts: Iterable[FrontChild]) -> None:
        """Tell the fronts that do not know yet and can hear it (their loop beat)."""
        if self.deadline is None:
            return
        for front in fronts:
            if front.pid not in self._told and front.last_seen > front.started:
                self._told.add(front.pid)
                front.send(signal.SIGUSR2)
