"""A front signalled before its event loop runs still obeys the signal.

uvloop listens for signals only once its loop runs; a master that stops at once (its app
failed to import) signals a front that may not be there yet. The front is run here in a
forked child, on real sockets, with a TERM sent to it in that gap.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import uvloop

from maitred.config import Config
from maitred.front import main as front_main

STOP_WITHIN = 10.0  # a front with nothing open stops in well under a second
POLL = 0.02


class TermedBeforeRunning(uvloop.Loop):
    """A loop whose process gets SIGTERM just before the loop starts to run."""

    def run_until_complete(self, future: Any) -> Any:
        os.kill(os.getpid(), signal.SIGTERM)
        return super().run_until_complete(future)


def test_a_term_before_the_front_loop_runs_stops_the_front(tmp_path: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    link = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    link.bind(str(tmp_path / "link.sock"))
    link.listen()
    pid = os.fork()
    if pid == 0:  # the front; it must never return into pytest
        code = 1
        try:
            front_main.new_event_loop = TermedBeforeRunning
            code = front_main.run_front(Config(), [listener], {"main": link}, os.getppid())
        finally:
            os._exit(code)
    listener.close()
    link.close()
    deadline = time.monotonic() + STOP_WITHIN
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(POLL)
    if done[0] == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise AssertionError(f"the front ignored a TERM sent before its loop ran ({STOP_WITHIN} s)")
    assert os.waitstatus_to_exitcode(done[1]) == 0
