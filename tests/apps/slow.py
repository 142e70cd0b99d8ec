"""Sleeps ``?s=`` seconds, then reports which worker process and thread served it.

``?mark=PATH`` creates PATH when the request starts running in a worker thread, so a test can
wait until its requests occupy threads instead of guessing with a sleep. Times are
``time.monotonic()`` (CLOCK_MONOTONIC, comparable across processes on one machine).
``queue_time`` is the request's ``maitred.queue_time``: how long it waited for a thread.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from apputil import Environ, StartResponse, query, text_headers


def application(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    params = query(environ)
    started = time.monotonic()
    if "mark" in params:
        Path(params["mark"]).touch()
    time.sleep(float(params.get("s", "0")))
    body = json.dumps(
        {
            "pid": os.getpid(),
            "thread": threading.get_ident(),
            "started": started,
            "ended": time.monotonic(),
            "query": environ.get("QUERY_STRING", ""),
            "queue_time": environ.get("maitred.queue_time"),
        }
    ).encode()
    start_response("200 OK", text_headers(body, "application/json"))
    return [body]
