"""Forking and reaping children: a signal sent to a child at once is the child's, never its
parent's; exits are handled one at a time."""

from __future__ import annotations

import gc
import os
import signal
import time

import procs
from maitred.children import FrontChild, fork
from maitred.processes import Processes
from maitred.signals import SignalQueue

ZOMBIE_TIMEOUT = 10.0  # generous: the machine is shared


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


def test_exits_are_reaped_one_at_a_time() -> None:
    # Two children exit together. While the master deals with the first, the second is still
    # in its table: when the first front of a generation to go is handled, the last one must
    # still be seen, or that generation is closed early and its workers are never stopped.
    processes = Processes([], list)
    pids = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        pids.append(pid)
        processes.children[pid] = FrontChild(pid=pid)
    deadline = time.monotonic() + ZOMBIE_TIMEOUT
    while not all(zombie(pid) for pid in pids):
        assert time.monotonic() < deadline, "the children did not exit"
        time.sleep(0.01)
    handled: list[int] = []
    for child, code in processes.reap():
        assert code == 0
        handled.append(child.pid)
        assert set(pids) - set(handled) <= set(processes.children)
    assert sorted(handled) == sorted(pids) and processes.children == {}


def zombie(pid: int) -> bool:
    info = procs.read_proc(pid)
    return info is not None and info.state == "Z"


def test_a_child_starts_with_what_its_parent_held_frozen() -> None:
    # Its garbage collector never walks (and so never copies) the pages it shares.
    queue = SignalQueue([signal.SIGTERM])
    try:
        pid = fork(lambda: 0 if gc.get_freeze_count() > 0 else 1, queue, [signal.SIGTERM], [])
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        queue.close()
        gc.unfreeze()  # this test process is no master: let its collector have them back
