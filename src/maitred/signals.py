"""Signal handling for the processes that are not event loops (the master and the workers).

Handlers only record: the C-level handler writes the signal number to a wakeup pipe, and the
process's own loop reads the numbers from it and decides what to do, outside signal context.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
from collections.abc import Iterable


class SignalQueue:
    def __init__(self, signals: Iterable[signal.Signals]) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        for signum in signals:
            signal.signal(signum, _record)

    def wait(
        self, timeout: float, fds: Iterable[int] = ()
    ) -> tuple[list[signal.Signals], list[int]]:
        """(signals received, which of `fds` are readable), waiting up to `timeout` for one."""
        ready, _, _ = select.select([self._read, *fds], [], [], max(timeout, 0.0))
        if self._read not in ready:
            return [], ready
        ready.remove(self._read)
        received = b""
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(self._read, 256):
                received += chunk
        return [signal.Signals(number) for number in received], ready

    def close(self) -> None:
        """Undo the wakeup pipe (in a forked child, before it sets up its own handling)."""
        signal.set_wakeup_fd(-1)
        os.close(self._read)
        os.close(self._write)


def _record(signum: int, frame: object) -> None:
    """Nothing to do here: the wakeup fd already carries the signal number."""


def reset(signals: Iterable[signal.Signals]) -> None:
    """Default handling for the given signals (after fork, before the child's own setup)."""
    for signum in signals:
        signal.signal(signum, signal.SIG_DFL)
