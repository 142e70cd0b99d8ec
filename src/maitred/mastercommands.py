"""The master's commands on its control socket (maitred.control), as `maitred ctl` sends them.

    status              the status document (maitred.statusdoc): pools, workers, queues
    top                 the same document: maitred.ctl draws its requests in flight
    workers APP N       set a pool's size
    reload [APP]        all apps as a HUP does, or one app's workers, make-before-break
    reopen-logs         as USR1
    stacks [PID]        the stacks of the busy app threads of every worker, or of one
    drain / undrain     readiness checks fail (or pass again) while everything is served
    stop                the graceful stop, as TERM
    help                the commands

`workers APP N` and the scaling bounds: the pool becomes N workers now. A pool that scales
(--min-workers < --max-workers) keeps scaling, within bounds widened to include N (N above
--max-workers raises it to N, N below --min-workers lowers it to N); a pool that does not
scale simply has N workers. Either lasts until a HUP, which goes back to the settings, as
TTIN and TTOU do.

`stacks`: the master sends each ready worker (or the one named) SIGUSR2, and the worker's main
thread answers on its status pipe (maitred.worker.stacks, maitred.status.StacksPart). The
answer to the client waits for every worker asked, STACKS_WAIT seconds at most; a worker that
did not answer by then (busy draining, stopped) is named in `no_answer`. Each worker's report
is bounded by the worker (maitred.worker.stacks.MAX_REPORT), and pieces past that are dropped.

Owned by the master's loop.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import time
from typing import TYPE_CHECKING, Any

from maitred import cachecommands, control, ctlwire, scaling, upgrade
from maitred.children import WorkerChild
from maitred.control import Command, CommandError, Commands, ControlServer, Pending
from maitred.status import StacksPart
from maitred.worker.stacks import MAX_REPORT

if TYPE_CHECKING:
    from maitred.arbiter import Arbiter
    from maitred.pool import Pool

log = logging.getLogger("maitred.error")

STACKS_WAIT = 3.0  # seconds a `stacks` waits for the workers: the main thread answers at once


class StacksRequest(Pending):
    """One `stacks` command: the workers asked, and the reports that came."""

    def __init__(self, pids: list[int], deadline: float) -> None:
        self.deadline = deadline
        self.waiting = set(pids)
        self.reports: list[Any] = []

    def heard(self, pid: int, report: Any) -> None:
        if pid in self.waiting:
            self.waiting.discard(pid)
            self.reports.append(report)

    def done(self, now: float) -> bool:
        return not self.waiting

    def result(self) -> Any:
        reports = sorted(self.reports, key=lambda report: report.get("pid", 0))
        return {"workers": reports, "no_answer": sorted(self.waiting)}


class MasterCommands:
    """The commands that act on the arbiter, registered in one table."""

    def __init__(self, arbiter: Arbiter) -> None:
        self.arbiter = arbiter
        self.commands = Commands()
        self._pieces: dict[int, bytes] = {}  # worker pid -> the stacks it sent so far
        self._stacks: list[StacksRequest] = []
        for command in (
            Command("status", self.status, "", "pools, workers and queues"),
            Command("top", self.status, "", "the requests in flight"),
            Command("workers", self.workers, "APP N", "set the pool of APP to N workers"),
            Command("reload", self.reload, "[APP]", "new workers for every app, or for APP"),
            Command("reopen-logs", self.reopen_logs, "", "reopen the log files (as USR1)"),
            Command("stacks", self.stacks, "[PID]", "the stacks of the busy app threads"),
            Command("drain", self.drain, "", "fail readiness checks; keep serving"),
            Command("undrain", self.undrain, "", "pass readiness checks again"),
            Command("stop", self.stop, "", "stop gracefully (as TERM)"),
            Command("help", lambda args: self.commands.help(), "", "the commands"),
        ):
            self.commands.register(command)
        cachecommands.register(self.commands, arbiter)

    # --- reading ---

    def status(self, args: tuple[str, ...]) -> Any:
        """The status document (maitred.statusdoc) without the charts' history: `status`
        draws its pools and workers, `top` its requests in flight."""
        _no_args(args)
        # Only a master asked for its status needs the document's modules (idle memory).
        from maitred import statusdoc

        return statusdoc.snapshot(self.arbiter, history=False)

    # --- acting ---

    def workers(self, args: tuple[str, ...]) -> Any:
        if len(args) != 2 or not args[1].isdigit():
            raise CommandError("usage: workers APP N (N a whole number)")
        pool, size = self._pool(args[0]), int(args[1])
        fewest = max(1, pool.cfg.fronts)  # every front keeps a worker
        if size < fewest:
            raise CommandError(f"{pool.name} needs {fewest} workers at least (one per front)")
        bounds = scaling.Bounds.of(pool.cfg)
        if bounds.scaling:
            least, most = min(bounds.least, size), max(bounds.most, size)
            pool.use(pool.cfg.replace(min_workers=least, max_workers=most))
        else:
            pool.use(pool.cfg.replace(workers=size))
        why = "ctl workers"
        while pool.wanted < size:
            pool.scale(1, why)
        while pool.wanted > size:
            before = pool.wanted
            pool.scale(-1, why)
            if pool.wanted == before:
                break
        new = scaling.Bounds.of(pool.cfg)
        return {"app": pool.name, "workers": pool.wanted, "scaling": [new.least, new.most]}

    def reload(self, args: tuple[str, ...]) -> Any:
        if len(args) > 1:
            raise CommandError("usage: reload [APP]")
        if not args:
            self.arbiter.reload()
            return {"reloading": sorted(self.arbiter.pools)}
        pool = self._pool(args[0])
        log.info("ctl reload %s: new workers for the app, make-before-break", pool.name)
        pool.reload(None)
        return {"reloading": [pool.name]}

    def reopen_logs(self, args: tuple[str, ...]) -> Any:
        _no_args(args)
        self.arbiter.handle_usr1()
        return {"reopened": True}

    def drain(self, args: tuple[str, ...]) -> Any:
        _no_args(args)
        log.info("ctl drain: readiness checks answer 503 from now; requests are served")
        self.arbiter.hold.set(True)
        return {"draining": True}

    def undrain(self, args: tuple[str, ...]) -> Any:
        _no_args(args)
        log.info("ctl undrain: readiness checks pass again")
        self.arbiter.hold.set(False)
        return {"draining": False}

    def stop(self, args: tuple[str, ...]) -> Any:
        _no_args(args)
        log.info("ctl stop: stopping gracefully")
        self.arbiter.handle_term()
        return {"stopping": True}

    # --- stacks ---

    def stacks(self, args: tuple[str, ...]) -> Any:
        if len(args) > 1 or (args and not args[0].isdigit()):
            raise CommandError("usage: stacks [PID]")
        workers = [w for pool in self.arbiter.pools.values() for w in pool.workers if w.ready]
        if args:
            pid = int(args[0])
            workers = [w for w in workers if w.pid == pid]
            if not workers:
                raise CommandError(f"pid {pid} is no ready worker of this server")
        request = StacksRequest([w.pid for w in workers], time.monotonic() + STACKS_WAIT)
        self._stacks = [r for r in self._stacks if r.waiting and not r.done(0.0)]
        self._stacks.append(request)
        for worker in workers:
            self.arbiter.kill(worker, signal.SIGUSR2)
        return request

    def heard(self, child: WorkerChild, part: StacksPart) -> None:
        """A piece of a worker's stacks (on its status pipe)."""
        data = self._pieces.pop(child.pid, b"") + part.data
        if len(data) > MAX_REPORT + len(part.data):
            log.warning("%s sent stacks past %d bytes: dropped", child.role, MAX_REPORT)
            return
        if not part.last:
            self._pieces[child.pid] = data
            return
        try:
            report = ctlwire.json_object(data, "a worker's stacks")
        except ctlwire.ProtocolError as exc:
            log.warning("%s sent stacks that are not its report: %s", child.role, exc)
            return
        for request in self._stacks:
            request.heard(child.pid, report)

    def _pool(self, name: str) -> Pool:
        pools = self.arbiter.pools
        if name not in pools:
            raise CommandError(f"unknown app {name!r}; apps: {', '.join(sorted(pools))}")
        return pools[name]


def _no_args(args: tuple[str, ...]) -> None:
    if args:
        raise CommandError(f"no arguments expected, got {' '.join(args)!r}")


def start(arbiter: Arbiter) -> tuple[ControlServer, MasterCommands]:
    """Listen on the control socket (OSError when it cannot). After a USR2 the new master
    takes a socket path of --control-socket over from the old one."""
    commands = MasterCommands(arbiter)
    runtime_dir = arbiter.bound.link_dir
    path = arbiter.cfg.control_socket or control.default_path(runtime_dir)
    try:
        server = ControlServer.bind(path, commands.commands)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE or upgrade.UPGRADE_FD not in arbiter.environ:
            raise
        os.unlink(path)  # the old master's, which stops: ours from now on
        server = ControlServer.bind(path, commands.commands)
    control.link_from_runtime_dir(runtime_dir, path)
    return server, commands
