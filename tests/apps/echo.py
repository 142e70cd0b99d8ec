"""Reports the request as JSON: method, path, query, the environ, the body and its sha256.

The body is read from wsgi.input in blocks (CONTENT_LENGTH bytes, or to the end when the
request had no length), so a 50 MiB upload is hashed without being held; it is echoed in the
JSON only when small. ``pid`` tells which worker process served the request.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator

from apputil import Environ, StartResponse, text_headers

BLOCK = 64 * 1024
ECHO_LIMIT = 1024 * 1024
JSON_SCALARS = (str, bool, int, float, type(None))


def read_body(environ: Environ) -> Iterator[bytes]:
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    remaining = int(length) if length else None
    while remaining is None or remaining > 0:
        block = stream.read(BLOCK if remaining is None else min(BLOCK, remaining))
        if not block:
            return
        if remaining is not None:
            remaining -= len(block)
        yield block


def jsonable(environ: Environ) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in environ.items():
        if isinstance(value, JSON_SCALARS):
            out[key] = value
        elif isinstance(value, tuple) and all(isinstance(v, JSON_SCALARS) for v in value):
            out[key] = list(value)
    return out


def application(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    digest, size, kept = hashlib.sha256(), 0, []
    for block in read_body(environ):
        digest.update(block)
        size += len(block)
        if size <= ECHO_LIMIT:
            kept.append(block)
    report = {
        "method": environ["REQUEST_METHOD"],
        "script_name": environ.get("SCRIPT_NAME"),
        "path": environ.get("PATH_INFO"),
        "query": environ.get("QUERY_STRING"),
        "environ": jsonable(environ),
        "body": b"".join(kept).decode("latin-1") if size <= ECHO_LIMIT else None,
        "body_length": size,
        "body_sha256": digest.hexdigest(),
        "pid": os.getpid(),
    }
    body = json.dumps(report).encode()
    start_response("200 OK", text_headers(body, "application/json"))
    return [body]
