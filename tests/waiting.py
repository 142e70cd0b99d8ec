"""The one way tests wait: poll a condition until it holds, with a generous timeout.

Never a fixed sleep: several test runs share a loaded 2-core machine, so anything timed is a
flake waiting to happen, and a condition polled every few milliseconds costs nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

WAIT_TIMEOUT = 15.0
WAIT_INTERVAL = 0.02


def poll(
    probe: Callable[[], T],
    done: Callable[[T], object] = bool,
    timeout: float = WAIT_TIMEOUT,
    interval: float = WAIT_INTERVAL,
) -> T:
    """Call `probe` until `done` holds for what it returns, or `timeout` passed; its last answer."""
    deadline = time.monotonic() + timeout
    while not done(result := probe()) and time.monotonic() < deadline:
        time.sleep(interval)
    return result


def wait_until(
    predicate: Callable[[], object],
    timeout: float = WAIT_TIMEOUT,
    what: str = "",
    interval: float = WAIT_INTERVAL,
) -> None:
    """Return once `predicate()` is true; fail the test, naming `what`, after `timeout`."""
    if not poll(predicate, bool, timeout, interval):
        raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
