"""Sends part of its body through the legacy write() callable and returns the rest."""

from __future__ import annotations

from collections.abc import Iterable

from apputil import Environ, StartResponse, text_headers

WRITTEN = (b"written one\n", b"written two\n")
RETURNED = b"returned three\n"
BODY = b"".join(WRITTEN) + RETURNED


def application(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    write = start_response("200 OK", text_headers())
    for part in WRITTEN:
        write(part)
    return [RETURNED]
