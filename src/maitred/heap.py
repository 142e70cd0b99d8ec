"""Giving the C heap's free pages back to the system once a process goes idle.

Theory of operation
-------------------
CPython takes memory for objects larger than 512 bytes (request dicts, bodies, response
chunks) and for its own buffers from the C library's malloc. glibc keeps what was freed for
reuse: a worker that answered a few requests holds, at rest, the high-water mark of every one
of its threads' arenas, and the front the one of its event loop's. Those pages are private to
the process (they are written), so they count whole in its PSS, for nothing: idle is when they
are not needed. glibc's ``malloc_trim(0)`` returns the free pages of every arena to the system
(madvise), keeping the heap's layout, so the next request simply faults fresh pages in.

A trim walks every arena under its lock, so it must not run per request. :class:`IdleTrim` runs
one when a process has seen activity since its last trim and now holds no work: at most one
trim per busy spell, from a check the process makes anyway (the worker's heartbeat, the
front's sweep). The master trims before it forks, so its children do not inherit free pages
that the first of them to write would have to copy.

Only glibc has ``malloc_trim``; elsewhere (musl, macOS) :func:`trim` does nothing.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where the C library has none."""
    try:
        libc = ctypes.CDLL(None)  # the symbols the process has: the C library's among them
        function = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    return function


def trim() -> bool:
    """Return the C heap's free pages to the system; False where that cannot be done."""
    function = _malloc_trim()
    if function is None:
        return False
    function(0)  # 0: keep no free pad at the top of the heap
    return True


class IdleTrim:
    """Trims once per busy spell, when the process is idle again.

    The owner counts its activity (requests read, connections opened: any number that grows
    while it works) and asks :meth:`check` from a periodic check.
    """

    __slots__ = ("_trimmed_at",)

    def __init__(self) -> None:
        self._trimmed_at = 0  # the activity count at the last trim

    def check(self, activity: int, idle: bool) -> bool:
        """Trim if idle with activity since the last trim; True when it trimmed."""
        if not idle or activity == self._trimmed_at:
            return False
        self._trimmed_at = activity
        return trim()
