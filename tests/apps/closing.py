"""A response iterable that records its close() call, for every way a response can end.

``?record=PATH`` names the file that gets one line per event (``iter``, ``exhausted``, ``close``).
``?mode=``
  ``normal``   three chunks, then the iterable is exhausted;
  ``raise``    one chunk, then RuntimeError("boom-mid-stream");
  ``endless``  a chunk every TICK seconds until closed (at most ENDLESS_LIMIT seconds), for a
               client that disconnects mid-stream: only the server can stop it, by calling close().
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

from apputil import WAIT_LIMIT, Environ, StartResponse, query, record, text_headers

NORMAL_CHUNKS = (b"one\n", b"two\n", b"three\n")
ENDLESS_CHUNK = b"x" * 1024
TICK = 0.02
ENDLESS_LIMIT = WAIT_LIMIT


class RecordedBody:
    def __init__(self, path: str, mode: str) -> None:
        self.path = path
        self.mode = mode
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        record(self.path, "iter")
        if self.mode == "raise":
            yield NORMAL_CHUNKS[0]
            raise RuntimeError("boom-mid-stream")
        if self.mode == "endless":
            deadline = time.monotonic() + ENDLESS_LIMIT
            while not self.closed and time.monotonic() < deadline:
                yield ENDLESS_CHUNK
                time.sleep(TICK)
        else:
            yield from NORMAL_CHUNKS
        record(self.path, "exhausted")

    def close(self) -> None:
        self.closed = True
        record(self.path, "close")


def application(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    params = query(environ)
    start_response("200 OK", text_headers())
    return RecordedBody(params["record"], params.get("mode", "normal"))
