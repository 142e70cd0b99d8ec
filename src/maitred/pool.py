"""An app pool: the workers that run one app with one set of settings, and their lifecycle.

Theory of operation
-------------------
The pool owns its workers' lifecycle: which to start, replace, retire or restart, and how many
there are. It does no process work itself: it asks a `Spawner` (the arbiter, maitred.arbiter)
to fork a worker or to signal one, and the arbiter tells it what happened through a few calls:
`ready` (a worker imported the app), `replace` (a worker asks to be recycled), `exited` (with
the exit's classification, maitred.exits), `reload` (HUP), `scale` (TTIN, TTOU) and `check`
(once per turn of the master's loop). Nothing else reads or writes its state. A server runs
one pool per app (maitred.apps), side by side; its log lines name the app through the workers'
roles ("worker 3 of shop").

Start-up is staged: worker 1 imports the app first; the others start once it reports READY. An
app that cannot be imported thus prints one traceback, and the master stops with status 1
instead of respawning it forever.

Replacing a worker is make-before-break: the replacement starts, and only when it is READY is
the old one sent SIGTERM, on which it drains (the front sends it nothing new) and exits. This is
how HUP reloads the app, and how workers are recycled (--max-requests, --max-worker-lifetime,
--max-worker-memory) or replaced when a request got stuck. A replacement whose import fails
leaves the old worker serving. A worker that dies unexpectedly is restarted at once, and with
exponential backoff when it keeps dying right after start (maitred.exits.Restarts); one that
stops sending its heartbeat (--timeout plus --graceful-timeout) is killed, and so restarted.

Scaling (--min-workers, --max-workers): the fronts report the pool's load about once a second
(`load`), and once per tick `check` asks maitred.scaling.decide, a pure function, whether to
grow or shrink; a report that shows requests waiting is decided on at once. Growing starts
workers like TTIN does; shrinking retires one worker, the one the fronts report with the
fewest requests in flight (an idle one, if any), keeping each front's share of workers even.
Retiring drains: the worker takes nothing new and finishes what it holds.

Owned by the master's loop; nothing here runs in a signal handler.
"""

from __future__ import annotations

import logging
import signal
import time
from typing import Protocol

from maitred import frontplan, scaling
from maitred.children import Child, Exit, WorkerChild, exit_text, memory_of
from maitred.config import Config
from maitred.exits import Restarts
from maitred.status import LoadReport
from maitred.worker.main import APP_LOAD_ERROR

log = logging.getLogger("maitred.error")

MEMORY_CHECK_INTERVAL = 5.0  # seconds between reads of the workers' memory
# The exits of workers the pool asked to go: nothing follows them.
RETIRED = frozenset({Exit.RECYCLE, Exit.RELOAD, Exit.SCALE, Exit.REMOVED})
# Least seconds between two scaling decisions; each waits for a new report besides (a front
# reports once a second), so one that comes a little early is not left for a whole second.
DECISION_INTERVAL = 0.5


class Spawner(Protocol):
    """The process work a pool needs from the master."""

    def spawn_worker(self, pool: Pool, worker_id: int) -> WorkerChild:
        """Fork a worker of `pool` with the pool's settings (`pool.cfg`)."""

    def kill(self, child: Child, signum: signal.Signals) -> None:
        """Send a signal to a child, unless it is gone already."""


class Pool:
    """The workers of one app pool, as decisions; the arbiter does the process work."""

    def __init__(self, name: str, cfg: Config, spawner: Spawner) -> None:
        self.name = name
        self.cfg = cfg
        self._spawner = spawner
        self.wanted = cfg.workers
        self.app_imported = False  # a worker has reported READY
        self._workers: dict[int, WorkerChild] = {}  # pid -> worker
        self._restarts = Restarts()
        self._next_memory_check = 0.0
        self._reports: dict[int, tuple[float, LoadReport]] = {}  # front pid -> (when, report)
        self._memory = scaling.Memory()  # what the scaling decision remembers
        self._next_decision = 0.0
        self._reported = False  # a report came since the last decision
        self._joined = scaling.NEVER  # when a worker last became READY
        self._memory_capped = False  # the last growth was refused for --max-pool-memory
        self.last_decision = scaling.HOLD

    # --- what the arbiter asks ---

    @property
    def workers(self) -> list[WorkerChild]:
        return list(self._workers.values())

    def next_start(self) -> float | None:
        """When a restart is due (monotonic), if one waits."""
        return self._restarts.next_due()

    def replacing(self) -> bool:
        """Whether a replacement (a reload's, a recycling's) is starting."""
        return any(c.replaces is not None for c in self._workers.values())

    def use(self, cfg: Config) -> None:
        """The settings for the workers started from now on (a reload that was dropped)."""
        self.cfg = cfg

    def stop(self) -> None:
        """The server stops: nothing starts any more."""
        self._restarts.clear()

    def remove(self) -> None:
        """The app left the server: its workers finish what they hold and go, and nothing
        starts again."""
        self.wanted = 0
        self._restarts.clear()
        for child in list(self._workers.values()):
            child.unpair()
            self.retire(child, Exit.REMOVED)

    def has(self, child: WorkerChild) -> bool:
        """Whether `child` is one of its workers."""
        return child.pid in self._workers

    def release(self, generation: int) -> list[WorkerChild]:
        """Give up the workers that link to a generation of fronts that is leaving: they are
        the pool's no more, and go with their front (maitred.frontset)."""
        leaving = [c for c in self._workers.values() if c.generation == generation]
        for child in leaving:
            del self._workers[child.pid]
            child.leaving = Exit.OLD_GENERATION
            child.unpair()
        return leaving

    def drop(self, generation: int) -> None:
        """The workers that link to a generation of fronts that will not serve go; the
        workers they were to replace serve on."""
        for child in [c for c in self._workers.values() if c.generation == generation]:
            child.unpair()
            self.retire(child, Exit.RELOAD)

    # --- lifecycle ---

    def start(self) -> None:
        """Staged start: worker 1 alone, the others once it is READY."""
        self._spawn(1)

    def ready(self, child: WorkerChild) -> bool:
        """A worker reported READY; True the first time any worker does (the app imports)."""
        child.ready = True
        self._joined = time.monotonic()
        self._restarts.started(child)
        old = child.replaces
        # One of another generation of fronts serves its own until they swap, and leaves with
        # them (maitred.frontset): other apps' new workers may still be importing.
        if old is not None and old.generation == child.generation:
            child.replaces = None
            self.retire(old, child.replace_reason)
        if self.app_imported:
            return False
        self.app_imported = True
        # The app imports: start the others (a TTIN or HUP before now may have started some
        # already).
        self._fill()
        return True

    def replace(self, old: WorkerChild, why: str, reason: Exit = Exit.RECYCLE) -> None:
        """Make before break: start a replacement; `old` is retired when it is READY."""
        if not old.holds_place or old.replaced_by is not None or old.pid not in self._workers:
            return
        log.info("replacing %s (pid %d): %s", old.role, old.pid, why)
        new = self._spawn(old.worker_id)
        new.replaces, new.replace_reason = old, reason
        old.replaced_by = new

    def retire(self, child: WorkerChild, reason: Exit) -> None:
        """Stop a worker gracefully (SIGTERM: it drains), once; it is not restarted."""
        if not child.holds_place or child.pid not in self._workers:
            return
        child.leaving = reason
        self._spawner.kill(child, signal.SIGTERM)

    def reload(self, cfg: Config | None) -> None:
        """Replace every worker; a new configuration (if any) also sets how many there are."""
        if cfg is not None:
            self.cfg = cfg
            bounds = scaling.Bounds.of(cfg)
            # A scaling pool keeps the size the load gave it, within the new bounds.
            kept = min(max(self.wanted, bounds.least), bounds.most)
            self.wanted = kept if bounds.scaling else cfg.workers
        current = [c for c in self._serving() if c.replaced_by is None]
        current.sort(key=lambda c: c.worker_id)
        for rank, child in enumerate(current):
            if rank < self.wanted:
                self.replace(child, "reload", Exit.RELOAD)
            else:
                self.retire(child, Exit.SCALE)
        self._fill()

    def scale(self, step: int, why: str) -> None:
        """One worker more (step 1) or fewer (step -1); `why` opens the log line."""
        if step > 0:
            self.wanted += 1
            log.info("%s: %d workers", why, self.wanted)
            self._spawn(self._free_worker_id())
            return
        serving = [c for c in self._serving() if c.replaces is None]
        fewest = self.cfg.fronts  # every front keeps a worker
        if self.wanted <= fewest or not serving:
            log.info("%s: already at the fewest workers (%d)", why, fewest)
            return
        self.wanted -= 1
        if len(serving) == 1 and not self.app_imported:
            # Worker 1 is still importing the app; the staged start will start one fewer.
            log.info("%s: %d workers", why, self.wanted)
            return
        victim = max(serving, key=lambda c: c.worker_id)
        log.info("%s: %d workers; stopping worker %d", why, self.wanted, victim.worker_id)
        if victim.replaced_by is not None:
            self.retire(victim.replaced_by, Exit.SCALE)
        self.retire(victim, Exit.SCALE)

    def check(self, now: float) -> None:
        """Liveness by heartbeat; recycling by lifetime and memory; restarts that are due."""
        for worker_id in self._restarts.due():
            self._spawn(worker_id)
        if self.app_imported and self._reported and now >= self._next_decision:
            self._next_decision = now + DECISION_INTERVAL
            self._scale(now)
        cfg = self.cfg
        check_memory = cfg.max_worker_memory and now >= self._next_memory_check
        if check_memory:
            self._next_memory_check = now + MEMORY_CHECK_INTERVAL
        silent_limit = cfg.timeout + cfg.graceful_timeout if cfg.timeout else 0.0
        for child in self._serving():
            if not child.ready or child.leaving is Exit.TIMEOUT:
                continue  # importing the app; or killed, and restarted once reaped
            if silent_limit and now - child.last_seen > silent_limit:
                log.error("%s (pid %d) stopped responding; killing it", child.role, child.pid)
                child.leaving = Exit.TIMEOUT
                self._spawner.kill(child, signal.SIGKILL)
            elif cfg.max_worker_lifetime and now - child.started > cfg.max_worker_lifetime:
                self.replace(child, "--max-worker-lifetime reached")
            elif check_memory:
                used = memory_of(child.pid, cfg.worker_memory_metric)
                if used > cfg.max_worker_memory:
                    self.replace(child, f"{cfg.worker_memory_metric} {used >> 20} MiB")

    def exited(self, child: WorkerChild, code: int, why: Exit) -> None:
        """A worker of this pool exited, as `why` (maitred.exits.classify) says."""
        self._workers.pop(child.pid, None)
        if why in RETIRED:
            if child.leaving is not None:  # asked to go (not one past a TTOU that crashed)
                log.info("%s (pid %d) retired", child.role, child.pid)
            elif self._places() < self.wanted:
                # Scaling leaves gaps in the worker ids: one above `wanted` still held a place.
                self._restarts.schedule(child.worker_id, child, code)
        elif why is Exit.FAILED_REPLACEMENT:
            self._replacement_failed(child, code)
        elif why is Exit.FAILED_IMPORT:
            app = f" {child.app}" if child.app else ""
            log.error("the app%s failed to load (see above)", app)
        elif why is Exit.SUPERSEDED:
            child.unpair()  # its replacement is on the way already
        elif why in (Exit.CRASH, Exit.TIMEOUT):
            self._restarts.schedule(child.worker_id, child, code)

    # --- inside ---

    def _spawn(self, worker_id: int) -> WorkerChild:
        child = self._spawner.spawn_worker(self, worker_id)
        self._workers[child.pid] = child
        return child

    def _serving(self) -> list[WorkerChild]:
        """Workers that hold a place: not retiring (a replacement may be starting)."""
        return [c for c in self._workers.values() if c.holds_place]

    def _fill(self) -> None:
        """Start the workers the pool lacks (the lowest free ids: each front gets its share)."""
        for _ in range(self.wanted - self._places()):
            self._spawn(self._free_worker_id())

    def _places(self) -> int:
        """How many workers the pool has, a replacement and the worker it replaces as one."""
        return len({c.worker_id for c in self._serving()})

    def _free_worker_id(self) -> int:
        taken = {c.worker_id for c in self._serving()}
        return next(i for i in range(1, len(taken) + 2) if i not in taken)

    def _replacement_failed(self, child: WorkerChild, code: int) -> None:
        """A replacement that never became ready: the worker it was to replace serves on."""
        old = child.replaces
        assert old is not None
        child.unpair()
        if code == APP_LOAD_ERROR:
            log.error(
                "the new app failed to load (see above); keeping %s (pid %d) serving",
                old.role,
                old.pid,
            )
        else:
            log.error(
                "the replacement of %s exited with %s; keeping pid %d serving",
                old.role,
                exit_text(code),
                old.pid,
            )

    # --- scaling (maitred.scaling decides) ---

    def load(self, front: int, report: LoadReport, now: float) -> None:
        """A front's report of this pool's load (maitred.front.load)."""
        self._reports[front] = (now, report)
        self._reported = True
        if scaling.pressure(report, self.cfg.threads):
            self._next_decision = now  # requests wait: decide now, not at the next tick

    def _scale(self, now: float) -> None:
        bounds = scaling.Bounds.of(self.cfg)
        if not bounds.scaling:
            return
        self._reported = False  # each decision on news: a report is not counted twice
        fresh = [r for when, r in self._reports.values() if now - when < scaling.REPORT_STALE]
        load = scaling.combine(self.name, fresh)
        adding = [c for c in self._serving() if c.replaces is None]
        ready = sum(1 for c in adding if c.ready)
        size = scaling.Size(ready, len(adding) - ready, self._joined)
        self._memory, decision = scaling.decide(bounds, size, load, self._memory, now)
        if decision.action is scaling.Action.GROW:
            self._grow(decision)
        elif decision.action is scaling.Action.SHRINK and load is not None:
            self._shrink(decision, dict(load.in_flight))

    def _grow(self, decision: scaling.Decision) -> None:
        cfg = self.cfg
        count = decision.count
        if cfg.max_pool_memory:
            serving = [c for c in self._serving() if c.ready]
            used = sum(memory_of(c.pid, cfg.worker_memory_metric) for c in serving)
            count = scaling.fit_memory(count, used, len(serving), cfg.max_pool_memory)
            capped, self._memory_capped = self._memory_capped, not count
            if not count:  # said once while it lasts: the pressure may last long
                log.log(
                    logging.DEBUG if capped else logging.WARNING,
                    "no scale up: %s; %s %d MiB of --max-pool-memory %d MiB",
                    decision.reason,
                    cfg.worker_memory_metric,
                    used >> 20,
                    cfg.max_pool_memory >> 20,
                )
                return
        self.last_decision = decision
        self.wanted = self._places() + count
        log.info("scale up to %d: %s", self.wanted, decision.reason)
        for _ in range(count):
            self._spawn(self._free_worker_id())

    def _shrink(self, decision: scaling.Decision, in_flight: dict[int, int]) -> None:
        victim = self._victim(in_flight)
        if victim is None:
            return
        self.last_decision = decision
        self.wanted = self._places() - 1
        held = in_flight.get(victim.pid)
        how = "idle" if held == 0 else f"{held} requests in flight" if held else "not reported"
        log.info(
            "scale down to %d: %s; retiring worker %d (pid %d, %s)",
            self.wanted,
            decision.reason,
            victim.worker_id,
            victim.pid,
            how,
        )
        self.retire(victim, Exit.SCALE)

    def _victim(self, in_flight: dict[int, int]) -> WorkerChild | None:
        """The worker to retire: on a front with the most workers (each keeps its share),
        the fewest requests in flight as the fronts report, the highest id among equals."""
        fronts = self.cfg.fronts
        serving = [c for c in self._serving() if c.ready and not (c.replaces or c.replaced_by)]
        shares: dict[int, list[WorkerChild]] = {}
        for c in serving:
            shares.setdefault(frontplan.of_worker(c.worker_id, fronts), []).append(c)
        fullest = max(map(len, shares.values()), default=0)
        if fullest <= 1 and fronts > 1:
            return None  # its front would be left without a worker
        candidates = [c for share in shares.values() if len(share) == fullest for c in share]

        def busyness(c: WorkerChild) -> tuple[int, bool, int]:
            unknown = 1 << 16  # not in a report (just joined): taken as busy
            return (in_flight.get(c.pid, unknown), c.oldest_request > 0, -c.worker_id)

        return min(candidates, key=busyness, default=None)
