"""Checks run after every test on the servers it started: no leaked descriptors, no stray errors.

Descriptors. Right after a server starts, once its processes have settled (every worker has
connected its link and nothing changed for a few samples), the harness records each process's
descriptors (``/proc/PID/fd``: fd -> what it points to). After the test, once its clients are
gone, every process that is still the same one (pid and start time) must come back to that
record: no descriptor of a kind that belongs to a request (a regular file: a spooled body, a
static file; a TCP socket: a client connection) that was not there at start, and, where the
server's process population is what it was at start, no more descriptors than then (a link or
pipe left behind by a recycled child shows there). What belongs to a connection is allowed only
while connections are open: the check waits (up to :data:`QUIET_TIMEOUT`) for the server to
close what its clients closed before it calls anything a leak. Only the server's own processes
are looked at, found from its pid; a socket's kind is read from the kernel's table of TCP
sockets for the inodes these processes hold.

Errors. The server's stderr is its error log: records ``[time] [pid] [LEVEL] message``, with a
traceback's lines following the record they belong to. A record at ERROR or CRITICAL level, or
one holding a ``Traceback``, fails the test unless the test declared it, with a regular
expression that the record's text matches: ``servers.start(..., expect_errors=[...])`` for one
server, or ``@pytest.mark.expect_errors(...)`` for every server of a test.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import procs
from waiting import poll

# Settling after start: a worker imports the app, then connects its link to the front.
SETTLE_TIMEOUT = 15.0
SETTLE_SAMPLES = 2  # identical consecutive samples that make a process tree settled
SAMPLE_INTERVAL = 0.1
# After a test, how long the server gets to close what its clients closed (a front notices a
# client's FIN on its next loop turn; a loaded 2-core machine can take a while).
QUIET_TIMEOUT = 10.0
WORKER_TITLE = "maitred: worker"
MASTER_TITLE = "maitred: master"

FdTable = dict[int, str]  # fd -> readlink target
Key = tuple[int, int]  # (pid, start time): a pid that is reused is another process


@dataclass(frozen=True)
class Process:
    pid: int
    title: str
    fds: FdTable


Snapshot = dict[Key, Process]


def fd_table(pid: int) -> FdTable | None:
    """The open descriptors of `pid`, or None if it is gone."""
    fd_dir = f"/proc/{pid}/fd"
    try:
        names = os.listdir(fd_dir)
    except (FileNotFoundError, ProcessLookupError):
        return None
    table = {}
    for name in names:
        try:
            table[int(name)] = os.readlink(f"{fd_dir}/{name}")
        except OSError:
            continue  # closed since the listing
    return table


def snapshot(master: int) -> Snapshot:
    """The descriptors of the master and of every process below it or in its session."""
    infos = [procs.read_proc(master), *procs.descendants_and_session(master)]
    found: Snapshot = {}
    for info in infos:
        if info is None or info.state == "Z":
            continue
        fds = fd_table(info.pid)
        if fds is not None:
            found[(info.pid, info.start_time)] = Process(info.pid, info.name, fds)
    return found


def _settled(master: int, snap: Snapshot) -> bool:
    """Every child has taken up its role (a child just forked still bears the master's title,
    and a starved machine can leave it so for a while) and every worker has its link (a
    socket) connected."""
    children = [p for p in snap.values() if p.pid != master]
    return all(p.title != MASTER_TITLE for p in children) and all(
        any(t.startswith("socket:") for t in p.fds.values())
        for p in children
        if p.title.startswith(WORKER_TITLE)
    )


def settle(master: int, timeout: float = SETTLE_TIMEOUT) -> Snapshot:
    """A snapshot taken once the server's processes have stopped changing (or at `timeout`)."""
    deadline = time.monotonic() + timeout
    same, last = 0, snapshot(master)
    while time.monotonic() < deadline:
        time.sleep(SAMPLE_INTERVAL)
        now = snapshot(master)
        same = same + 1 if now == last and _settled(master, now) else 0
        if same >= SETTLE_SAMPLES - 1:
            return now
        last = now
    return last


def _tcp_inodes() -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            inodes.add(f"socket:[{line.split()[9]}]")
    return inodes


def _reserve(target: str) -> bool:
    """A directory: libuv keeps one open on "/" once it has met EMFILE, to shed connections
    with the next time. It stays for good and is no leak."""
    return target.startswith("/") and os.path.isdir(target)


def _per_request(target: str, tcp: set[str]) -> bool:
    """A descriptor of a kind that only a request or a connection should hold: a file (a
    spooled body, possibly deleted; a static file) or a TCP connection."""
    if target.startswith("/"):
        return not target.startswith("/dev/")
    return target in tcp


def leaks(before: Snapshot, after: Snapshot) -> list[str]:
    """What the processes of `before` hold in `after` and should not (see the module doc)."""
    tcp = _tcp_inodes()
    same_population = set(before) == set(after)
    found = []
    for key, then in before.items():
        now = after.get(key)
        if now is None:
            continue  # gone (recycled, reloaded): its successor was not there at start
        # By what they point to, not by number: a loop may dup a socket it was handed.
        new = set(now.fds.values()) - set(then.fds.values())
        new = {t for t in new if not _reserve(t)}
        held = sorted(t for t in new if _per_request(t, tcp))
        counted = sum(not _reserve(t) for t in now.fds.values())
        if held:
            found.append(f"{then.title} ({then.pid}) still holds {held}")
        elif same_population and counted > len(then.fds):
            found.append(
                f"{then.title} ({then.pid}) has {counted} descriptors, "
                f"{len(then.fds)} at start; new: {sorted(new)}"
            )
    return found


def wait_no_leaks(master: int, before: Snapshot) -> list[str]:
    """The leaks still there once the server has had QUIET_TIMEOUT to close what it should."""
    return poll(lambda: leaks(before, snapshot(master)), _none, QUIET_TIMEOUT, SAMPLE_INTERVAL)


def _none(found: list[str]) -> bool:
    return not found


# --- the error log ---

RECORD_START = re.compile(r"^\[\d{4}-\d\d-\d\d [^]]*\] \[\d+\] \[[A-Z]+\] ", re.MULTILINE)
BAD_LEVEL = re.compile(r"^\[[^]]*\] \[\d+\] \[(?:ERROR|CRITICAL)\] ")


def records(log: str) -> list[str]:
    """The log's records, each with the lines (a traceback) that follow it."""
    starts = [m.start() for m in RECORD_START.finditer(log)]
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    ends = [*starts[1:], len(log)]
    return [log[a:b] for a, b in zip(starts, ends, strict=True) if log[a:b].strip()]


def unexpected_errors(log: str, allowed: Iterable[str]) -> list[str]:
    """The records of `log` that report an error no pattern of `allowed` matches."""
    patterns = [re.compile(p) for p in allowed]
    return [
        record
        for record in records(log)
        if (BAD_LEVEL.match(record) or "Traceback" in record)
        and not any(p.search(record) for p in patterns)
    ]


def describe(errors: Sequence[str]) -> str:
    return "unexpected errors in the server's log (declare them with expect_errors):\n" + (
        "".join(errors)
    )
