"""What the master does when a child exits.

Every exit is classified in one place (maitred.exits.classify) from the child and what the
master knows of the moment (stopping, which generations of fronts serve, whether the app was
ever imported, how many workers its pool wants); :class:`MasterExits` acts on that
classification: it counts the exit for --stats-bind, hands a front's exit to the fronts
(maitred.frontset) and a worker's to its pool (maitred.pool), restarts the --reload watcher,
stops the workers once the last front of a stopping server is gone, and stops the server
when an app cannot be imported or a reload's new workers cannot start.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from maitred import exits
from maitred.children import Child, Exit, FrontChild, ReloaderChild, WorkerChild, exit_text

if TYPE_CHECKING:
    from maitred.arbiter import Arbiter

log = logging.getLogger("maitred.error")


class MasterExits:
    """The exits of the children of `master`."""

    def __init__(self, master: Arbiter) -> None:
        self.master = master

    def exited(self, child: Child, code: int) -> None:
        """Act on an exit, as maitred.exits.classify says what it was."""
        master = self.master
        fronts = master.fronts
        assert fronts is not None
        pool = master.poolset.pool_of(child) if isinstance(child, WorkerChild) else None
        situation = exits.Situation(
            stopping=master.stopping,
            serving_generations=fronts.serving(),
            app_imported=pool is not None and pool.app_imported,
            wanted=pool.wanted if pool is not None else 0,
        )
        why = exits.classify(child, code, situation)
        if isinstance(child, FrontChild):
            master.reports.front_exited(child)
        elif isinstance(child, WorkerChild) and why is not Exit.STOP:
            master.book.worker_exited(child.pool, why.name.lower())
        if why is Exit.STOP:
            log.debug("%s (pid %d) exited with %s", child.role, child.pid, exit_text(code))
            if isinstance(child, FrontChild) and not fronts.fronts():
                master.stop_workers()
            return
        if why is Exit.OLD_GENERATION:
            log.info("%s (pid %d) of the settings before the reload is done", child.role, child.pid)
        if isinstance(child, ReloaderChild):
            self._reloader_exited(code, why)
        elif isinstance(child, FrontChild):
            fronts.exited(child, code, why)
        elif isinstance(child, WorkerChild) and pool is not None:
            pool.exited(child, code, why)
            if why is Exit.FAILED_IMPORT and not master.settings.give_up(child.pool):
                log.error("an app cannot be imported; stopping")
                master.exit_status = 1
                master.stop()
            elif why is not Exit.OLD_GENERATION and fronts.next_failed(child):
                of = f" of {child.app}" if child.app else ""
                log.error("reload: no new worker%s could start; the fronts keep their settings", of)
                master.settings.drop_next()
            master.poolset.exited()

    def _reloader_exited(self, code: int, why: Exit) -> None:
        if why is Exit.FAILED_START:  # it cannot watch (maitred.reloader says why)
            how = exit_text(code)
            log.error("reload: the reloader exited with %s at its start; --reload is off", how)
        else:
            log.warning("reload: the reloader exited with %s; restarting it", exit_text(code))
            master = self.master
            master.processes.spawn_reloader(tuple(master.poolset.apps.values()))
