"""Starting and stopping every process the benchmark runs, by pid, whatever happens.

Theory of operation: each child starts in a session (and so a process group) of its own, so
Ctrl-C in the terminal reaches only the harness, and the harness decides how its children stop.
The harness records every child it spawns in a Supervisor; leaving the Supervisor's ``with``
block (normally, on an exception, on Ctrl-C, or on SIGTERM, which we turn into an exception) stops
each child: SIGTERM to the child's pid so the server can shut down gracefully, then SIGKILL to
its process group, then SIGKILL to any descendant recorded earlier that is still alive. Children
also get SIGTERM from the kernel if the harness itself dies (PR_SET_PDEATHSIG), so even a
SIGKILLed harness leaves no server behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

# How long a server gets to stop after SIGTERM before its whole group is killed. gunicorn's own
# graceful timeout is 30 s, but an idle server stops in well under a second.
STOP_GRACE_S = 10.0
# How long to wait for a killed group to disappear before reporting it.
KILL_WAIT_S = 3.0
POLL_S = 0.05
PR_SET_PDEATHSIG = 1


def _die_with_parent(prctl: Any) -> None:
    """Runs in the child before exec: ask the kernel for SIGTERM when the harness dies."""
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


@dataclass(frozen=True)
class ProcInfo:
    """A pid with its start time, so a recycled pid is never mistaken for our process."""

    pid: int
    start_ticks: int


def proc_info(pid: int) -> ProcInfo | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # Fields after the command name (which may contain spaces) start after the last ')'.
    fields = stat[stat.rindex(b")") + 2 :].split()
    return ProcInfo(pid, int(fields[19]))


def is_alive(info: ProcInfo) -> bool:
    current = proc_info(info.pid)
    if current is None or current.start_ticks != info.start_ticks:
        return False
    try:
        with open(f"/proc/{info.pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state != b"Z"


def children_map() -> dict[int, list[int]]:
    """Parent pid -> child pids, for every process on the machine."""
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def descendants(root: int, tree: dict[int, list[int]] | None = None) -> list[int]:
    """The root and every process below it."""
    tree = children_map() if tree is None else tree
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(tree.get(pid, ()))
    return found


@dataclass
class Child:
    name: str
    popen: subprocess.Popen[bytes]
    seen: dict[int, ProcInfo] = field(default_factory=dict)
    # The file the child's stderr goes to, when the caller gave one (to quote it on failure);
    # closed when the child is stopped.
    stderr: IO[Any] | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def remember_descendants(self) -> list[int]:
        """Record the current process tree, so strays can be found after the group is gone."""
        pids = descendants(self.pid)
        for pid in pids:
            info = proc_info(pid)
            if info is not None:
                self.seen.setdefault(pid, info)
        return pids


class Supervisor:
    """Owns every process the benchmark starts; use it as a context manager."""

    def __init__(self) -> None:
        self._children: list[Child] = []
        self.leaks: list[str] = []
        # Looked up here, not in the forked child, where loading a library could deadlock.
        self._prctl = ctypes.CDLL(None, use_errno=True).prctl

    def __enter__(self) -> Supervisor:
        signal.signal(signal.SIGTERM, _raise_interrupt)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        stdout: IO[Any] | int | None = subprocess.DEVNULL,
        stderr: IO[Any] | int | None = subprocess.DEVNULL,
    ) -> Child:
        popen = subprocess.Popen(
            list(argv),
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
            # Only a prctl call runs before exec: no lock is taken, so it is safe with threads.
            preexec_fn=functools.partial(_die_with_parent, self._prctl),
        )
        child = Child(
            name, popen, stderr=None if stderr is None or isinstance(stderr, int) else stderr
        )
        self._children.append(child)
        child.remember_descendants()
        return child

    def stop(self, child: Child, grace: float = STOP_GRACE_S) -> None:
        """Stops one child and everything it started; idempotent."""
        if child not in self._children:
            return
        with _no_interrupts():
            child.remember_descendants()
            if child.popen.poll() is None:
                _signal_pid(child.pid, signal.SIGTERM)
                _wait_gone(child, grace)
            _kill_group(child.pid)
            for info in child.seen.values():
                if is_alive(info):
                    _signal_pid(info.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.popen.wait(KILL_WAIT_S)
            strays = _wait_dead(list(child.seen.values()), KILL_WAIT_S)
            if strays:
                self.leaks.append(f"{child.name}: pids {strays} still alive after SIGKILL")
            if child.stderr is not None:
                child.stderr.close()
            self._children.remove(child)

    def stop_all(self) -> None:
        # Newest first: a front (nginx) stops before the app server it proxies to.
        for child in reversed(list(self._children)):
            self.stop(child)


def wait_rusage(child: Child, deadline: float) -> tuple[int, float]:
    """Waits for a child that stops by itself; returns (exit status, its CPU seconds).

    The CPU figure (user + system, from wait4) is how we report the load generator's own share
    of this machine. A child still running at the deadline is killed: every load is bounded.
    """
    pid = child.pid
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done == pid:
            child.popen.returncode = os.waitstatus_to_exitcode(status)
            return child.popen.returncode, usage.ru_utime + usage.ru_stime
        if time.monotonic() >= deadline:
            _kill_group(pid)
            _, status, usage = os.wait4(pid, 0)
            child.popen.returncode = os.waitstatus_to_exitcode(status)
            return child.popen.returncode, usage.ru_utime + usage.ru_stime
        time.sleep(POLL_S)


def _wait_gone(child: Child, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.popen.poll() is not None and not _group_alive(child.pid):
            return
        time.sleep(POLL_S)


def _wait_dead(infos: list[ProcInfo], timeout: float) -> list[int]:
    """Waits for killed processes to be gone (SIGKILL is not instant); returns the survivors."""
    deadline = time.monotonic() + timeout
    alive = [info for info in infos if is_alive(info)]
    while alive and time.monotonic() < deadline:
        time.sleep(POLL_S)
        alive = [info for info in alive if is_alive(info)]
    return [info.pid for info in alive]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _kill_group(pgid: int) -> None:
    # The group id is the pid of the child we started (start_new_session), never a guess.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _signal_pid(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def _no_interrupts() -> Iterator[None]:
    """A second Ctrl-C must not cut a cleanup short and leave servers running."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    previous_term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, previous_term)
