"""What a child's exit means, decided in one place, and when a crashed child starts again.

Theory of operation
-------------------
The master reaps a child and asks `classify` what the exit was: a stop, a child it had asked
to go (recycled, replaced by a reload, one worker fewer, of the fronts before a reload), a
child killed for its silence, an app that cannot be imported, a replacement that never became
ready, or a crash. The answer (`Exit`) is all the arbiter and the pool act on; neither reads
exit codes or child flags again to decide.

A child that crashes is started again at once; one that keeps dying right after its start is
in a crash loop and waits longer each time (`Restarts`), so a broken app or a full disk does not
make the master fork as fast as it can.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from maitred.children import Child, Exit, FrontChild, ReloaderChild, WorkerChild, exit_text
from maitred.worker.main import APP_LOAD_ERROR

log = logging.getLogger("maitred.error")

# A process that dies this soon after start counts as a crash loop and is restarted with backoff
# (a reloader is not restarted at all: it cannot watch).
QUICK_DEATH = 5.0
FIRST_BACKOFF = 0.1  # seconds before the second quick restart; doubles with each one after
MAX_BACKOFF = 30.0


@dataclass(frozen=True)
class Situation:
    """What the master knows besides the child when it classifies an exit."""

    stopping: bool
    serving_generations: frozenset[int]  # the fronts' current and next generations
    app_imported: bool  # a worker of the child's pool has imported the app
    wanted: int  # how many workers the child's pool keeps


def classify(child: Child, code: int, now: Situation) -> Exit:
    """What the exit of `child` with `code` (negative: the signal) means."""
    if now.stopping:
        return Exit.STOP
    if isinstance(child, ReloaderChild):
        return Exit.FAILED_START if quick(child) else Exit.CRASH
    if child.generation not in now.serving_generations:
        return Exit.OLD_GENERATION
    if isinstance(child, FrontChild):
        return Exit.TIMEOUT if child.leaving is Exit.TIMEOUT else Exit.CRASH
    assert isinstance(child, WorkerChild)
    if child.leaving is not None and child.leaving is not Exit.TIMEOUT:
        return child.leaving
    if child.replaces is not None:
        return Exit.FAILED_REPLACEMENT
    if code == APP_LOAD_ERROR and not now.app_imported:
        return Exit.FAILED_IMPORT
    if child.replaced_by is not None:
        return Exit.SUPERSEDED
    if child.worker_id > now.wanted:
        return Exit.SCALE
    return Exit.TIMEOUT if child.leaving is Exit.TIMEOUT else Exit.CRASH


def quick(child: Child) -> bool:
    """Whether the child died right after its start."""
    return time.monotonic() - child.started < QUICK_DEATH


class Restarts:
    """Children to start again (by worker id or front number), each at its time."""

    def __init__(self) -> None:
        self.failures: dict[str, int] = {}  # consecutive quick deaths per role
        self._due: dict[int, float] = {}  # key -> monotonic time to start it

    def schedule(self, key: int, child: Child, code: int) -> None:
        """`child` crashed: start it again, at once or after a backoff if it keeps dying."""
        log.error(
            "%s (pid %d) exited with %s; restarting it", child.role, child.pid, exit_text(code)
        )
        failures = self.failures.get(child.role, 0) + 1 if quick(child) else 0
        self.failures[child.role] = failures
        delay = min(MAX_BACKOFF, FIRST_BACKOFF * 2**failures) if failures > 1 else 0.0
        if delay:
            log.warning("%s keeps dying; next start in %.1f s", child.role, delay)
        self._due[key] = time.monotonic() + delay

    def started(self, child: Child) -> None:
        """`child` started well (a worker is READY): its crash loop, if any, is over."""
        self.failures.pop(child.role, None)

    def due(self) -> list[int]:
        """The keys whose time has come; they are forgotten here."""
        now = time.monotonic()
        keys = [key for key, when in self._due.items() if when <= now]
        for key in keys:
            del self._due[key]
        return keys

    def next_due(self) -> float | None:
        """The monotonic time of the next restart, if any."""
        return min(self._due.values(), default=None)

    def clear(self) -> None:
        self._due.clear()
