"""Imports once; every later import fails: a deploy that broke after the first worker started.

The first import creates the file named by ``CRASHLOOP_MARK``; any import that finds it there
raises. ``/die`` kills the worker that serves it, so its replacement meets the broken import and
the master backs the restarts off. Any other path answers 200.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from apputil import Environ, StartResponse, text_headers

MARK = Path(os.environ["CRASHLOOP_MARK"])
if MARK.exists():
    raise RuntimeError("the deploy broke after the first worker started")
MARK.touch()
EXIT_STATUS = 3


def application(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    if environ.get("PATH_INFO") == "/die":
        os._exit(EXIT_STATUS)
    body = b"alive\n"
    start_response("200 OK", text_headers(body))
    return [body]
