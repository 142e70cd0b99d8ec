"""What the master keeps on disk: its error log after a rotation, its runtime directory and its
pidfile, and what a master killed with SIGKILL left of them for the next one to clear.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import procs
from harness import APPS_DIR, ServerFactory, run_cli, spawn

WAIT = 15.0
POLL = 0.05


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(POLL)


def wait_logged(path: Path, pattern: str) -> re.Match[str] | None:
    """The first match of `pattern` in the file at `path`, waiting up to WAIT for it."""
    deadline = time.monotonic() + WAIT
    while True:
        match = re.search(pattern, path.read_text() if path.exists() else "")
        if match or time.monotonic() > deadline:
            return match
        time.sleep(POLL)


def test_usr1_moves_the_masters_own_lines_to_the_new_error_log(tmp_path: Path) -> None:
    error_log, rotated = tmp_path / "error.log", tmp_path / "error.log.1"
    argv = ["-b", "127.0.0.1:0", "--pythonpath", str(APPS_DIR), "-w", "1"]
    spawned = spawn([*argv, "--error-logfile", str(error_log), "hello:application"], APPS_DIR)
    master = spawned.pid
    try:
        assert wait_logged(error_log, r"Listening at: "), spawned.output()
        error_log.rename(rotated)  # what logrotate does, before it sends USR1
        os.kill(master, signal.SIGUSR1)
        assert wait_logged(error_log, rf"\[{master}\] \[INFO\] SIGUSR1"), rotated.read_text()
        os.kill(master, signal.SIGTTIN)
        assert wait_logged(error_log, rf"\[{master}\] \[INFO\] SIGTTIN: 2 workers")
        assert "SIGTTIN" not in rotated.read_text()
        # What the master writes to stderr (a traceback) goes to the new file too.
        assert os.readlink(f"/proc/{master}/fd/2") == str(error_log)
    finally:
        spawned.stop()


def holds(pidfile: Path, pid: int) -> bool:
    return pidfile.exists() and pidfile.read_text().strip() == str(pid)


def runtime_dirs(temp: Path) -> set[Path]:
    """The masters' runtime directories in `temp` (not the files Python's tempfile module
    creates there for a moment, to see that it can)."""
    return {path for path in temp.iterdir() if path.name.startswith("maitred-") and path.is_dir()}


def test_a_start_clears_what_a_master_killed_with_sigkill_left(
    servers: ServerFactory, tmp_path: Path
) -> None:
    # The servers' temp directory is the test's own: other servers on this machine are not ours.
    temp, pidfile = tmp_path / "tmp", tmp_path / "maitred.pid"
    temp.mkdir()
    env = {"TMPDIR": str(temp)}
    servers.start("hello:application", "-w", "1", env=env)  # runs on: its directory stays
    wait_until(lambda: len(runtime_dirs(temp)) == 1, "a runtime directory")
    [live_dir] = runtime_dirs(temp)
    killed = servers.start("hello:application", "-w", "1", "--pidfile", str(pidfile), env=env)
    wait_until(lambda: holds(pidfile, killed.pid), "the pidfile")  # written after the directory
    [stale_dir] = runtime_dirs(temp) - {live_dir}
    children = procs.descendants_and_session(killed.pid)
    os.kill(killed.pid, signal.SIGKILL)
    killed.spawned.proc.wait(WAIT)
    procs.kill_each(children)
    assert procs.wait_vanished(children) == []
    assert stale_dir.is_dir() and holds(pidfile, killed.pid)  # what the next start finds

    again = servers.start("hello:application", "-w", "1", "--pidfile", str(pidfile), env=env)
    wait_until(lambda: holds(pidfile, again.pid), "the pidfile naming the new master")
    assert not stale_dir.exists()
    assert live_dir.is_dir()
    assert len(runtime_dirs(temp)) == 2  # the live server's and the new one's
    removed = f"removed the runtime directory of pid {killed.pid}, gone: {stale_dir}"
    assert again.stderr.count(removed) == 1, again.stderr
    overwritten = f"the pidfile {pidfile} named '{killed.pid}', not a maitred master now"
    assert again.stderr.count(overwritten) == 1, again.stderr


def test_a_pidfile_naming_a_running_master_is_refused(
    servers: ServerFactory, tmp_path: Path
) -> None:
    pidfile = tmp_path / "maitred.pid"
    running = servers.start("hello:application", "-w", "1", "--pidfile", str(pidfile))
    wait_until(lambda: holds(pidfile, running.pid), "the pidfile")
    argv = ["-b", "127.0.0.1:0", "--pythonpath", str(APPS_DIR), "--pidfile", str(pidfile)]
    second = run_cli([*argv, "hello:application"])
    assert second.returncode == 1
    assert f"names pid {running.pid}, a maitred master that runs; not starting" in second.stderr
    assert "Listening at" not in second.stderr
    assert holds(pidfile, running.pid)
