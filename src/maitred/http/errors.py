"""Protocol errors carry the status the client gets; the front renders them one way."""

from __future__ import annotations

from typing import Any


class ProtocolError(Exception):
    """The client sent something we cannot serve: answer `status` and close the connection."""

    status = 400

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if status is not None:
            self.status = status
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
