"""The master's files: its runtime directory and its pidfile, and what a killed master left.

Theory of operation
-------------------
The master keeps its link sockets and the request bodies its fronts spool in a runtime
directory under the temp directory, ``maitred-<random>``, whose file ``master`` holds the pid
and the start time (clock ticks since boot, from /proc) of its master: the two name one process
while the machine runs (a pid alone is reused). The name stays short because the link sockets'
paths must fit in a unix socket address (108 bytes). A master that stops removes its directory;
one killed with SIGKILL cannot, so a master that starts removes the directories of masters that
no longer run, one log line each. A directory whose master still runs, one of another user, and
one that does not say whose it is (another program's, an older maitred's, one just being made)
are left alone.

A pidfile that names a process which is no longer a maitred master is stale: it is
overwritten, with a log line. One that names a live master is refused, since two servers would
take the file from each other, unless that master is this one's parent: it started this one
with USR2 and hands over to it. The pidfile is replaced by a rename, never rewritten in
place, so a reader sees the old pid or the new one, whole.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator

log = logging.getLogger("maitred.error")

PREFIX = "maitred-"
OWNER_FILE = "master"  # in the runtime directory: "<pid> <start time>\n" of its master
OWNER = re.compile(r"(\d+) (\d+)\n")
OWNER_SIZE = 64  # more than any owner file holds
MASTER_TITLE = "maitred: master"  # the master's process title
# Fields of /proc/PID/stat, counted after the ")" that closes the name.
STATE_FIELD = 0
START_TIME_FIELD = 19
PIDFILE_MODE = 0o644  # readable by all, as pidfiles are; the umask may take more away
ZOMBIE = "Z"


class PidfileInUse(Exception):
    """The pidfile names a live maitred master: this one must not start."""


def start_time(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot), or None if it is not running (or
    is a zombie: killed, not yet reaped)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            stat = fh.read()
    except OSError:
        return None
    # The name, in parentheses, may hold spaces and parentheses itself.
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[STATE_FIELD] == ZOMBIE else int(fields[START_TIME_FIELD])


def make_dir(where: str | None = None) -> str:
    """Create this master's runtime directory (mode 0700) in `where` (the temp directory by
    default) and return its path."""
    path = tempfile.mkdtemp(prefix=PREFIX, dir=where)
    pid = os.getpid()
    with open(os.path.join(path, OWNER_FILE), "w", encoding="ascii") as fh:
        fh.write(f"{pid} {start_time(pid)}\n")
    return path


def remove_stale_dirs(where: str | None = None) -> list[str]:
    """Remove the runtime directories of masters that no longer run; returns their paths."""
    removed = []
    for path, pid, running in _own_dirs(where):
        if running:
            continue
        shutil.rmtree(path, ignore_errors=True)
        log.info("removed the runtime directory of pid %d, gone: %s", pid, path)
        removed.append(path)
    return removed


def running_dirs(where: str | None = None) -> dict[int, str]:
    """The runtime directories of this user's masters that run, by the master's pid."""
    return {pid: path for path, pid, running in _own_dirs(where) if running}


def _own_dirs(where: str | None) -> Iterator[tuple[str, int, bool]]:
    """This user's runtime directories that say whose they are: (path, the master's pid,
    whether that master runs)."""
    uid = os.getuid()
    with os.scandir(where or tempfile.gettempdir()) as entries:
        for entry in entries:
            if not entry.name.startswith(PREFIX) or not entry.is_dir(follow_symlinks=False):
                continue
            try:
                owner = entry.stat(follow_symlinks=False).st_uid
            except FileNotFoundError:
                continue  # its master removed it since the listing
            if owner != uid:
                continue  # another user's
            match = OWNER.fullmatch(_read(os.path.join(entry.path, OWNER_FILE)))
            if match is None:
                continue  # whose it is, it does not say
            pid, started = int(match[1]), int(match[2])
            yield entry.path, pid, start_time(pid) == started


def _read(path: str) -> str:
    """The start of a small text file, or "" if it cannot be read."""
    with contextlib.suppress(OSError), open(path, encoding="ascii", errors="replace") as fh:
        return fh.read(OWNER_SIZE)
    return ""


def check_pidfile(path: str) -> None:
    """Before a master starts with --pidfile `path`: raise PidfileInUse if it names a live
    master (not this one's parent); say so if it is stale."""
    if not path:
        return
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            text = fh.read().strip()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise PidfileInUse(f"cannot read the pidfile {path}: {exc}") from None
    pid = int(text) if text.isdigit() else 0
    if pid and pid not in (os.getpid(), os.getppid()) and _is_master(pid):
        raise PidfileInUse(f"the pidfile {path} names pid {pid}, a maitred master that runs")
    if pid != os.getppid():
        log.info("the pidfile %s named %r, not a maitred master now: overwriting it", path, text)


def _is_master(pid: int) -> bool:
    title = b""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as fh:
        title = fh.read()
    return title.startswith(MASTER_TITLE.encode())


def write_pidfile(path: str, pid: int) -> None:
    """Write `pid` to the pidfile at `path` ("" asks for none).

    A reader (systemd, a ctl command, a second server's check) must never see the file empty
    or half written, as it could between a truncation and the write: the pid goes to a
    temporary file in the same directory, which then replaces the pidfile in one rename. The
    file gets the mode a plain create would give it (PIDFILE_MODE less the umask)."""
    if not path:
        return
    temp = f"{path}.{pid}.tmp"  # our pid in the name: no other master writes this one
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temp)  # left by a killed master whose pid this one now has
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PIDFILE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(f"{pid}\n")
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def remove_pidfile(path: str, pid: int) -> None:
    """Remove the pidfile if it still names `pid` (after an upgrade it names the new master)."""
    if not path:
        return
    with contextlib.suppress(OSError):
        with open(path, encoding="ascii") as fh:
            mine = fh.read().strip() == str(pid)
        if mine:
            os.unlink(path)


class Environment:
    """The variables --env sets in the master's environment, which new children inherit."""

    def __init__(self) -> None:
        self._before: dict[str, str | None] = {}  # what --env replaced, to undo on HUP

    def set(self, env: tuple[tuple[str, str], ...]) -> None:
        """Set `env`'s variables; a variable that a reload's --env no longer sets gets back the
        value it had before maitred set it."""
        wanted = dict(env)
        for key in [key for key in self._before if key not in wanted]:
            before = self._before.pop(key)
            if before is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = before
        for key, value in wanted.items():
            self._before.setdefault(key, os.environ.get(key))
            os.environ[key] = value
