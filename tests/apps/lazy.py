"""An app that does its expensive setup on its first request in each process, as Django does
(URLconf, templates, a database connection): that request takes LAZY_COST seconds longer.

It says on stderr when it is imported, with its pid, so a test can count the imports.
``/fail`` answers 500 and ``/raise`` raises, for warm-ups that fail.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterable

from apputil import Environ, StartResponse, text_headers

LAZY_COST = 1.0  # seconds of the first request's setup
_ready = threading.Event()
_setup = threading.Lock()

print(f"lazy: imported in pid {os.getpid()}", file=sys.stderr, flush=True)


def application(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    if path == "/raise":
        raise RuntimeError("warm-up broke")
    with _setup:
        if not _ready.is_set():
            time.sleep(LAZY_COST)
            _ready.set()
    body = f"{os.getpid()} {'warm-up' if environ.get('maitred.warmup') else 'client'}\n".encode()
    status = "500 Internal Server Error" if path == "/fail" else "200 OK"
    start_response(status, text_headers(body))
    return [body]
