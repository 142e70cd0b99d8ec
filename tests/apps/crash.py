"""Reads the whole request body, then kills its own worker process (os._exit).

The front must answer 502 and remove a spooled body even though the worker never said the
request was over. Any other path than ``/crash`` answers 200 with the body's length.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from apputil import Environ, StartResponse, text_headers

EXIT_STATUS = 3


def application(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    size = len(environ["wsgi.input"].read())
    if environ.get("PATH_INFO") == "/crash":
        os._exit(EXIT_STATUS)
    body = b"%d\n" % size
    start_response("200 OK", text_headers(body))
    return [body]
