"""What a worker's busy app threads are doing: their stacks, on demand and when slow.

Theory of operation
-------------------
Each request in flight has a Channel (maitred.worker.channel) that names the app thread running
it and when it started; `sys._current_frames()` gives every thread's current frame. Both are
read by the worker's main thread, which runs no app code:

* `maitred ctl stacks`: the master sends the worker SIGUSR2; its main thread (woken by the
  signal, maitred.worker.main) writes :func:`report` on its status pipe, as STACKS messages
  (maitred.status): the worker, and per busy thread the request (method, path, request id),
  its age and its stack. Bounded: MAX_FRAMES innermost frames per thread, and threads are left
  out past MAX_REPORT bytes (the report says how many). The master waits for the answers a few
  seconds at most (maitred.mastercommands).
* --slow-request-log S: each turn of the main thread (every second, with the heartbeat that
  already carries the age of the oldest request, the place --timeout is watched from), a
  request in flight for more than S seconds has its stack logged, once (:class:`SlowLog`),
  and is left to run.

The stack of a thread that --timeout interrupts is written by the same :func:`thread_stack`.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from collections.abc import Iterable
from typing import Any

from maitred.worker import wsgi
from maitred.worker.channel import Channel

log = logging.getLogger("maitred.error")

MAX_FRAMES = 50  # innermost frames of one thread's stack: where it is, and how it got there
APP_CALL = wsgi.run_app.__name__  # the frame of maitred's that calls the app
MAX_REPORT = 256 * 1024  # bytes of one worker's report: a few dozen deep stacks


def thread_stack(ident: int, limit: int | None = None) -> str:
    """The stack of thread `ident` now, innermost frame last (as a traceback shows it), from
    the app's frames on: maitred's own, which call the app, are the same in every thread."""
    frame = sys._current_frames().get(ident)
    if frame is None:
        return "(no stack)\n"
    frames = list(traceback.extract_stack(frame))
    calls = [i for i, f in enumerate(frames) if f.filename == wsgi.__file__ and f.name == APP_CALL]
    if calls:
        frames = frames[calls[-1] + 1 :]
    if limit is not None:
        frames = frames[-limit:]
    return "".join(traceback.format_list(frames))


def busy(channels: Iterable[Channel], now: float) -> list[dict[str, Any]]:
    """Each request running in an app thread, oldest first, with its thread's stack."""
    running = sorted((c for c in channels if c.thread), key=lambda c: c.started)
    return [
        {
            "method": c.request.method.decode("latin-1"),
            "path": c.request.target.decode("latin-1"),
            "request_id": c.request.request_id,
            "age": round(now - c.started, 3),
            "thread": c.thread,
            "stack": thread_stack(c.thread, MAX_FRAMES),
        }
        for c in running
    ]


def report(pid: int, worker: str, app: str, channels: Iterable[Channel]) -> bytes:
    """The JSON a worker sends for `stacks`: at most MAX_REPORT bytes."""
    threads = busy(list(channels), time.monotonic())
    left_out = 0
    while True:
        document = {"pid": pid, "worker": worker, "app": app, "threads": threads}
        if left_out:
            document["left_out"] = left_out
        data = json.dumps(document).encode("utf-8")
        if len(data) <= MAX_REPORT or not threads:
            return data
        threads = threads[:-1]  # the youngest go first: the oldest are the likely stuck ones
        left_out += 1


class SlowLog:
    """--slow-request-log: the stack of a request older than `seconds`, logged once."""

    def __init__(self, seconds: float, app: str) -> None:
        self.seconds = seconds
        self.app = app or "main"

    def check(self, channels: Iterable[Channel], now: float) -> None:
        if not self.seconds:
            return
        for channel in channels:
            if channel.slow_logged or not channel.thread or now - channel.started < self.seconds:
                continue
            channel.slow_logged = True
            req = channel.request
            log.warning(
                "slow request: %s in flight for %.1f s (app %s, request id %s), still running:\n%s",
                channel.label,
                now - channel.started,
                self.app,
                req.request_id or "-",
                thread_stack(channel.thread, MAX_FRAMES).rstrip("\n"),
            )
