"""Returns a file through ``environ['wsgi.file_wrapper']``.

``?path=PATH`` serves that file (default: this module's source) with Content-Length;
``?nolength`` leaves the length out; ``?bytesio`` wraps an in-memory file that has no fileno(),
which a server must still serve (by iterating the wrapper) rather than by sendfile.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable

from apputil import Environ, StartResponse, query, text_headers

BYTESIO_PAYLOAD = b"in-memory file contents\n" * 1000


def application(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    params = query(environ)
    if "bytesio" in params:
        f: io.BufferedIOBase = io.BytesIO(BYTESIO_PAYLOAD)
        size = len(BYTESIO_PAYLOAD)
    else:
        f = open(params.get("path", __file__), "rb")  # noqa: SIM115 - the wrapper closes it
        size = os.fstat(f.fileno()).st_size
    headers = text_headers(None, "application/octet-stream")
    if "nolength" not in params:
        headers.append(("Content-Length", str(size)))
    start_response("200 OK", headers)
    return environ["wsgi.file_wrapper"](f, 32 * 1024)  # type: ignore[no-any-return]
