"""Whether a server should be sent requests: the one state behind every readiness check.

Theory of operation
-------------------
A server is STARTING until a worker of the app is ready (imported and linked to its front),
READY while one is, and DRAINING from the moment it is told to stop (SIGTERM, with or without
--shutdown-delay) until it exits: it still finishes what it holds, and may still accept for the
delay, but a balancer must send new clients elsewhere. DRAINING is never left.

:class:`ReadinessState` holds that state for one process, and :func:`answer` says what an HTTP
readiness check answers for each state. The front serves --health-path from them
(maitred.front.health); anything else that answers a readiness check (a status server) must use
the same two, so every check of one server says the same thing.

An operator may also drain a server that keeps running (`maitred ctl drain`: the balancer
sends new clients elsewhere while the requests held, and any that still come, are served) and
undo it (`maitred ctl undrain`). That is a :class:`Hold`, one byte of memory the master shares
with every child it forks (an anonymous shared mapping, made before the fronts): the master
writes it, each front's check reads it, so a front started later (restarted, reloaded) knows
at once, and no message or signal is needed. While held, a check says DRAINING.
"""

from __future__ import annotations

import enum
import mmap
from collections.abc import Callable


class Readiness(enum.Enum):
    STARTING = "starting"  # no worker of the app is ready yet
    READY = "ready"
    DRAINING = "draining"  # stopping: new clients belong elsewhere


# The answer to a readiness check in each state: (HTTP status, body).
_ANSWERS = {
    Readiness.STARTING: (503, b"starting\n"),
    Readiness.READY: (200, b"ready\n"),
    Readiness.DRAINING: (503, b"draining\n"),
}


def answer(state: Readiness) -> tuple[int, bytes]:
    """The HTTP status and body of a readiness check in `state`."""
    return _ANSWERS[state]


class Hold:
    """`maitred ctl drain`: shared by the master (which writes it) and its children."""

    def __init__(self) -> None:
        self._byte = mmap.mmap(-1, 1)  # anonymous and MAP_SHARED: forked children see writes

    def set(self, held: bool) -> None:
        self._byte[0] = held

    def __bool__(self) -> bool:
        return bool(self._byte[0])


class ReadinessState:
    """One process's readiness: DRAINING once told (or while `hold` is held), else READY
    while `workers_ready` says so."""

    def __init__(self, workers_ready: Callable[[], bool], hold: Hold | None = None) -> None:
        self._workers_ready = workers_ready
        self._draining = False
        self._hold = hold

    def drain(self) -> None:
        """From now on (for good), new clients belong elsewhere."""
        self._draining = True

    @property
    def state(self) -> Readiness:
        if self._draining or self._hold:
            return Readiness.DRAINING
        return Readiness.READY if self._workers_ready() else Readiness.STARTING
