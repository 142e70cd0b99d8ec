"""The smallest app: a fixed body with Content-Length."""

from __future__ import annotations

from collections.abc import Iterable

from apputil import Environ, StartResponse, text_headers

BODY = b"Hello, world!\n"


def application(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", text_headers(BODY))
    return [BODY]
