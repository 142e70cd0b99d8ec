"""Returns a file through ``environ['wsgi.file_wrapper']``.

``?path=PATH`` serves that file (default: this module's source) with Content-Length;
``?nolength`` leaves the length out; ``?bytesio`` wraps an in-memory file that has no fileno(),
which a server must still serve (by iterating the wrapper) rather than by sendfile.
``?offset=N`` seeks to N first (the response is the rest of the file); ``?length=N`` declares
that Content-Length instead of the file's; ``?record=PATH`` appends ``close`` to PATH when the
server closes the wrapper (the file).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable

from apputil import Environ, StartResponse, query, record, text_headers

BYTESIO_PAYLOAD = b"in-memory file contents\n" * 1000


class RecordedFile(io.FileIO):
    """A file whose close() is written down, to see that the server called it."""

    record_path = ""

    def close(self) -> None:
        if not self.closed and self.record_path:
            record(self.record_path, "close")
        super().close()


def application(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    params = query(environ)
    if "bytesio" in params:
        f: io.RawIOBase | io.BufferedIOBase = io.BytesIO(BYTESIO_PAYLOAD)
        size = len(BYTESIO_PAYLOAD)
    else:
        f = RecordedFile(params.get("path", __file__), "rb")
        f.record_path = params.get("record", "")
        size = os.fstat(f.fileno()).st_size
        if "offset" in params:
            size -= f.seek(int(params["offset"]))
    headers = text_headers(None, "application/octet-stream")
    if "nolength" not in params:
        headers.append(("Content-Length", params.get("length", str(size))))
    start_response("200 OK", headers)
    return environ["wsgi.file_wrapper"](f, 32 * 1024)  # type: ignore[no-any-return]
