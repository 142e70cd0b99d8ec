"""What processes exist, read from /proc, so a test can prove a server left nothing behind.

A server under test runs in its own session (``start_new_session=True``), so every process it
forks carries its session id even after it is orphaned and re-parented to init. Processes are
identified by (pid, start time) so a recycled pid is never mistaken for a survivor.
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from waiting import poll

PROC = Path("/proc")
# How long processes get to vanish after their parent stopped: workers finish their
# graceful shutdown in well under this on a loaded 2-core machine.
VANISH_TIMEOUT = 10.0


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    session: int
    state: str
    start_time: int
    name: str


def read_proc(pid: int) -> ProcInfo | None:
    """The /proc/PID/stat fields we need, or None if the process is gone."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The name is in parentheses and may itself contain spaces or parentheses.
    name = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is field 3 of stat(5): state, ppid, pgrp, session, ..., starttime is field 22.
    return ProcInfo(
        pid=pid,
        ppid=int(fields[1]),
        session=int(fields[3]),
        state=fields[0],
        start_time=int(fields[19]),
        name=name,
    )


def all_procs() -> list[ProcInfo]:
    infos = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            info = read_proc(int(entry.name))
            if info is not None:
                infos.append(info)
    return infos


def children_titled(parent: int, prefix: str) -> dict[int, str]:
    """pid -> process title of `parent`'s children whose title starts with `prefix`."""
    found = {}
    for info in all_procs():
        if info.ppid == parent:
            try:
                title = (PROC / str(info.pid) / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue  # gone since the listing
            if title.startswith(prefix):
                found[info.pid] = title.rstrip("\0 ")
    return found


def is_alive(info: ProcInfo) -> bool:
    """True if this very process (not a later one with the same pid) still runs."""
    now = read_proc(info.pid)
    return now is not None and now.start_time == info.start_time and now.state != "Z"


def descendants_and_session(root: int) -> list[ProcInfo]:
    """Every live process below ``root`` (by parent links) or in the session it leads."""
    procs = [p for p in all_procs() if p.state != "Z"]
    children: dict[int, list[ProcInfo]] = {}
    for p in procs:
        children.setdefault(p.ppid, []).append(p)
    found: dict[int, ProcInfo] = {p.pid: p for p in procs if p.session == root and p.pid != root}
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            if child.pid not in found:
                found[child.pid] = child
            stack.append(child.pid)
    return list(found.values())


def wait_vanished(infos: list[ProcInfo], timeout: float = VANISH_TIMEOUT) -> list[ProcInfo]:
    """Wait until none of ``infos`` is alive; return those still alive at the deadline."""
    return poll(lambda: [p for p in infos if is_alive(p)], lambda alive: not alive, timeout)


def kill_each(infos: list[ProcInfo]) -> None:
    """SIGKILL each listed process by pid, only if it is still that same process."""
    for p in infos:
        if is_alive(p):
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGKILL)
