"""The master's table of child processes: forking, signalling and reaping them, and their pipes.

Theory of operation
-------------------
Every child the master forks (fronts, workers, the --reload watcher) is in one table, by pid,
with a record of its kind (maitred.children). The master's loop waits on its signals and on the
children's status pipes at once (`wait`), reads what a child says (`read_status`), and reaps
every child that exited (`reap`) to hand the exit to maitred.exits.classify. Forking goes
through `fork` only: signals blocked across it, and the child drops the master's signal
handling and its siblings' pipes (maitred.children.fork).

A child that serves no connection (a worker, the reloader) closes the listeners and the link
sockets first thing (`closing` names them): holding them, it would keep them connectable after
the master and the fronts are gone.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

from maitred import reloader
from maitred.appload import split_spec
from maitred.apps import App
from maitred.children import Child, ReloaderChild, WorkerChild, fork
from maitred.config import Config
from maitred.signals import SignalQueue
from maitred.status import Message
from maitred.worker.main import Worker

STATUS_READ = 4096  # bytes read from a status pipe at once
# A pause of the master's loop longer than this (it wakes every second) means the master did
# not run: its children's silence over that time is not held against them.
MASTER_STALL = 5.0


class Closable(Protocol):
    def close(self) -> None: ...


class Processes:
    """The children of the master, by pid."""

    def __init__(
        self,
        handled: Iterable[signal.Signals],
        closing: Callable[[], Iterable[Closable]],
    ) -> None:
        self.children: dict[int, Child] = {}
        self._handled = tuple(handled)
        self._closing = closing
        self._signals: SignalQueue | None = None
        self._last_check = time.monotonic()

    def record_signals(self) -> None:
        """From now on the handled signals are recorded for `wait` (maitred.signals)."""
        self._signals = SignalQueue(self._handled)

    def wait(
        self, timeout: float, extra: Iterable[int] = ()
    ) -> tuple[list[signal.Signals], list[Child], list[int]]:
        """Wait up to `timeout` for a signal, a child's status pipe or one of `extra`: (the
        signals received, the children with something to read, the `extra` fds readable)."""
        assert self._signals is not None
        watched = {c.status_fd: c for c in self.children.values() if c.status_fd >= 0}
        received, readable = self._signals.wait(timeout, [*watched, *extra])
        talking = [watched[fd] for fd in readable if fd in watched]
        return received, talking, [fd for fd in readable if fd not in watched]

    def read_status(self, child: Child) -> list[Message]:
        """What a child said on its status pipe; at end of file (it exited) the pipe is closed
        and `reap` takes it from there."""
        try:
            data = os.read(child.status_fd, STATUS_READ)
        except OSError:
            data = b""
        if not data:
            os.close(child.status_fd)
            child.status_fd = -1
            return []
        return child.reader.feed(data)

    def reap(self) -> Iterator[tuple[Child, int]]:
        """The children that exited, each with its exit code (negative: the signal), one at a
        time: each is reaped only once the one before has been dealt with, so the table never
        lacks a child that is still to be handled (the last front of a generation, say)."""
        while True:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is not None:
                while child.status_fd >= 0:  # what it said last (a front's last counts)
                    os.set_blocking(child.status_fd, False)  # at its end: never wait
                    child.last_words.extend(self.read_status(child))
                yield child, os.waitstatus_to_exitcode(wait_status)

    def forgive_stall(self, now: float) -> None:
        """Before the children's liveness is checked (once per turn of the loop): if the master
        itself did not run for a while (the machine slept, or it was stopped), the silence was
        its own, not its children's."""
        if now - self._last_check > MASTER_STALL:
            for child in self.children.values():
                child.last_seen = now
        self._last_check = now

    def fork(self, main: Callable[[], int]) -> int:
        """Fork a child that runs `main`; its pid (the caller records the child)."""
        assert self._signals is not None
        siblings = [c.status_fd for c in self.children.values() if c.status_fd >= 0]
        return fork(main, self._signals, self._handled, siblings)

    def spawn_worker(
        self, cfg: Config, child: WorkerChild, link_path: str, app: Any, master: int, host: str
    ) -> WorkerChild:
        """Fork the worker `child` describes (its pid and status pipe are filled in here);
        `host` is the Host of its warm-up requests (--warmup)."""
        read_fd, write_fd = os.pipe()
        worker_id = child.worker_id

        def main() -> int:
            os.close(read_fd)
            self.close_sockets()
            worker = Worker(cfg, worker_id, link_path, app, write_fd, master, child.app, host)
            return worker.run()

        child.pid = self.fork(main)
        os.close(write_fd)
        child.status_fd = read_fd
        self.children[child.pid] = child
        return child

    def spawn_reloader(self, found: Sequence[App]) -> None:
        """--reload: the file watcher runs in a child (maitred.reloader says why). It watches
        the directory of the one app's package, or each app's directory (its chdir)."""
        if len(found) == 1 and found[0].implicit:
            directories = [reloader.app_directory(split_spec(found[0].cfg.app)[0])]
        else:
            directories = sorted({app.cfg.chdir for app in found})
        pid = reloader.spawn(self.fork, directories, self.close_sockets)
        self.children[pid] = ReloaderChild(pid=pid)

    def close_sockets(self) -> None:
        """In a child that serves no connection: drop the listeners, the link sockets and
        the fronts' shared memory (an app has no business writing the limits' table)."""
        for sock in self._closing():
            sock.close()

    def signal_all(self, signum: signal.Signals) -> None:
        for child in self.children.values():
            child.send(signum)
