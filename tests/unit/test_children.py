"""Forking a child: a signal sent to it at once is the child's, never its parent's."""

from __future__ import annotations

import os
import signal
import time

from maitred.children import fork
from maitred.signals import SignalQueue


def test_a_child_signalled_as_soon_as_it_is_forked_leaves_the_parent_alone() -> None:
    previous = signal.getsignal(signal.SIGTERM)
    queue = SignalQueue([signal.SIGTERM])
    try:
        for _ in range(20):
            pid = fork(lambda: time.sleep(1) or 0, queue, [signal.SIGTERM], [])
            # Likely while the child still runs the parent's handler, which writes to the
            # parent's wakeup pipe.
            os.kill(pid, signal.SIGTERM)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == -signal.SIGTERM  # the child's, and it died
        received, _ = queue.wait(0.1)
        assert received == []
    finally:
        queue.close()
        signal.signal(signal.SIGTERM, previous)
