"""``?mib=N``: a response of N MiB produced block by block, with Content-Length.

Block I is ``big.chunk(I)`` (64 KiB), so a lost, duplicated or reordered block changes the body:
:func:`expected` is what a client must receive. ``?chunked`` leaves out Content-Length.

``?record=PATH``: when the server closes the response iterable (the app is done: its thread is
about to be free), write ``time.monotonic()`` to PATH, so a test can compare when the app
finished with when its slow client finished reading.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator

from apputil import Environ, StartResponse, query
from big import CHUNK_SIZE, chunk

MIB = 1024 * 1024


def expected(size: int) -> bytes:
    """The body of a download of `size` bytes."""
    return b"".join(chunk(index) for index in range(size // CHUNK_SIZE))


class Download:
    def __init__(self, size: int, record: str) -> None:
        self.size = size
        self.record = record

    def __iter__(self) -> Iterator[bytes]:
        for index in range(self.size // CHUNK_SIZE):
            yield chunk(index)

    def close(self) -> None:
        if self.record:  # written whole, then renamed: the test never reads half a number
            with open(self.record + ".tmp", "w", encoding="ascii") as f:
                f.write(repr(time.monotonic()))
            os.replace(self.record + ".tmp", self.record)


def application(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    params = query(environ)
    size = int(params.get("mib", "1")) * MIB
    headers = [("Content-Type", "application/octet-stream")]
    if "chunked" not in params:
        headers.append(("Content-Length", str(size)))
    start_response("200 OK", headers)
    return Download(size, params.get("record", ""))
