"""The master process: binds the sockets, starts the fronts and the workers, supervises them.

Theory of operation
-------------------
The master knows processes and signals, not HTTP. It binds every listener and each front's link
sockets once, then forks the fronts (maitred.frontset) and the workers of its app pools
(maitred.pool: one per app, maitred.apps), which inherit them. Signal handlers only record
(maitred.signals); one loop reads signals and the children's status pipes (maitred.status,
maitred.childreports), reaps children, and acts:

* each signal has one method, `handle_<name>`, found through one table (`HANDLERS`);
* every exit is classified in one place (maitred.exits.classify), and the classification is
  what the pool, the fronts and the master act on;
* the pool decides about its workers (staged start, make-before-break reloads and recycling,
  crash backoff, scaling) and asks the master, through a small interface (maitred.pool.Spawner),
  to fork or signal one; the master never writes the pool's state, and keeps the fronts and the
  --reload watcher (maitred.reloader) itself.

A HUP replaces every worker of every app, make-before-break, and the fronts too when their
settings changed; the apps it adds, removes or changes, as those of --apps-dir (polled from this
loop), reach the running fronts without a restart (maitred.mastersettings holds the settings in
use and says how each change is applied). TTIN and TTOU scale the pool of a server of one app;
with several, which pool they would scale is not said, so they only log that.

Shutdown (TERM, INT) goes fronts first: they stop accepting and finish the requests in flight,
using the workers; once every front has exited, the master closes the link listeners (so workers
cannot reconnect) and stops the workers. QUIT stops everything at once.

A stopping server refuses new clients at once: the master closes its listeners before it
signals the fronts, so that each front is their last holder (maitred.masterbinds, which holds
the listeners and the runtime directory, says why and how).

With --shutdown-delay, a TERM first only makes the server not ready: the fronts fail the
health check and serve on for the delay (maitred.shutdowndelay), then the stop above begins.

With --stats-bind the loop also answers scrapes and probes (maitred.statsserver: non-blocking,
with a deadline per client, so a scraper never holds up supervision) from what the fronts
report and what the master knows (maitred.book, maitred.metrics, maitred.masterstats).

systemd hears from the master alone (maitred.sdnotify): READY once every pool's app imports
(maitred.announcer says it, with the "Listening at" lines), RELOADING and READY around a HUP,
STOPPING, the watchdog while the fronts beat, MAINPID after USR2. Listeners that systemd passes
(socket activation) or an old master passes (USR2) arrive through maitred.inherit.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from setproctitle import setproctitle

from maitred import frontplan, logs, privileges, runtime, sdnotify, tls, upgrade
from maitred.announcer import Announcer
from maitred.appload import AppLoadError, load_app
from maitred.book import MetricsBook
from maitred.children import Child, WorkerChild
from maitred.childreports import ChildReports
from maitred.config import Config
from maitred.frontset import FrontSet
from maitred.masterbinds import Bindings
from maitred.masterexits import MasterExits
from maitred.masterservers import MasterServers
from maitred.mastersettings import MasterSettings
from maitred.pool import Pool
from maitred.poolset import PoolSet
from maitred.processes import Closable, Processes
from maitred.readiness import Hold
from maitred.shutdowndelay import ShutdownDelay

log = logging.getLogger("maitred.error")

TICK = 1.0  # seconds the master sleeps when nothing happens
KILL_GRACE = 1.0  # extra seconds past a graceful timeout before SIGKILL
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)  # heard while stopping too
# A front beats every second: one silent for longer than this does not answer (the watchdog).
FRONT_FRESH = 3.0


class Arbiter:
    def __init__(
        self,
        cfg: Config,
        reload_config: Callable[[], Config] | None = None,
        argv: list[str] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.argv = argv if argv is not None else sys.argv[1:]
        self.environ = environ if environ is not None else os.environ
        self.pid = os.getpid()
        self.processes = Processes(self.HANDLERS, self._sockets)
        self.children = self.processes.children  # every child process, by pid
        self.bound = Bindings()  # the listeners and the runtime directory
        self.fronts: FrontSet | None = None  # once the sockets are bound
        self.app: Any = None
        self.stopping = False
        self.stop_deadline = 0.0
        self.exit_status = 0
        self.poolset = PoolSet(self)  # the apps, once in the server's directory
        # The "Listening at" lines, and systemd (maitred.announcer).
        self.announcer = Announcer(self.pid, self.environ, self.poolset, self.bound, FRONT_FRESH)
        self.settings = MasterSettings(cfg, reload_config, self.poolset, self.announcer.announce)
        self.upgrade = upgrade.Upgrade()  # USR2
        self.exits = MasterExits(self)  # what a child's exit means, and what follows
        self.delay = ShutdownDelay()  # --shutdown-delay
        self.book = MetricsBook()  # --stats-bind's figures (maitred.metrics)
        self.servers = MasterServers(FRONT_FRESH)  # --stats-bind, `maitred ctl`
        self.hold = Hold()  # `maitred ctl drain` (maitred.readiness), shared with the fronts
        # What the children say through their status pipes (maitred.childreports).
        self.reports = ChildReports(
            self.processes, self.poolset, self.book, self.servers, self.announcer.announce
        )

    @property
    def cfg(self) -> Config:
        """The settings in use: a HUP or --apps-dir changes them (maitred.mastersettings)."""
        return self.settings.cfg

    @property
    def notify(self) -> sdnotify.Notifier:
        """systemd, when it listens (maitred.announcer)."""
        return self.announcer.notify

    @property
    def pools(self) -> dict[str, Pool]:
        """The pool of each app that runs, by name (maitred.poolset)."""
        return self.poolset.pools

    # --- start ---

    def run(self) -> int:
        setproctitle(runtime.MASTER_TITLE)
        cfg = self.cfg
        try:
            runtime.check_pidfile(cfg.pidfile)
        except runtime.PidfileInUse as exc:
            log.error("%s; not starting", exc)
            return 1
        runtime.remove_stale_dirs()  # what masters killed with SIGKILL left
        self.announcer.take(os.environ)  # before any child or app sees it
        try:
            cfg = self.settings.start()
            if cfg.preload:
                self.app = load_app(cfg.app)
        except AppLoadError as exc:
            sys.stderr.write(exc.report())
            return 1
        # Signals are recorded from before the "Listening at" lines (printed once the first
        # worker has imported the app): a supervisor that reads one and signals at once must not
        # hit a default action.
        self.processes.record_signals()
        fronts = self._open(cfg)
        if fronts is None:
            return 1
        try:
            if cfg.reload:
                self.processes.spawn_reloader(tuple(self.poolset.apps.values()))
            fronts.start()
            for pool in self.pools.values():
                pool.start()
            self.announcer.announce()  # now, if no app is to be imported (an empty --apps-dir)
            self._loop()
        finally:
            self._cleanup()
        return self.exit_status

    def _open(self, cfg: Config) -> FrontSet | None:
        """Load the certificate, bind the listeners, the master's servers and the pidfile: the
        fronts to start, or None when one of them cannot be (said why, and undone)."""
        try:
            context = tls.build_context(cfg) if tls.enabled(cfg) else None
        except tls.TLSError as exc:
            log.error("cannot serve TLS: %s", exc)
            return None
        try:
            dirs = self.bound.bind(cfg, self.poolset.apps.values())
            fronts = self.fronts = self.settings.fronts = FrontSet(
                cfg, self.children, self._fork_front, lambda: self.bound.listeners, dirs, self.hold
            )
        except OSError as exc:
            log.error("cannot listen: %s", exc)
            self._cleanup()
            return None
        fronts.tls_context = context
        if not self.servers.start(self, upgraded=upgrade.UPGRADE_FD in self.environ):
            self._cleanup()
            return None
        try:
            runtime.write_pidfile(cfg.pidfile, self.pid)
        except OSError as exc:
            log.error("cannot write the pidfile %s: %s", cfg.pidfile, exc.strerror)
            self._cleanup()
            return None
        return fronts

    def _fork_front(self, main: Callable[[], int]) -> int:
        """Fork a front: it keeps the listeners and its links, not the master's servers'
        sockets (maitred.masterservers)."""

        def front_main() -> int:
            for sock in self.servers.sockets():
                sock.close()
            return main()

        return self.processes.fork(front_main)

    # --- the loop ---

    def _loop(self) -> None:
        fronts = self.fronts
        assert fronts is not None
        while self.children or (not self.stopping and self._next_start() is not None):
            extra = self.upgrade.fds()
            for server in self.servers.servers():
                extra += server.fds()
            received, talking, readable = self.processes.wait(self._timeout(), extra)
            for server in self.servers.servers():
                server.turn(readable)
            if self.upgrade.turn(readable):  # a new master serves in our place
                self.servers.close_stats()  # the new master takes the address over
                self.notify.main_pid(self.upgrade.pid)  # systemd follows the new master
                self.stop()
            for child in talking:
                self.reports.read(child, fronts, self.stopping)
            for signum in received:
                if not (self.stopping or self.delay.running) or signum in STOP_SIGNALS:
                    self.HANDLERS[signum](self)
            for child, code in self.processes.reap():
                self.exits.exited(child, code)
            if not self.stopping:
                self._check()
            self._systemd_and_delay()
            self._enforce_stop()

    def _systemd_and_delay(self) -> None:
        """Once per turn: the watchdog, the end of a reload, and of a --shutdown-delay."""
        assert self.fronts is not None
        now = time.monotonic()
        self.announcer.turn(now, self.fronts, self.stopping)
        self.delay.tell(self.fronts.fronts())  # fronts started during the delay
        if self.delay.due(now):
            log.info("--shutdown-delay is over")
            self.stop()

    def _next_start(self) -> float | None:
        """When the next restart of a front or a worker is due, if one waits."""
        assert self.fronts is not None
        starts = [self.fronts.next_start(), self.poolset.next_start()]
        return min((when for when in starts if when is not None), default=None)

    def _timeout(self) -> float:
        now = time.monotonic()
        when = self._next_start()
        waits = [TICK, self.notify.timeout(now), self.delay.timeout(now)]
        waits += [server.timeout(now) for server in self.servers.servers()]
        if when is not None and not self.stopping:
            waits.append(max(0.0, when - now))
        return min(wait for wait in waits if wait is not None)

    def _check(self) -> None:
        """Once per turn: restarts that are due, and the children's liveness and recycling."""
        assert self.fronts is not None
        now = time.monotonic()
        self.processes.forgive_stall(now)
        self.servers.retry(self)
        self.fronts.check(now, self.cfg.front_timeout)
        for pool in self.pools.values():
            pool.check(now)
        self.settings.poll_apps_dir(now)

    # --- signals: one method each, found through HANDLERS (at the end of the class) ---

    def handle_term(self) -> None:
        assert self.fronts is not None
        delay = self.cfg.shutdown_delay
        if self.delay.running:
            log.info("SIGTERM again: stopping without the rest of --shutdown-delay")
        elif delay and not self.stopping:
            self.notify.stopping()
            log.info("SIGTERM: stopping in %g s (--shutdown-delay); not ready from now", delay)
            self.delay.begin(delay, self.fronts.fronts())
            return
        self.stop()

    def handle_int(self) -> None:
        """Ctrl-C in a terminal: the graceful stop at once, never --shutdown-delay (a balancer
        stops servers with TERM)."""
        self.stop()

    def handle_quit(self) -> None:
        log.info("SIGQUIT: stopping now")
        self.notify.stopping()
        self._stopping()
        self._close_listeners()
        self.stop_deadline = time.monotonic() + KILL_GRACE
        self.processes.signal_all(signal.SIGQUIT)

    def handle_chld(self) -> None:
        """Nothing: every turn of the loop reaps."""

    def handle_hup(self) -> None:
        self.reload()

    def handle_ttin(self) -> None:
        self.poolset.scale(1, "SIGTTIN")

    def handle_ttou(self) -> None:
        self.poolset.scale(-1, "SIGTTOU")

    def handle_usr1(self) -> None:
        logs.reopen()  # the master's own lines go to the new file too, this one first
        cfg = self.cfg  # the new files are the children's to reopen (--user)
        privileges.hand_over_logs(cfg.user, cfg.group, cfg.error_logfile, cfg.access_logfile)
        log.info("SIGUSR1: reopening log files")
        self.processes.signal_all(signal.SIGUSR1)

    def handle_usr2(self) -> None:
        self.upgrade.begin(self.bound, self.argv, self.notify)

    def reload(self) -> None:
        assert self.fronts is not None
        log.info("SIGHUP: reloading")
        self.notify.reloading()  # READY=1 again once the reload is over (_systemd_and_delay)
        self.settings.reload()

    # --- processes ---

    def spawn_worker(self, pool: Pool, worker_id: int) -> WorkerChild:
        """maitred.pool.Spawner: fork a worker of `pool`."""
        assert self.fronts is not None
        generation = self.fronts.for_new_workers()  # a HUP's new workers link to the new fronts
        front = frontplan.of_worker(worker_id, pool.cfg.fronts)
        link_path = generation.link_path(front, pool.name)
        app = self.poolset.apps[pool.name]
        child = WorkerChild(
            pid=0, worker_id=worker_id, pool=pool.name, app=app.label, generation=generation.number
        )
        host = app.warmup_host
        return self.processes.spawn_worker(pool.cfg, child, link_path, self.app, self.pid, host)

    def kill(self, child: Child, signum: signal.Signals) -> None:
        """maitred.pool.Spawner: signal a child, unless it is gone already."""
        child.send(signum)

    def _sockets(self) -> list[Closable]:
        """What the master holds that a child serving no connection must close."""
        fronts = self.fronts
        links: list[Closable] = (
            [*fronts.link_listeners(), *fronts.channel_sockets(), fronts.limit_table]
            if fronts is not None
            else []
        )
        served = self.servers.sockets()
        return [*self.bound.sockets(), *links, *served, self.hold]

    # --- stop ---

    def _stopping(self) -> None:
        """From now on nothing starts: no restart, no new worker."""
        self.stopping = True
        self.delay.end()  # what a --shutdown-delay waited for begins now (or QUIT cut it)
        if self.fronts is not None:
            self.fronts.stop()
        for pool in self.pools.values():
            pool.stop()

    def stop(self) -> None:
        if self.stopping:
            return
        assert self.fronts is not None
        self.notify.stopping()  # nothing after a handover to a new master (USR2)
        self._stopping()
        self.stop_deadline = time.monotonic() + self.cfg.graceful_timeout + KILL_GRACE
        self._close_listeners()  # before the fronts close theirs: they must be the last
        fronts = self.fronts.fronts()
        log.info("stopping: %d processes", len(self.children))
        if fronts:
            for child in fronts:
                os.kill(child.pid, signal.SIGTERM)
        else:
            self.stop_workers()

    def stop_workers(self) -> None:
        assert self.fronts is not None
        self.fronts.close_links()  # worker threads must not reconnect to a dead front
        self.stop_deadline = time.monotonic() + self.cfg.graceful_timeout + KILL_GRACE
        self.processes.signal_all(signal.SIGTERM)

    def _enforce_stop(self) -> None:
        if self.stopping and self.children and time.monotonic() > self.stop_deadline:
            log.warning("graceful timeout: killing %d processes", len(self.children))
            self.processes.signal_all(signal.SIGKILL)
            self.stop_deadline = time.monotonic() + KILL_GRACE

    def _close_listeners(self) -> None:
        """Hold the listening sockets no more; remove a unix socket's path unless a new
        master serves it (USR2) or systemd's socket unit owns it."""
        self.bound.close_listeners(self.upgrade.done)

    def _cleanup(self) -> None:
        self._close_listeners()
        self.servers.close()
        if self.fronts is not None:
            for link in self.fronts.link_listeners():
                link.close()
        self.bound.remove_dir()
        runtime.remove_pidfile(self.cfg.pidfile, self.pid)

    # The signals the master handles, and the method for each.
    HANDLERS: ClassVar[dict[signal.Signals, Callable[[Arbiter], None]]] = {
        signal.SIGTERM: handle_term,
        signal.SIGINT: handle_int,
        signal.SIGQUIT: handle_quit,
        signal.SIGCHLD: handle_chld,
        signal.SIGHUP: handle_hup,
        signal.SIGTTIN: handle_ttin,
        signal.SIGTTOU: handle_ttou,
        signal.SIGUSR1: handle_usr1,
        signal.SIGUSR2: handle_usr2,
    }
