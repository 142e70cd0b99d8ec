"""How a response's body is delimited, and whether its connection stays open: one decision.

Theory of operation
-------------------
Every response maitred sends -- an app's (its head written by a worker), a static file's, and
the front's own errors -- ends its head here. :func:`frame` is the one place that decides:

* **Where the body ends** (RFC 9112 section 6.3, :class:`BodyEnd`): nowhere, for a status that
  never has a body (1xx, 204, 304); after Content-Length bytes when the length is known; with
  chunked coding when it is not and the client speaks HTTP/1.1; with the connection's close
  when the client speaks HTTP/1.0, which cannot read chunks.
* **Whether body bytes are written at all**: not for HEAD, nor for a status without a body.
  The head of a HEAD still says what GET would have sent (RFC 9110 section 9.3.2).
* **The Connection field**: ``close`` when the connection ends after this response,
  ``keep-alive`` when an HTTP/1.0 client asked to keep it, nothing otherwise (HTTP/1.1's
  default is to keep it).
* **The head's last lines**: Transfer-Encoding, Connection and the empty line that ends it.

The caller brings what it knows: the status, the Content-Length the head declares (-1: none),
the request's version and method, and whether the connection may stay open (the client asked
to, and the front is not closing it). The head itself (status line, Date, Server, the app's
fields, Content-Length) is written before: by the worker for an app's response, where that work
runs in parallel on other cores (maitred.worker.wsgi.HeadWriter, with :data:`CONTENT_LENGTH`),
and by the front for static files and errors (:mod:`maitred.http.errors`). Apps may not set
Transfer-Encoding or Connection at all (PEP 3333 hop-by-hop fields: the worker refuses them),
so the fields this adds are never doubled.

The answers are a handful of constants made at import, so deciding costs a few comparisons and
no allocation on the hot path (measured with callgrind, the front's instructions per keep-alive
hello request are within 0.1% of what they were with the branches in the front itself; a
NamedTuple instead of a slotted class cost six times that). Nothing here knows sockets,
processes or WSGI.
"""

from __future__ import annotations

import enum

CRLF = b"\r\n"
CHUNKED = b"Transfer-Encoding: chunked\r\n"
CLOSE = b"Connection: close\r\n"
KEEP_ALIVE = b"Connection: keep-alive\r\n"
HTTP_10 = "1.0"
HTTP_11 = "1.1"
# The Content-Length line, to format with the body's length (a format, not a function: the
# workers add it to most responses, and a call would cost more than the formatting).
CONTENT_LENGTH = b"Content-Length: %d\r\n"

# Statuses whose responses never have a body (RFC 9110 sections 15.2, 15.3.5, 15.4.5).
NO_BODY_STATUSES = frozenset({204, 304, *range(100, 200)})


class BodyEnd(enum.Enum):
    """How the client finds where the body ends (RFC 9112 section 6.3)."""

    NONE = "none"  # the status never has a body: the head is the whole response
    LENGTH = "length"  # after Content-Length bytes
    CHUNKED = "chunked"  # at the last chunk
    CLOSE = "close"  # where the connection ends (HTTP/1.0, length unknown)
    RECORD = "record"  # at a gateway protocol's end of response (FastCGI's END_REQUEST)


class Framing:
    """The decision for one response. Made only at import (see _answer) and never changed.

    A class with slots, not a NamedTuple: the front reads three of these fields on every
    response, and a slot is the cheapest attribute CPython has to read.
    """

    __slots__ = ("chunked", "end", "keep_alive", "tail", "write_body")

    def __init__(self, end: BodyEnd, keep_alive: bool, write_body: bool, tail: bytes) -> None:
        self.end = end
        self.keep_alive = keep_alive  # the connection carries another response after this one
        self.write_body = write_body  # body bytes go out (not for HEAD, nor for 204/304/1xx)
        self.chunked = end is BodyEnd.CHUNKED
        self.tail = tail  # the head's last lines: Transfer-Encoding, Connection, the empty line

    def __repr__(self) -> str:
        return f"<Framing {self.end.value} keep_alive={self.keep_alive} tail={self.tail!r}>"


def _tail(end: BodyEnd, keep_alive: bool, http10: bool) -> bytes:
    coding = CHUNKED if end is BodyEnd.CHUNKED else b""
    if not keep_alive:
        return coding + CLOSE + CRLF
    return coding + (KEEP_ALIVE if http10 else b"") + CRLF


def _answer(end: BodyEnd, keep_alive: bool, http10: bool, head_request: bool) -> Framing:
    write_body = not head_request and end is not BodyEnd.NONE
    return Framing(end, keep_alive, write_body, _tail(end, keep_alive, http10))


# Every answer frame() can give, made once here, so that deciding costs a few comparisons and
# subscripts and no allocation. Tables by the request's version (the parser lets only these
# two through), then [keep_alive][head_request]. Booleans index the tuples: True is 1.
_BOOLS = (False, True)
_NO_BODY = {
    version: tuple(_answer(BodyEnd.NONE, k, version == HTTP_10, False) for k in _BOOLS)
    for version in (HTTP_10, HTTP_11)
}
_LENGTH = {
    version: tuple(
        tuple(_answer(BodyEnd.LENGTH, k, version == HTTP_10, h) for h in _BOOLS) for k in _BOOLS
    )
    for version in (HTTP_10, HTTP_11)
}
_CHUNKED = tuple(tuple(_answer(BodyEnd.CHUNKED, k, False, h) for h in _BOOLS) for k in _BOOLS)
_UNTIL_CLOSE = tuple(_answer(BodyEnd.CLOSE, False, True, h) for h in _BOOLS)


def frame(status: int, length: int, version: str, keep_alive: bool, head_request: bool) -> Framing:
    """Decide how this response's body is delimited and whether its connection stays open.

    `length` is the Content-Length the head declares, -1 when it declares none; `version` the
    request's HTTP version, HTTP_11 or HTTP_10 (maitred.http.parser refuses any other);
    `keep_alive` whether the connection may carry another response (the client asked, and the
    front is not closing it); `head_request` whether the request was a HEAD.
    """
    if length >= 0 and status not in NO_BODY_STATUSES:  # the common case first
        return _LENGTH[version][keep_alive][head_request]
    if status in NO_BODY_STATUSES:
        return _NO_BODY[version][keep_alive]  # nothing to write, HEAD or not
    if version == HTTP_10:
        # An HTTP/1.0 client cannot read chunks: the body ends where the connection does. So
        # for HEAD too, whose head announces the framing GET would have had.
        return _UNTIL_CLOSE[head_request]
    return _CHUNKED[keep_alive][head_request]
