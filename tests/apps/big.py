"""A 50 MiB response, produced chunk by chunk (never held whole).

Chunk I is sha256(str(I)) repeated, so a lost, duplicated or reordered chunk changes the
checksum. ``?chunked`` leaves out Content-Length.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

from apputil import Environ, StartResponse, query

CHUNK_SIZE = 64 * 1024
TOTAL_SIZE = 50 * 1024 * 1024


def chunk(index: int) -> bytes:
    digest = hashlib.sha256(b"%d" % index).digest()
    return digest * (CHUNK_SIZE // len(digest))


def payload() -> Iterator[bytes]:
    for index in range(TOTAL_SIZE // CHUNK_SIZE):
        yield chunk(index)


def application(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    headers = [("Content-Type", "application/octet-stream")]
    if "chunked" not in query(environ):
        headers.append(("Content-Length", str(TOTAL_SIZE)))
    start_response("200 OK", headers)
    return payload()
