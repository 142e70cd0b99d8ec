"""The master process: binds the sockets, starts the front and the workers, supervises them.

Theory of operation
-------------------
The master knows processes and signals, not HTTP. It binds every listener and each front's link
socket once, then forks the fronts (maitred.fronts) and the workers, which inherit them. Signal
handlers only record (maitred.signals); one loop reads signals and the workers' status pipes
(maitred.status), reaps children, and hands what it learnt to the pool (maitred.pool), which
decides what to start, replace, retire or restart: staged start, make-before-break reloads and
recycling, crash backoff. The master does the process work those decisions call for (fork,
signal, reap).

A HUP replaces every worker, make-before-break. When it changes a setting of the fronts, it
replaces the fronts too, as a new generation (maitred.fronts.Generation) with link sockets of its
own: the new workers link to the new fronts, which start once one of those workers has imported
the app; then the old fronts stop accepting, finish their requests with the old workers, and
exit, and each one's workers are stopped after it. If no new worker can import the app, the new
generation is dropped and the old fronts serve on.

Shutdown (TERM, INT) goes fronts first: they stop accepting and finish the requests in flight,
using the workers; once every front has exited, the master closes the link listeners (so workers
cannot reconnect) and stops the workers. QUIT stops everything at once.

A stopping server refuses new clients at once (a load balancer then tries another) rather than
leave them in a listen backlog nobody will accept from. A listener is closed only when its last
holder closes it, so each front holds only its own, no worker holds any, and the master closes
its copies (and removes a unix socket's path) before it signals the fronts: each front then
takes what its backlog holds and closes (maitred.front.limits), and the front is the last.
A HUP keeps the listeners in the master for the new fronts; a new master (USR2) holds its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from setproctitle import setproctitle

from maitred import fronts, logs, reloader, runtime, sockets, status, upgrade
from maitred.appload import AppLoadError, load_app, prepare_path, split_spec
from maitred.children import Child, exit_text, fork
from maitred.config import Config, ConfigError, on_reload
from maitred.front.main import run_front
from maitred.pool import Pool
from maitred.signals import SignalQueue
from maitred.worker.main import Worker

log = logging.getLogger("maitred.error")

HANDLED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGCHLD,
    signal.SIGHUP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGUSR1,
    signal.SIGUSR2,
)
TICK = 1.0  # seconds the master sleeps when nothing happens
KILL_GRACE = 1.0  # extra seconds past a graceful timeout before SIGKILL


class Arbiter:
    def __init__(
        self,
        cfg: Config,
        reload_config: Callable[[], Config] | None = None,
        argv: list[str] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.cfg = cfg
        self.reload_config = reload_config
        self.argv = argv if argv is not None else sys.argv[1:]
        self.environ = environ if environ is not None else os.environ
        self.pid = os.getpid()
        self.children: dict[int, Child] = {}
        self.listeners: list[list[socket.socket]] = []  # per bind address (maitred.sockets)
        self.addresses: list[str] = []  # their URLs, for the "Listening at" lines
        self.link_dir = ""
        self.spool_dir = ""
        # The generations of fronts alive (maitred.fronts): the current one, the next while a
        # HUP waits for its workers, older ones while their fronts finish.
        self.generations: dict[int, fronts.Generation] = {}
        self.current: fronts.Generation | None = None
        self.next: fronts.Generation | None = None
        self.generation_count = 0
        self.app: Any = None
        self.signals: SignalQueue | None = None
        self.stopping = False
        self.stop_deadline = 0.0
        self.exit_status = 0
        self.pool = Pool(cfg, self.children, self._spawn_front, self._spawn_worker)
        self.upgrade_fd = -1  # read end of a new master's ready pipe (USR2)
        self.upgraded = False  # a new master took over our sockets
        self.env_before: dict[str, str | None] = {}  # what --env replaced, to undo on HUP

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
        prepare_path(cfg.chdir, cfg.pythonpath)
        self._set_env(cfg.env)
        if cfg.preload:
            try:
                self.app = load_app(cfg.app)
            except AppLoadError as exc:
                sys.stderr.write(exc.report())
                return 1
        # Signals are recorded from before the "Listening at" lines (printed once the first
        # worker has imported the app): a supervisor that reads one and signals at once must not
        # hit a default action.
        self.signals = SignalQueue(HANDLED)
        try:
            self._bind()
        except OSError as exc:
            log.error("cannot listen: %s", exc)
            self._cleanup()
            return 1
        try:
            self._write_pidfile()
            if cfg.reload:
                self._spawn_reloader()
            for number in fronts.numbers(cfg.fronts):
                self._spawn_front(number)
            self.pool.start()
            self._loop()
        finally:
            self._cleanup()
        return self.exit_status

    def _bind(self) -> None:
        cfg = self.cfg
        inherited = upgrade.inherited_listeners(self.environ)
        for index, text in enumerate(cfg.bind):
            address = sockets.parse_address(text)
            if index < len(inherited) and inherited[index][0].family == address.family:
                group = inherited[index]
            else:
                group = sockets.bind_group(address, cfg.backlog, cfg.fronts)
            self.listeners.append(group)
            self.addresses.append(address.url(group[0]))
        for extra in inherited[len(cfg.bind) :]:
            for sock in extra:
                sock.close()
        self.link_dir = runtime.make_dir()
        # Spooled request bodies live under the master's own directory unless --body-temp-dir
        # says otherwise, so the master can remove what a killed front left behind.
        self.spool_dir = os.path.join(self.link_dir, "spool")
        os.mkdir(self.spool_dir, 0o700)
        self.current = self._open_generation(cfg)

    def _open_generation(self, cfg: Config) -> fronts.Generation:
        number = self.generation_count
        self.generation_count += 1
        generation = fronts.Generation(number, cfg, self.link_dir, self.spool_dir)
        self.generations[number] = generation
        return generation

    def _close_generation(self, generation: fronts.Generation) -> None:
        generation.close()
        self.generations.pop(generation.number, None)

    def _write_pidfile(self) -> None:
        if self.cfg.pidfile:
            with open(self.cfg.pidfile, "w", encoding="ascii") as fh:
                fh.write(f"{self.pid}\n")

    # --- the loop ---

    def _loop(self) -> None:
        assert self.signals is not None
        while self.children or (not self.stopping and self.pool.pending):
            watched = {c.status_fd: c for c in self.children.values() if c.status_fd >= 0}
            fds = [*watched, self.upgrade_fd] if self.upgrade_fd >= 0 else list(watched)
            received, readable = self.signals.wait(self._timeout(), fds)
            for fd in readable:
                if fd == self.upgrade_fd:
                    self._upgrade_done()
                else:
                    self._read_status(watched[fd])
            for signum in received:
                self._on_signal(signum)
            self._reap()
            if not self.stopping:
                self.pool.spawn_pending()
                self.pool.check()
            self._enforce_stop()

    def _timeout(self) -> float:
        if self.pool.pending and not self.stopping:
            return max(0.0, min(TICK, min(self.pool.pending.values()) - time.monotonic()))
        return TICK

    def _on_signal(self, signum: signal.Signals) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.stop()
        elif signum == signal.SIGQUIT:
            log.info("SIGQUIT: stopping now")
            self.stopping = True
            self._close_listeners()
            self.stop_deadline = time.monotonic() + KILL_GRACE
            self._signal_all(signal.SIGQUIT)
        elif self.stopping:
            return
        elif signum == signal.SIGHUP:
            self.reload()
        elif signum == signal.SIGTTIN:
            self.pool.one_worker_more()
        elif signum == signal.SIGTTOU:
            self.pool.one_worker_less()
        elif signum == signal.SIGUSR1:
            logs.reopen()  # the master's own lines go to the new file too, this one first
            log.info("SIGUSR1: reopening log files")
            self._signal_all(signal.SIGUSR1)
        elif signum == signal.SIGUSR2:
            self._start_upgrade()

    def reload(self) -> None:
        log.info("SIGHUP: reloading")
        if self.next is not None:
            # The latest settings win, and a new worker stuck in its import cannot hold up
            # every later reload.
            log.warning("reload: dropping the new fronts that were waiting for their workers")
            self._drop_next()
        cfg = None
        if self.reload_config is not None:
            try:
                cfg, kept, new_fronts = on_reload(self.cfg, self.reload_config())
            except (ConfigError, SystemExit) as exc:
                log.error("reload: the new configuration is invalid, keeping the old: %s", exc)
                return
            if kept:
                # The master's own setup keeps running: these wait for a restart or an
                # upgrade, and keeping them here keeps every process started from now alike.
                log.warning(
                    "reload: %s change on a restart or an upgrade (USR2) only; "
                    "keeping the running values",
                    ", ".join(kept),
                )
            self._set_env(cfg.env)
            logs.set_level(cfg.log_level)
            self.cfg = cfg
            if new_fronts:
                log.info("reload: the fronts' settings changed; new fronts start with new workers")
                self.next = self._open_generation(cfg)
        if self.cfg.preload:
            log.warning(
                "reload: with --preload the app was imported by the master; "
                "send USR2 to load new code"
            )
        self.pool.reload(cfg)

    def _set_env(self, env: tuple[tuple[str, str], ...]) -> None:
        """Give the environment --env's variables (new workers inherit it); a variable that a
        reload's --env no longer sets gets back the value it had before maitred set it."""
        wanted = dict(env)
        for key in [key for key in self.env_before if key not in wanted]:
            before = self.env_before.pop(key)
            if before is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = before
        for key, value in wanted.items():
            self.env_before.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    # --- status from the workers ---

    def _read_status(self, child: Child) -> None:
        try:
            data = os.read(child.status_fd, 4096)
        except OSError:
            data = b""
        if not data:  # the worker exited; _reap takes it from here
            os.close(child.status_fd)
            child.status_fd = -1
            return
        child.last_seen = time.monotonic()
        for kind, value in child.reader.feed(data):
            if kind == status.READY:
                if self.stopping:
                    # Nothing starts now (the staged start's other workers would miss the
                    # stop and hold it up for the graceful timeout), nor says it listens.
                    continue
                next_number = self.next.number if self.next is not None else None
                if child.generation == next_number:
                    self._swap_fronts()
                if self.pool.ready(child):  # the first worker ever: the app imports
                    for url in self.addresses:  # said only now that requests can be served
                        log.info("Listening at: %s (%d)", url, self.pid)
                    upgrade.notify_old_master(self.environ)
            elif kind == status.HEARTBEAT:
                child.oldest_request = value
            elif kind in (status.RECYCLE, status.STUCK):
                self.pool.replace(child, "recycling" if kind == status.RECYCLE else "stuck request")

    # --- processes ---

    def _reap(self) -> None:
        while True:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is not None:
                if child.status_fd >= 0:
                    os.close(child.status_fd)
                    child.status_fd = -1
                self._exited(child, os.waitstatus_to_exitcode(wait_status))

    def _exited(self, child: Child, code: int) -> None:
        if self.stopping:
            log.debug("%s (pid %d) exited with %s", child.role, child.pid, exit_text(code))
            if child.kind == "front" and not any(c.kind == "front" for c in self.children.values()):
                self._stop_workers()
            return
        if child.kind == reloader.KIND:
            if reloader.restarts(child, code):
                self._spawn_reloader()
            return
        generation = self.generations.get(child.generation)
        if child.kind == "front" and generation is not None:
            # Bodies the dead front was holding: nobody else will remove them.
            generation.empty_spool(child.worker_id)
        if generation is not self.current and generation is not self.next:
            log.info("%s (pid %d) of the settings before the reload is done", child.role, child.pid)
            if child.kind == "front" and generation is not None:
                self._front_gone(generation, child.worker_id)
            return
        if self.pool.exited(child, code):  # the app cannot be imported
            self.exit_status = 1
            self.stop()
        elif self.next is not None and generation is self.next and not self._of(self.next):
            log.error("reload: no new worker could start; the fronts keep their settings")
            self._drop_next()

    def _fork(self, main: Callable[[], int]) -> int:
        assert self.signals is not None
        siblings = [c.status_fd for c in self.children.values() if c.status_fd >= 0]
        return fork(main, self.signals, HANDLED, siblings)

    def _spawn_front(self, number: int) -> None:
        generation = self.current
        assert generation is not None
        cfg = fronts.front_config(generation.cfg, number, generation.spool_dir(number))
        link_listener = generation.links[number]
        listeners = [
            sock
            for group in self.listeners
            for sock in fronts.listeners_of(number, cfg.fronts, group)
        ]
        read_fd, write_fd = os.pipe()

        def main() -> int:
            os.close(read_fd)
            for sock in self._link_listeners():
                if sock is not link_listener:
                    sock.close()  # another generation's: held here, it would outlive that one
            for sock in self._all_listeners():
                if sock not in listeners:
                    sock.close()  # another front's: held here, it would outlive that front
            return run_front(cfg, listeners, link_listener, self.pid, fronts.name(number), write_fd)

        pid = self._fork(main)
        os.close(write_fd)
        self.children[pid] = Child(pid, "front", number, read_fd, generation=generation.number)

    def _spawn_worker(self, worker_id: int) -> Child:
        read_fd, write_fd = os.pipe()
        cfg, app = self.cfg, self.app
        generation = self.next or self.current  # a HUP's new workers link to the new fronts
        assert generation is not None
        link_path = generation.link_path(fronts.of_worker(worker_id, cfg.fronts))

        def main() -> int:
            os.close(read_fd)
            self._close_sockets()
            return Worker(cfg, worker_id, link_path, app, write_fd, self.pid).run()

        pid = self._fork(main)
        os.close(write_fd)
        child = Child(pid, "worker", worker_id, read_fd, generation=generation.number)
        self.children[pid] = child
        return child

    def _spawn_reloader(self) -> None:
        """--reload: the file watcher runs in a child (maitred.reloader says why)."""
        directory = reloader.app_directory(split_spec(self.cfg.app)[0])
        pid = reloader.spawn(self._fork, directory, self._close_sockets)
        self.children[pid] = Child(pid, reloader.KIND, generation=reloader.NO_GENERATION)

    def _close_sockets(self) -> None:
        """In a child that serves no connection: a child holding the listeners or the link
        sockets would keep them connectable after the master and the fronts are gone."""
        for sock in (*self._all_listeners(), *self._link_listeners()):
            sock.close()

    # --- a HUP that replaces the fronts ---

    def _of(self, generation: fronts.Generation, kind: str = "") -> list[Child]:
        """The children of a generation (of one kind)."""
        return [
            c
            for c in self.children.values()
            if c.generation == generation.number and kind in ("", c.kind)
        ]

    def _swap_fronts(self) -> None:
        """A worker of the next generation imported the app: its fronts start, and the
        current ones stop accepting and finish their requests, with their own workers."""
        old, new = self.current, self.next
        assert old is not None and new is not None
        self.current, self.next = new, None
        for child in self._of(old, "worker"):
            # Not the pool's any more: they leave with their front (see _front_gone).
            child.retiring = True
            child.unpair()
        for key in [key for key in self.pool.pending if key[0] == "front"]:
            del self.pool.pending[key]  # a crashed old front: the new one takes its place
        for number in fronts.numbers(self.cfg.fronts):
            self._spawn_front(number)
        running = {child.worker_id: child for child in self._of(old, "front")}
        for number in fronts.numbers(old.cfg.fronts):
            if number in running:
                running[number].send(signal.SIGTERM)
            else:  # it had died: nothing left to finish
                self._front_gone(old, number)
        log.info("reload: new fronts serve; the old ones finish their requests")

    def _front_gone(self, generation: fronts.Generation, number: int) -> None:
        """A front of an old generation finished: its workers go too."""
        generation.close_link(number)
        for child in self._of(generation, "worker"):
            if fronts.of_worker(child.worker_id, generation.cfg.fronts) == number:
                child.send(signal.SIGTERM)
        if not self._of(generation, "front"):
            self._close_generation(generation)

    def _drop_next(self) -> None:
        """The next generation will not serve: its workers go, and the fronts keep running
        with the settings they have (the workers they replace serve on)."""
        assert self.next is not None and self.current is not None
        for child in self._of(self.next, "worker"):
            child.unpair()  # the worker it was to replace serves on
            self.pool.retire(child)
        self._close_generation(self.next)
        self.next = None
        self.cfg = self.pool.cfg = self.cfg.with_fronts_of(self.current.cfg)

    # --- upgrade (USR2) ---

    def _start_upgrade(self) -> None:
        if self.upgrade_fd >= 0:
            log.warning("SIGUSR2: an upgrade is under way already")
            return
        log.info("SIGUSR2: starting a new master")
        pid, self.upgrade_fd = upgrade.start_new_master(self.listeners, self.argv)
        log.info("new master started (pid %d)", pid)

    def _upgrade_done(self) -> None:
        said = os.read(self.upgrade_fd, 1)
        os.close(self.upgrade_fd)
        self.upgrade_fd = -1
        if said:
            log.info("the new master serves; stopping this one")
            self.upgraded = True
            self.stop()
        else:
            log.error("the new master failed to start; this one keeps serving")

    # --- stop ---

    def stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.pool.pending.clear()
        self.stop_deadline = time.monotonic() + self.cfg.graceful_timeout + KILL_GRACE
        self._close_listeners()  # before the fronts close theirs: they must be the last
        fronts = [c for c in self.children.values() if c.kind == "front"]
        log.info("stopping: %d processes", len(self.children))
        if fronts:
            for child in fronts:
                os.kill(child.pid, signal.SIGTERM)
        else:
            self._stop_workers()

    def _stop_workers(self) -> None:
        for generation in self.generations.values():
            generation.close_links()  # worker threads must not reconnect to a dead front
        self.stop_deadline = time.monotonic() + self.cfg.graceful_timeout + KILL_GRACE
        self._signal_all(signal.SIGTERM)

    def _enforce_stop(self) -> None:
        if self.stopping and self.children and time.monotonic() > self.stop_deadline:
            log.warning("graceful timeout: killing %d processes", len(self.children))
            self._signal_all(signal.SIGKILL)
            self.stop_deadline = time.monotonic() + KILL_GRACE

    def _signal_all(self, signum: signal.Signals) -> None:
        for child in self.children.values():
            child.send(signum)

    def _all_listeners(self) -> list[socket.socket]:
        return [sock for group in self.listeners for sock in group]

    def _link_listeners(self) -> list[socket.socket]:
        return [sock for g in self.generations.values() for sock in g.links.values()]

    def _close_listeners(self) -> None:
        """Hold the listening sockets no more; remove a unix socket's path unless a new
        master serves it (USR2)."""
        for sock in self._all_listeners():
            if sock.family == socket.AF_UNIX and not self.upgraded:
                path = sock.getsockname()
                if isinstance(path, str) and path and os.path.exists(path):
                    os.unlink(path)
            sock.close()
        self.listeners = []

    def _cleanup(self) -> None:
        self._close_listeners()
        for link in self._link_listeners():
            link.close()
        if self.link_dir:
            shutil.rmtree(self.link_dir, ignore_errors=True)
        if self.cfg.pidfile:
            with contextlib.suppress(OSError):
                with open(self.cfg.pidfile, encoding="ascii") as fh:
                    mine = fh.read().strip() == str(self.pid)
                if mine:  # after an upgrade the file names the new master
                    os.unlink(self.cfg.pidfile)
