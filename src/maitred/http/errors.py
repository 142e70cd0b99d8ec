"""Errors carry the status the client gets, and render the answer themselves.

Theory of operation
-------------------
Every answer the front gives of its own accord -- a request it cannot parse or accept (400,
408, 413, 414, 431, 501), load it sheds (503 with Retry-After), a worker that died or ran out of
time (502, 504), a body it could not spool (500, 503) -- is an :class:`HTTPError`: its status, the
header lines that go with it, and :meth:`HTTPError.to_response`, which writes the whole answer:
a short plain-text body, and the framing of :func:`maitred.http.framing.frame` with the
connection closing after it (the front gives up on a connection it answers this way).
:func:`error_for` maps a bare status to its error, so there is one rendering, not one per caller.
Static files answer their 404s and 416s on a connection that stays open: they take the fields
and the body from the same error (:meth:`HTTPError.fields`, :attr:`HTTPError.body`).
"""

from __future__ import annotations

from typing import Any

from maitred.http.framing import CONTENT_LENGTH, CRLF, HTTP_11, NO_BODY_STATUSES, frame
from maitred.http.response import REASONS, UNKNOWN_REASON, head_start

# The Content-Type of every error page of the server's own, the front's and the workers'.
ERROR_PAGE_TYPE = "text/plain; charset=utf-8"
_CONTENT_TYPE = b"Content-Type: %s\r\n" % ERROR_PAGE_TYPE.encode("ascii")
# Sent with every 503 the front sheds load with: clients may retry, preferably a second later.
RETRY_AFTER = b"Retry-After: 1\r\n"


class HTTPError(Exception):
    """An answer of the server's own: `status`, and `headers` (lines ending CRLF) besides the
    usual ones."""

    status = 500
    headers = b""

    def __init__(self, reason: str = "", status: int | None = None, headers: bytes = b"") -> None:
        super().__init__(reason)
        self.reason = reason
        if status is not None:
            self.status = status
        if headers:
            self.headers = headers

    @property
    def body(self) -> bytes:
        """The plain-text body: the status and its reason phrase (none for 1xx, 204, 304)."""
        if self.status in NO_BODY_STATUSES:
            return b""
        return b"%d %s\n" % (self.status, REASONS.get(self.status, UNKNOWN_REASON))

    def fields(self) -> bytes:
        """Content-Type, Content-Length and this error's own header lines."""
        return _CONTENT_TYPE + CONTENT_LENGTH % len(self.body) + self.headers

    def to_response(self, date: bytes, extra: bytes = b"") -> bytes:
        """The whole answer, closing the connection; `extra` header lines go with it."""
        status, body = self.status, self.body
        framing = frame(status, len(body), HTTP_11, False, False)
        return b"".join((head_start(status), date, CRLF, self.fields(), extra, framing.tail, body))


class ProtocolError(HTTPError):
    """The client sent something we cannot serve: answer `status` and close the connection."""

    status = 400

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason, status)
        # Parser events completed before the error (RequestParser.feed): serve them first.
        self.events: list[Any] = []


class RequestLineTooLong(ProtocolError):
    status = 414


class HeaderFieldsTooLarge(ProtocolError):
    status = 431


class BodyTooLarge(ProtocolError):
    status = 413


class NotImplementedFraming(ProtocolError):
    """A Transfer-Encoding we do not decode (RFC 9112 section 6.1: answer 501)."""

    status = 501


class RequestTimeout(ProtocolError):
    """The client took too long to send its request (head or body)."""

    status = 408


# One error per status the front may answer with, made once: they carry no state.
_BY_STATUS = {
    status: HTTPError(reason.decode("latin-1"), status)
    for status, reason in REASONS.items()
    if status >= 400
}


def error_for(status: int) -> HTTPError:
    """The front's error for a bare status (a 502 from a lost worker, a 400 from the parser).

    Shared between callers: render it, never raise it (a raise would pin a traceback on it).
    """
    error = _BY_STATUS.get(status)
    return error if error is not None else HTTPError("", status)


def simple_response(status: int, date: bytes, extra: bytes = b"") -> bytes:
    """The front's whole answer for a bare status, closing the connection; `extra` header lines
    (Retry-After, the request id) go with it."""
    return error_for(status).to_response(date, extra)
