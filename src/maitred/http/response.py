"""Pieces of response heads shared by the front and the workers: reasons, Server, Date, chunks.

Where a body ends and whether the connection stays open: :mod:`maitred.http.framing`.
"""

from __future__ import annotations

import time
from email.utils import formatdate
from http import HTTPStatus

SERVER = b"maitred"
LAST_CHUNK = b"0\r\n\r\n"

REASONS: dict[int, bytes] = {s.value: s.phrase.encode("latin-1") for s in HTTPStatus}
# A status without a phrase of its own (an app's 599) gets this one in the front's answers.
UNKNOWN_REASON = b"Error"


def head_start(status: int) -> bytes:
    """The first lines of a head the front writes, up to the Date field's value."""
    start = HEAD_STARTS.get(status)
    return start if start is not None else _start(status)


def _start(status: int) -> bytes:
    reason = REASONS.get(status, UNKNOWN_REASON)
    return b"HTTP/1.1 %d %s\r\nServer: %s\r\nDate: " % (status, reason, SERVER)


# head_start() for every status with a reason phrase, made once; indexed directly on hot paths.
HEAD_STARTS = {status: _start(status) for status in REASONS}


class DateCache:
    """The Date header value, formatted at most once a second."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def get(self) -> bytes:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._value = formatdate(now, usegmt=True).encode("ascii")
        return self._value


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (RFC 9112 section 7.1)."""
    return b"%x\r\n%b\r\n" % (len(data), data)
