"""The master process: binds the sockets, starts the front and the workers, watches them.

Theory of operation
-------------------
The master knows processes and signals, not HTTP. It binds every listener and the link socket
once, then forks the front and the workers, which inherit them. Signal handlers only record
(maitred.signals); one loop reads what happened, reaps children, and decides.

Start-up is staged: worker 1 imports the app first; the others start once it reports ready on
its pipe. An app that cannot be imported thus prints one traceback, and the master stops with
status 1 instead of respawning it forever.

Shutdown (SIGTERM, SIGINT) goes front first: the front stops accepting and finishes the requests
in flight, using the workers; once it has exited, the master closes its link listener (so worker
threads cannot reconnect) and stops the workers. SIGQUIT stops everything at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from setproctitle import setproctitle

from maitred import sockets
from maitred.appload import load_app, prepare_path
from maitred.config import Config
from maitred.front.main import run_front
from maitred.signals import SignalQueue, reset
from maitred.worker.main import APP_LOAD_ERROR, READY, Worker

log = logging.getLogger("maitred.error")

HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGCHLD)
TICK = 1.0  # seconds the master sleeps when nothing happens
KILL_GRACE = 1.0  # extra seconds past a graceful timeout before SIGKILL
# A process that dies this soon after start counts as a crash loop and is respawned with backoff.
QUICK_DEATH = 5.0
MAX_BACKOFF = 30.0


@dataclass
class Child:
    pid: int
    kind: str  # "front" or "worker"
    worker_id: int = 0
    ready_fd: int = -1
    started: float = field(default_factory=time.monotonic)


class Arbiter:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.pid = os.getpid()
        self.children: dict[int, Child] = {}
        self.listeners: list[socket.socket] = []
        self.link_dir = ""
        self.link_listener: socket.socket | None = None
        self.app: Any = None
        self.signals: SignalQueue | None = None
        self.ever_ready = False
        self.stopping = False
        self.stop_deadline = 0.0
        self.exit_status = 0
        self.failures: dict[str, int] = {}  # consecutive quick deaths per process role
        self.pending: dict[str, float] = {}  # role -> monotonic time to (re)spawn it

    # --- start ---

    def run(self) -> int:
        setproctitle("maitred: master")
        cfg = self.cfg
        prepare_path(cfg.chdir, cfg.pythonpath)
        for key, value in cfg.env:
            os.environ[key] = value
        if cfg.preload:
            try:
                self.app = load_app(cfg.app)
            except BaseException:
                traceback.print_exc()
                log.error("the app failed to load; stopping")
                return 1
        try:
            self._bind()
        except OSError as exc:
            log.error("cannot listen: %s", exc)
            self._cleanup()
            return 1
        self.signals = SignalQueue(HANDLED)
        try:
            self._spawn_front()
            self._spawn_worker(1)
            self._loop()
        finally:
            self._cleanup()
        return self.exit_status

    def _bind(self) -> None:
        cfg = self.cfg
        for text in cfg.bind:
            address = sockets.parse_address(text)
            sock = sockets.bind(address, cfg.backlog)
            self.listeners.append(sock)
            log.info("Listening at: %s (%d)", address.url(sock), self.pid)
        self.link_dir = tempfile.mkdtemp(prefix="maitred-")
        path = os.path.join(self.link_dir, "link.sock")
        self.link_listener = sockets.bind(sockets.Address(socket.AF_UNIX, "", 0, path), cfg.backlog)

    # --- the loop ---

    def _loop(self) -> None:
        assert self.signals is not None
        while self.children or (not self.stopping and self.pending):
            ready_fds = {c.ready_fd: c for c in self.children.values() if c.ready_fd >= 0}
            received, readable = self.signals.wait(self._timeout(), ready_fds)
            for fd in readable:
                self._worker_ready(ready_fds[fd])
            for signum in received:
                self._on_signal(signum)
            self._reap()
            self._spawn_pending()
            self._enforce_stop()

    def _timeout(self) -> float:
        if self.pending and not self.stopping:
            return max(0.0, min(self.pending.values()) - time.monotonic())
        return TICK

    def _on_signal(self, signum: signal.Signals) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.stop()
        elif signum == signal.SIGQUIT:
            log.info("SIGQUIT: stopping now")
            self.stopping = True
            self._signal_all(signal.SIGQUIT)

    def _worker_ready(self, child: Child) -> None:
        try:
            said = os.read(child.ready_fd, 1)
        finally:
            os.close(child.ready_fd)
            child.ready_fd = -1
        if said != READY:
            return  # end of file: the worker died before it was ready; _reap handles it
        if not self.ever_ready:
            self.ever_ready = True
            for worker_id in range(2, self.cfg.workers + 1):
                self._spawn_worker(worker_id)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is None:
                continue
            if child.ready_fd >= 0:
                os.close(child.ready_fd)
            self._exited(child, os.waitstatus_to_exitcode(status))

    def _exited(self, child: Child, code: int) -> None:
        role = "front" if child.kind == "front" else f"worker {child.worker_id}"
        if self.stopping:
            log.debug("%s (pid %d) exited with %d", role, child.pid, code)
            if child.kind == "front":
                self._stop_workers()
            return
        if child.kind == "worker" and code == APP_LOAD_ERROR and not self.ever_ready:
            log.error("the app failed to load (traceback above); stopping")
            self.exit_status = 1
            self.stop()
            return
        how = f"signal {-code}" if code < 0 else f"status {code}"
        log.error("%s (pid %d) exited with %s; restarting it", role, child.pid, how)
        quick = time.monotonic() - child.started < QUICK_DEATH
        failures = self.failures[role] = self.failures.get(role, 0) + 1 if quick else 0
        delay = min(MAX_BACKOFF, 0.1 * 2**failures) if failures > 1 else 0.0
        if delay:
            log.warning("%s keeps dying; next start in %.1f s", role, delay)
        self.pending[role] = time.monotonic() + delay

    def _spawn_pending(self) -> None:
        now = time.monotonic()
        for role, when in list(self.pending.items()):
            if when <= now and not self.stopping:
                del self.pending[role]
                if role == "front":
                    self._spawn_front()
                else:
                    self._spawn_worker(int(role.split()[1]))

    # --- processes ---

    def _fork(self, main: Callable[[], int]) -> int:
        pid = os.fork()
        if pid:
            return pid
        code = 1
        try:
            assert self.signals is not None
            self.signals.close()
            reset(HANDLED)
            for child in self.children.values():
                if child.ready_fd >= 0:
                    os.close(child.ready_fd)
            code = main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def _spawn_front(self) -> None:
        assert self.link_listener is not None
        listeners, link_listener = self.listeners, self.link_listener
        pid = self._fork(lambda: run_front(self.cfg, listeners, link_listener))
        self.children[pid] = Child(pid, "front")

    def _spawn_worker(self, worker_id: int) -> None:
        read_fd, write_fd = os.pipe()
        link_path = os.path.join(self.link_dir, "link.sock")

        def main() -> int:
            os.close(read_fd)
            for sock in (*self.listeners, self.link_listener):
                if sock is not None:
                    sock.close()  # a worker holding these would keep dead links connectable
            worker = Worker(self.cfg, worker_id, link_path, self.app, write_fd, self.pid)
            return worker.run()

        pid = self._fork(main)
        os.close(write_fd)
        self.children[pid] = Child(pid, "worker", worker_id, read_fd)

    # --- stop ---

    def stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.pending.clear()
        self.stop_deadline = time.monotonic() + self.cfg.graceful_timeout + KILL_GRACE
        fronts = [c for c in self.children.values() if c.kind == "front"]
        log.info("stopping: %d processes", len(self.children))
        if fronts:
            for child in fronts:
                os.kill(child.pid, signal.SIGTERM)
        else:
            self._stop_workers()

    def _stop_workers(self) -> None:
        if self.link_listener is not None:
            self.link_listener.close()  # worker threads must not reconnect to a dead front
            self.link_listener = None
        self.stop_deadline = time.monotonic() + self.cfg.graceful_timeout + KILL_GRACE
        self._signal_all(signal.SIGTERM)

    def _enforce_stop(self) -> None:
        if self.stopping and self.children and time.monotonic() > self.stop_deadline:
            log.warning("graceful timeout: killing %d processes", len(self.children))
            self._signal_all(signal.SIGKILL)
            self.stop_deadline = time.monotonic() + KILL_GRACE

    def _signal_all(self, signum: signal.Signals) -> None:
        for child in self.children.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signum)

    def _cleanup(self) -> None:
        for sock in self.listeners:
            if sock.family == socket.AF_UNIX:
                path = sock.getsockname()
                if isinstance(path, str) and path and os.path.exists(path):
                    os.unlink(path)
            sock.close()
        if self.link_listener is not None:
            self.link_listener.close()
        if self.link_dir:
            shutil.rmtree(self.link_dir, ignore_errors=True)
