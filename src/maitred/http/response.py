"""Response serialisation shared by the front (its own error pages) and the workers."""

from __future__ import annotations

import time
from email.utils import formatdate
from http import HTTPStatus

from maitred.http.framing import NO_BODY_STATUSES

SERVER = b"maitred"
LAST_CHUNK = b"0\r\n\r\n"

REASONS: dict[int, bytes] = {s.value: s.phrase.encode("latin-1") for s in HTTPStatus}


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


def simple_response(status: int, date: bytes, body: bytes = b"", extra: bytes = b"") -> bytes:
    """A complete response that closes the connection: the front's own answers (4xx, 5xx)."""
    if not body and status not in NO_BODY_STATUSES:
        body = b"%d %s\n" % (status, REASONS.get(status, b"Error"))
    return (
        b"HTTP/1.1 %d %s\r\nServer: %s\r\nDate: %s\r\nConnection: close\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n%b\r\n%b"
        % (status, REASONS.get(status, b"Error"), SERVER, date, len(body), extra, body)
    )
