"""Sets its own X-Request-ID response header (``?id=VALUE``), as some request-id middleware does.

The server must then not add a second one.
"""

from __future__ import annotations

from collections.abc import Iterable

from apputil import Environ, StartResponse, query, text_headers

BODY = b"own id\n"


def application(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    headers = text_headers(BODY)
    headers.append(("x-request-id", query(environ).get("id", "from-app")))
    start_response("200 OK", headers)
    return [BODY]
