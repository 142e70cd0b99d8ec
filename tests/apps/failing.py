"""Apps that raise.

``/before``         RuntimeError before start_response: the server answers 500 and logs it.
``/after-length``   head with Content-Length sent and part of the body, then RuntimeError.
``/after-chunked``  head of a chunked response and one chunk sent, then RuntimeError.
anything else       200, so a test can show the worker thread still serves requests.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from apputil import Environ, StartResponse, text_headers

DECLARED_LENGTH = 1000
PARTIAL = b"x" * 100


def raise_after(first: bytes) -> Iterator[bytes]:
    yield first
    raise RuntimeError("boom-after-head")


def application(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    path = environ.get("PATH_INFO")
    if path == "/before":
        raise RuntimeError("boom-before-head")
    if path == "/after-length":
        headers = text_headers()
        headers.append(("Content-Length", str(DECLARED_LENGTH)))
        start_response("200 OK", headers)
        return raise_after(PARTIAL)
    if path == "/after-chunked":
        start_response("200 OK", text_headers())
        return raise_after(PARTIAL)
    body = b"alive in %d\n" % os.getpid()
    start_response("200 OK", text_headers(body))
    return [body]
