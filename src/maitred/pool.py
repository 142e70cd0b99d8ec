"""The master's decisions about its children: which to start, replace, retire or restart.

Theory of operation
-------------------
The arbiter (maitred.arbiter) does the process work: forking, reaping, reading status pipes,
signals. It tells the pool what happened (a worker is READY, asks to be recycled, exited; a HUP,
TTIN or TTOU came) and the pool decides, calling back into the arbiter to spawn.

Start-up is staged: worker 1 imports the app first; the others start once it reports READY. An
app that cannot be imported thus prints one traceback, and the master stops with status 1
instead of respawning it forever.

Replacing a worker is make-before-break: the replacement starts, and only when it is READY is
the old one sent SIGTERM, on which it drains (the front sends it nothing new) and exits. This is
how HUP reloads the app, and how workers are recycled (--max-requests, --max-worker-lifetime,
--max-worker-memory) or replaced when a request got stuck. A replacement whose import fails
leaves the old worker serving. A process (front or worker) that dies unexpectedly is restarted
at once, and with exponential backoff when it keeps dying right after start; one that stops
sending its heartbeat (--front-timeout; a worker, --timeout plus --graceful-timeout) is killed,
and so restarted.

Owned by the master's loop; nothing here runs in a signal handler.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Mapping

from maitred.children import Child, exit_text, memory_of
from maitred.config import Config
from maitred.worker.main import APP_LOAD_ERROR

log = logging.getLogger("maitred.error")

# A process that dies this soon after start counts as a crash loop and is restarted with backoff.
QUICK_DEATH = 5.0
MAX_BACKOFF = 30.0
MEMORY_CHECK_INTERVAL = 5.0  # seconds between reads of the workers' memory
# A pause of the master's loop longer than this (it wakes every second) means the master did
# not run: its children's silence over that time is not held against them.
MASTER_STALL = 5.0


class Pool:
    """The front and the workers the master keeps, as decisions; `children` is the arbiter's."""

    def __init__(
        self,
        cfg: Config,
        children: Mapping[int, Child],
        spawn_front: Callable[[int], None],
        spawn_worker: Callable[[int], Child],
    ) -> None:
        self.cfg = cfg
        self.children = children
        self.spawn_front = spawn_front
        self.spawn_worker = spawn_worker
        self.wanted = cfg.workers
        self.ever_ready = False
        self.failures: dict[str, int] = {}  # consecutive quick deaths per role
        # (kind, worker id or front number) -> monotonic time to (re)start it
        self.pending: dict[tuple[str, int], float] = {}
        self.next_memory_check = 0.0
        self.last_check = time.monotonic()

    def start(self) -> None:
        """Staged start: worker 1 alone, the others once it is READY."""
        self.spawn_worker(1)

    def ready(self, child: Child) -> bool:
        """A worker reported READY; True the first time any worker does (the app imports)."""
        child.ready = True
        self.failures.pop(child.role, None)
        if child.replaces is not None:
            self.retire(child.replaces)
            child.replaces = None
        if self.ever_ready:
            return False
        self.ever_ready = True
        # The app imports: start the others (a TTIN or HUP before now may have started some
        # already).
        have = {c.worker_id for c in self._serving()}
        for worker_id in range(1, self.wanted + 1):
            if worker_id not in have:
                self.spawn_worker(worker_id)
        return True

    # --- replacing, retiring, scaling ---

    def _serving(self) -> list[Child]:
        """Workers that hold a place: not retiring (a replacement may be starting)."""
        return [c for c in self.children.values() if c.kind == "worker" and not c.retiring]

    def replace(self, old: Child, why: str) -> None:
        """Make before break: start a replacement; `old` is retired when it is READY."""
        if old.retiring or old.replaced_by is not None or old.pid not in self.children:
            return
        log.info("replacing worker %d (pid %d): %s", old.worker_id, old.pid, why)
        new = self.spawn_worker(old.worker_id)
        new.replaces = old
        old.replaced_by = new

    def retire(self, child: Child) -> None:
        """Stop a worker gracefully (SIGTERM: it drains), once; it is not restarted."""
        if child.retiring or child.pid not in self.children:
            return
        child.retiring = True
        child.send(signal.SIGTERM)

    def reload(self, cfg: Config | None) -> None:
        """Replace every worker; a new configuration (if any) also sets how many there are."""
        if cfg is not None:
            self.cfg = cfg
            self.wanted = cfg.workers
        current = [c for c in self._serving() if c.replaced_by is None]
        for child in current:
            if child.worker_id <= self.wanted:
                self.replace(child, "reload")
            else:
                self.retire(child)
        have = {c.worker_id for c in current}
        for worker_id in range(1, self.wanted + 1):
            if worker_id not in have:
                self.spawn_worker(worker_id)

    def one_worker_more(self) -> None:
        self.wanted += 1
        log.info("SIGTTIN: %d workers", self.wanted)
        self.spawn_worker(self._free_worker_id())

    def one_worker_less(self) -> None:
        serving = [c for c in self._serving() if c.replaces is None]
        fewest = self.cfg.fronts  # every front keeps a worker
        if self.wanted <= fewest or not serving:
            log.info("SIGTTOU: already at the fewest workers (%d)", fewest)
            return
        self.wanted -= 1
        if len(serving) == 1 and not self.ever_ready:
            # Worker 1 is still importing the app; the staged start will start one fewer.
            log.info("SIGTTOU: %d workers", self.wanted)
            return
        victim = max(serving, key=lambda c: c.worker_id)
        log.info("SIGTTOU: %d workers; stopping worker %d", self.wanted, victim.worker_id)
        if victim.replaced_by is not None:
            self.retire(victim.replaced_by)
        self.retire(victim)

    def _free_worker_id(self) -> int:
        taken = {c.worker_id for c in self._serving()}
        return next(i for i in range(1, len(taken) + 2) if i not in taken)

    def check(self) -> None:
        """Liveness by heartbeat, of the fronts and the workers; recycling by lifetime and
        memory."""
        cfg = self.cfg
        now = time.monotonic()
        if now - self.last_check > MASTER_STALL:
            # The master itself did not run (the machine slept, or it was stopped): the silence
            # was its own, not its children's.
            for child in self.children.values():
                child.last_seen = now
        self.last_check = now
        if cfg.front_timeout:
            for child in self.children.values():
                if child.kind == "front" and now - child.last_seen > cfg.front_timeout:
                    log.error("%s (pid %d) stopped responding; killing it", child.role, child.pid)
                    child.last_seen = now  # said once; it is restarted once reaped
                    child.send(signal.SIGKILL)
        check_memory = cfg.max_worker_memory and now >= self.next_memory_check
        if check_memory:
            self.next_memory_check = now + MEMORY_CHECK_INTERVAL
        silent_limit = cfg.timeout + cfg.graceful_timeout if cfg.timeout else 0.0
        for child in self._serving():
            if not child.ready:
                continue
            if silent_limit and now - child.last_seen > silent_limit:
                log.error(
                    "worker %d (pid %d) stopped responding; killing it", child.worker_id, child.pid
                )
                child.send(signal.SIGKILL)
            elif cfg.max_worker_lifetime and now - child.started > cfg.max_worker_lifetime:
                self.replace(child, "--max-worker-lifetime reached")
            elif check_memory:
                used = memory_of(child.pid, cfg.worker_memory_metric)
                if used > cfg.max_worker_memory:
                    self.replace(child, f"{cfg.worker_memory_metric} {used >> 20} MiB")

    # --- exits and restarts ---

    def exited(self, child: Child, code: int) -> bool:
        """What follows an exit while the master serves; True: the app cannot be imported."""
        if child.retiring:
            log.info("%s (pid %d) retired", child.role, child.pid)
            return False
        how = exit_text(code)
        old = child.replaces
        if old is not None:  # a replacement that never became ready: the old one serves on
            child.unpair()
            if code == APP_LOAD_ERROR:
                log.error(
                    "the new app failed to load (see above); keeping worker %d (pid %d) serving",
                    old.worker_id,
                    old.pid,
                )
            else:
                log.error(
                    "the replacement of worker %d exited with %s; keeping pid %d serving",
                    old.worker_id,
                    how,
                    old.pid,
                )
            return False
        if child.kind == "worker" and code == APP_LOAD_ERROR and not self.ever_ready:
            log.error("the app failed to load (see above); stopping")
            return True
        if child.replaced_by is not None:  # its replacement is on the way already
            child.unpair()
            return False
        if child.kind == "worker" and child.worker_id > self.wanted:
            return False
        log.error("%s (pid %d) exited with %s; restarting it", child.role, child.pid, how)
        quick = time.monotonic() - child.started < QUICK_DEATH
        failures = self.failures[child.role] = self.failures.get(child.role, 0) + 1 if quick else 0
        delay = min(MAX_BACKOFF, 0.1 * 2**failures) if failures > 1 else 0.0
        if delay:
            log.warning("%s keeps dying; next start in %.1f s", child.role, delay)
        self.pending[child.kind, child.worker_id] = time.monotonic() + delay
        return False

    def spawn_pending(self) -> None:
        """Start the restarts whose backoff has run out."""
        now = time.monotonic()
        for (kind, number), when in list(self.pending.items()):
            if when <= now:
                del self.pending[kind, number]
                if kind == "front":
                    self.spawn_front(number)
                else:
                    self.spawn_worker(number)
