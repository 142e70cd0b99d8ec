"""start_response called a second time with exc_info.

``/`` (head not sent yet): the second call replaces the first, so the client gets the app's
own 500 page. ``/after-head``: the head is already on its way (a chunk was yielded), so the
second call re-raises and the server can only cut the connection.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator

from apputil import Environ, StartResponse, text_headers

ERROR_PAGE = b"the app's own error page\n"
FIRST_CHUNK = b"partial body\n"


def replace_error(start_response: StartResponse) -> None:
    try:
        raise ValueError("replaced-by-error-page")
    except ValueError:
        headers = [*text_headers(ERROR_PAGE), ("X-Error-Page", "app")]
        start_response("500 Internal Server Error", headers, sys.exc_info())


def after_head(start_response: StartResponse) -> Iterator[bytes]:
    yield FIRST_CHUNK
    replace_error(start_response)
    yield ERROR_PAGE


def application(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", text_headers())
    if environ.get("PATH_INFO") == "/after-head":
        return after_head(start_response)
    replace_error(start_response)
    return [ERROR_PAGE]
