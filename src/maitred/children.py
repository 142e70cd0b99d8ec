"""The master's child processes: what it knows of each, and how it forks them.

Each kind of child has a type of its own (a front, a worker, the --reload watcher), so code
that treats them differently says so with isinstance and mypy checks what each one carries.

Forking is the one place where a process stops being the master: the child drops the master's
signal handling and its siblings' status pipes, runs its own main, and exits with that status,
never returning into the master's code.
"""

from __future__ import annotations

import contextlib
import enum
import gc
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from maitred import frontplan, heap, status
from maitred.signals import SignalQueue, reset

# Signals meant for the master only; their default action would kill or stop a child that gets
# one (a terminal hangup reaches the whole process group).
CHILD_IGNORES = (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR1, signal.SIGUSR2)


class Exit(enum.Enum):
    """Why a child exited, as the master sees it (maitred.exits classifies every exit). The
    first ones are also what the master expects when it asks a child to go (`Child.leaving`)."""

    RECYCLE = "recycled: its replacement serves"
    RELOAD = "replaced by a reload"
    SCALE = "one worker fewer"
    REMOVED = "its app left the server (--apps-dir, a HUP)"
    OLD_GENERATION = "of the fronts before a reload"
    TIMEOUT = "killed: it stopped responding"
    STOP = "the server stops"
    CRASH = "died unexpectedly"
    FAILED_IMPORT = "the app cannot be imported"
    FAILED_REPLACEMENT = "a replacement that never became ready"
    SUPERSEDED = "its replacement was on its way"
    FAILED_START = "died at its start and would only die again"


@dataclass(eq=False, kw_only=True)
class Child:
    """What the master knows of one child process; one subclass per kind of child."""

    pid: int
    status_fd: int = -1
    generation: int = 0  # the generation of fronts it belongs to, or links to (maitred.frontplan)
    started: float = field(default_factory=time.monotonic)
    last_seen: float = field(default_factory=time.monotonic)
    # Why the master asked it to go (None: it was not asked): what its exit then means.
    leaving: Exit | None = None
    reader: status.StatusReader = field(default_factory=status.StatusReader)
    # What was left unread on its status pipe when it was reaped (maitred.processes.reap).
    last_words: list[status.Message] = field(default_factory=list)

    @property
    def role(self) -> str:
        raise NotImplementedError

    def send(self, signum: signal.Signals) -> None:
        """Send a signal, unless the process is gone already."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)


@dataclass(eq=False, kw_only=True)
class FrontChild(Child):
    number: int = 0  # maitred.frontplan: 0 when it is the only front

    @property
    def role(self) -> str:
        return frontplan.name(self.number)


@dataclass(eq=False, kw_only=True)
class ReloaderChild(Child):
    generation: int = -1  # it belongs to none of the fronts' generations

    @property
    def role(self) -> str:
        return "reloader"


@dataclass(eq=False, kw_only=True)
class WorkerChild(Child):
    worker_id: int = 0
    pool: str = ""  # the name of the app pool it serves (maitred.pool)
    app: str = ""  # its app as log lines name it ("": the server's only one, maitred.apps)
    ready: bool = False
    replaces: WorkerChild | None = None  # the worker this one takes over from, once READY
    replaced_by: WorkerChild | None = None
    replace_reason: Exit = Exit.RECYCLE  # why it replaces the worker it replaces
    oldest_request: float = 0.0  # age of its oldest request in flight, from its heartbeats

    @property
    def role(self) -> str:
        return f"worker {self.worker_id} of {self.app}" if self.app else f"worker {self.worker_id}"

    @property
    def holds_place(self) -> bool:
        """Whether it counts as one of its pool's workers: not asked to go (one killed for
        its silence is restarted in its place once reaped)."""
        return self.leaving is None or self.leaving is Exit.TIMEOUT

    def unpair(self) -> None:
        """Forget a make-before-break pairing, from both ends: this worker no longer replaces
        another, nor is it being replaced."""
        if self.replaces is not None:
            self.replaces.replaced_by = None
            self.replaces = None
        if self.replaced_by is not None:
            self.replaced_by.replaces = None
            self.replaced_by = None


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

    Everything the master holds is frozen first (gc.freeze): a child shares the master's pages
    until it writes to one, and its garbage collector, walking every object it inherited, would
    write to all of them; frozen objects it never walks, so the pages of the master's modules
    (and of a preloaded app) stay shared. Freezing costs nothing (it moves lists); the master's
    own cycles made after a fork are frozen at the next one and never collected, which its
    quiet loop keeps to a few objects. The master's free heap pages go back to the system first
    (maitred.heap): a child would inherit them, and the first write of its own allocations there
    would copy them. No full collection runs before the freeze, though it would look tidy: it
    frees objects all over the master's pools, a child's own allocations then fill those holes,
    and each page they land in is copied (measured, 4 workers x 4 threads at rest: +2.2 MiB of
    PSS for the tree, every process larger). The master's cycles are few; frozen, they cost less.
    """
    handled = list(handled)
    heap.trim()
    gc.freeze()
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
