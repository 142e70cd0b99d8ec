"""--reload: a child process watches the apps' source and asks the master for a reload.

Theory of operation
-------------------
The watcher (watchfiles) runs threads of its own, and a thread of the master is a hazard: the
master forks the front and the workers, and a fork that catches another thread holding a lock
(the import lock, a logging handler's) gives the child a lock nobody will ever release. A Django
worker that then imports at its first request hangs for good. So the master never watches
files itself: it forks a reloader child for it, as it forks the front and the workers, while it
has no thread but its own; the reloader never forks.

The master waits (up to WATCHING_TIMEOUT) until the reloader watches before it starts the
front and the workers: a file saved after the first response is one the reloader sees.

On a change the reloader logs the names and sends the master SIGHUP, so a --reload is the same
as an operator's HUP (a change that breaks the import keeps the old workers serving). It stops
on SIGTERM, SIGINT or SIGQUIT, and when it finds the master gone; it looks every WATCH_STEP,
and reopens the error log then after a USR1. The master restarts a reloader that dies after it
has run a while; one that dies right after start (maitred.exits.QUICK_DEATH) cannot watch (an
inotify limit, its directory gone) and would only die again, so --reload is then off, and the
log says so.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import select
import signal
import sys
import threading
from collections.abc import Callable, Sequence

from maitred import logs

log = logging.getLogger("maitred.error")

# How often the reloader wakes to look whether the master is still there (milliseconds); its
# first wake-up also tells that it watches, so the master's start waits about this long.
WATCH_STEP_MS = 200
# How long the master's start waits for the reloader to watch, at most (seconds).
WATCHING_TIMEOUT = 5.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


def app_directory(module: str) -> str:
    """The directory holding the app's top-level package or module."""
    top = module.partition(".")[0]
    for entry in sys.path:
        base = os.path.join(entry or ".", top)
        if os.path.isdir(base) or os.path.isfile(base + ".py"):
            return os.path.abspath(entry or ".")
    spec = importlib.util.find_spec(top)
    origin = spec.origin if spec is not None else None
    return os.path.dirname(os.path.abspath(origin)) if origin else os.getcwd()


def spawn(
    fork: Callable[[Callable[[], int]], int],
    directories: Sequence[str],
    close: Callable[[], None],
) -> int:
    """Fork the reloader (`close` drops what the master holds that it must not) and wait until
    it watches; returns its pid."""
    master_pid = os.getpid()
    read_fd, write_fd = os.pipe()

    def main() -> int:
        os.close(read_fd)
        close()
        return run(directories, master_pid, write_fd)

    pid = fork(main)
    os.close(write_fd)
    try:
        # A byte when it watches; end of file if it died first (its exit says the rest).
        if not select.select([read_fd], [], [], WATCHING_TIMEOUT)[0]:
            log.warning("reload: the reloader does not watch yet; starting without waiting")
    finally:
        os.close(read_fd)
    return pid


def run(directories: Sequence[str], master_pid: int, watching_fd: int) -> int:
    """The reloader child's main: watch `directories` (the apps') until stopped or orphaned;
    write a byte on `watching_fd` once it watches."""
    from setproctitle import setproctitle
    from watchfiles import PythonFilter, watch

    setproctitle("maitred: reloader")
    stop = threading.Event()  # no thread: watch() polls it between its steps (50 ms)
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda signum, frame: stop.set())
    reopen = threading.Event()  # USR1, done in the loop: never inside a logging call
    signal.signal(signal.SIGUSR1, lambda signum, frame: reopen.set())
    # With a timeout, watch() yields an empty set now and then: the moment to look at the
    # master. It watches from its first yield on.
    changes_seen = watch(
        *directories,
        watch_filter=PythonFilter(),
        stop_event=stop,
        rust_timeout=WATCH_STEP_MS,
        yield_on_timeout=True,
    )
    for changes in changes_seen:
        if watching_fd >= 0:
            log.info("reload: watching %s", ", ".join(directories))
            os.write(watching_fd, b"W")
            os.close(watching_fd)
            watching_fd = -1
        if os.getppid() != master_pid:
            return 0  # the master is gone; never signal whoever has its pid now
        if reopen.is_set():
            reopen.clear()
            logs.reopen()
        if changes:
            names = sorted({_shown(path, directories) for _, path in changes})
            log.info("reload: %s changed", ", ".join(names))
            os.kill(master_pid, signal.SIGHUP)
    return 0


def _shown(path: str, directories: Sequence[str]) -> str:
    """A changed file's name as the log shows it: relative to the watched directory."""
    return min((os.path.relpath(path, d) for d in directories), key=len)
