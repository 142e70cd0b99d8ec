"""``?mib=N``: a response of N MiB produced block by block, with Content-Length.

``?record=PATH``: when the server closes the response iterable (the app is done: its thread is
about to be free), write ``time.monotonic()`` to PATH, so a test can compare when the app
finished with when its slow client finished reading.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator

from apputil import Environ, StartResponse, query

BLOCK = b"d" * (64 * 1024)
MIB = 1024 * 1024


class Download:
    def __init__(self, size: int, record: str) -> None:
        self.size = size
        self.record = record

    def __iter__(self) -> Iterator[bytes]:
        for _ in range(self.size // len(BLOCK)):
            yield BLOCK

    def close(self) -> None:
        if self.record:  # written whole, then renamed: the test never reads half a number
            with open(self.record + ".tmp", "w", encoding="ascii") as f:
                f.write(repr(time.monotonic()))
            os.replace(self.record + ".tmp", self.record)


def application(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    params = query(environ)
    size = int(params.get("mib", "1")) * MIB
    start_response(
        "200 OK",
        [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))],
    )
    return Download(size, params.get("record", ""))
