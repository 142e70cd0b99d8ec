"""A generator response with no Content-Length, produced slowly.

``?n=N&delay=D``: N chunks ``chunk I\n`` with D seconds between them.
``?gate=PATH``: yields ``first\n``, then waits until PATH exists (the test creates it after it
has received the first chunk) and yields ``second\n``. A server that buffers the whole response
never delivers ``first`` before the gate opens, so the test sees the difference without timing.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

from apputil import Environ, StartResponse, query, text_headers, wait_for_file

FIRST = b"first\n"
SECOND = b"second\n"
GATE_TIMED_OUT = b"gate timed out\n"


def gated(gate: str) -> Iterator[bytes]:
    yield FIRST
    yield SECOND if wait_for_file(gate) else GATE_TIMED_OUT


def paced(count: int, delay: float) -> Iterator[bytes]:
    for i in range(count):
        if i:
            time.sleep(delay)
        yield b"chunk %d\n" % i


def application(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    params = query(environ)
    start_response("200 OK", text_headers())
    if "gate" in params:
        return gated(params["gate"])
    return paced(int(params.get("n", "5")), float(params.get("delay", "0.05")))
