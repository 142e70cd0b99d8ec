"""What the master keeps on disk: its error log after a rotation, its runtime directory and its
pidfile, and what a master killed with SIGKILL left of them for the next one to clear.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

from harness import APPS_DIR, spawn

WAIT = 15.0
POLL = 0.05


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
