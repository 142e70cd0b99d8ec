"""The master's child processes: what it knows of each, and how it forks them.

Forking is the one place where a process stops being the master: the child drops the master's
signal handling and its siblings' status pipes, runs its own main, and exits with that status,
never returning into the master's code.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from maitred import fronts, status
from maitred.signals import SignalQueue, reset

# Signals meant for the master only; their default action would kill or stop a child that gets
# one (a terminal hangup reaches the whole process group).
CHILD_IGNORES = (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR1, signal.SIGUSR2)


@dataclass(eq=False)
class Child:
    pid: int
    kind: str  # "front", "worker" or "reloader" (--reload)
    worker_id: int = 0  # a front's number (maitred.fronts: 0 when it is the only front)
    status_fd: int = -1
    generation: int = 0  # the generation of fronts it belongs to, or links to (maitred.fronts)
    replaces: Child | None = None  # the worker this one takes over from, once READY
    started: float = field(default_factory=time.monotonic)
    last_seen: float = field(default_factory=time.monotonic)
    ready: bool = False
    retiring: bool = False  # sent SIGTERM to drain; not counted as serving
    replaced_by: Child | None = None
    oldest_request: float = 0.0  # age of its oldest request in flight, from its heartbeats
    reader: status.StatusReader = field(default_factory=status.StatusReader)

    @property
    def role(self) -> str:
        if self.kind == "worker":
            return f"worker {self.worker_id}"
        return fronts.name(self.worker_id) if self.kind == "front" else self.kind

    def unpair(self) -> None:
        """Forget a make-before-break pairing, from both ends: this worker no longer replaces
        another, nor is it being replaced."""
        if self.replaces is not None:
            self.replaces.replaced_by = None
            self.replaces = None
        if self.replaced_by is not None:
            self.replaced_by.replaces = None
            self.replaced_by = None

    def send(self, signum: signal.Signals) -> None:
        """Send a signal, unless the process is gone already."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)


def exit_text(code: int) -> str:
    """How a child exited, for the log, from its exit code (negative: the signal)."""
    return f"signal {-code}" if code < 0 else f"status {code}"


def fork(
    main: Callable[[], int],
    signals: SignalQueue,
    handled: Iterable[signal.Signals],
    siblings: Iterable[int],
) -> int:
    """Fork a child that runs `main` and exits with its status; returns the child's pid.

    The master's signals are blocked across the fork until the child has dropped the master's
    handling: a signal the child got before that (the master stopping it at once, say) would
    have run the master's handler, which writes the number into the master's wakeup pipe, so
    the master would have taken its child's SIGTERM for its own. Blocked, it waits, and reaches
    the child under the child's own handling.
    """
    handled = list(handled)
    signal.pthread_sigmask(signal.SIG_BLOCK, handled)
    try:
        pid = os.fork()
    except BaseException:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, handled)
        raise
    if pid:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, handled)
        return pid
    code = 1
    try:
        signals.close()
        reset(handled)
        for signum in CHILD_IGNORES:  # each child handles what it needs itself
            signal.signal(signum, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, handled)
        for fd in siblings:
            os.close(fd)
        code = main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def memory_of(pid: int, metric: str) -> int:
    """Bytes of RSS or PSS of a process (0 when it cannot be read)."""
    label = "Rss:" if metric == "rss" else "Pss:"
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(label):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
