"""The one framing decision every response goes through, and the errors that render themselves."""

from __future__ import annotations

import pytest

from maitred.front.spool import SpoolError
from maitred.http.errors import (
    RETRY_AFTER,
    BodyTooLarge,
    HeaderFieldsTooLarge,
    HTTPError,
    NotImplementedFraming,
    ProtocolError,
    RequestLineTooLong,
    RequestTimeout,
    error_for,
    simple_response,
)
from maitred.http.framing import BodyEnd, frame
from maitred.http.parser import Limits, RequestParser
from maitred.http.response import REASONS

CLOSE = b"Connection: close\r\n\r\n"
KEEP = b"Connection: keep-alive\r\n\r\n"
CHUNKED = b"Transfer-Encoding: chunked\r\n"
NONE, LENGTH, CHUNK, UNTIL_CLOSE = BodyEnd.NONE, BodyEnd.LENGTH, BodyEnd.CHUNKED, BodyEnd.CLOSE
DATE = b"Mon, 07 Dec 2026 12:00:00 GMT"

# (status, Content-Length or -1, version, keep-alive asked, HEAD) ->
# (where the body ends, keep-alive, body bytes written, the head's last lines)
CASES = [
    # A known length: the connection stays as the client asked.
    ((200, 5, "1.1", True, False), (LENGTH, True, True, b"\r\n")),
    ((200, 5, "1.1", False, False), (LENGTH, False, True, CLOSE)),
    ((200, 5, "1.0", True, False), (LENGTH, True, True, KEEP)),
    ((200, 5, "1.0", False, False), (LENGTH, False, True, CLOSE)),
    ((200, 0, "1.1", True, False), (LENGTH, True, True, b"\r\n")),
    # Unknown length: chunks for HTTP/1.1, the connection's end for HTTP/1.0.
    ((200, -1, "1.1", True, False), (CHUNK, True, True, CHUNKED + b"\r\n")),
    ((200, -1, "1.1", False, False), (CHUNK, False, True, CHUNKED + CLOSE)),
    ((200, -1, "1.0", True, False), (UNTIL_CLOSE, False, True, CLOSE)),
    ((200, -1, "1.0", False, False), (UNTIL_CLOSE, False, True, CLOSE)),
    # HEAD: the head GET would have had, no body bytes.
    ((200, 5, "1.1", True, True), (LENGTH, True, False, b"\r\n")),
    ((200, -1, "1.1", True, True), (CHUNK, True, False, CHUNKED + b"\r\n")),
    ((200, -1, "1.0", True, True), (UNTIL_CLOSE, False, False, CLOSE)),
    ((200, 5, "1.0", True, True), (LENGTH, True, False, KEEP)),
    # Statuses that never have a body: no framing field, the connection as asked.
    ((204, -1, "1.1", True, False), (NONE, True, False, b"\r\n")),
    ((204, -1, "1.0", True, False), (NONE, True, False, KEEP)),
    ((304, -1, "1.1", True, False), (NONE, True, False, b"\r\n")),
    ((304, 1234, "1.1", False, False), (NONE, False, False, CLOSE)),  # the app's length stays
    ((101, -1, "1.1", True, False), (NONE, True, False, b"\r\n")),
    ((199, -1, "1.0", False, True), (NONE, False, False, CLOSE)),
    # Errors and other statuses are framed like any response.
    ((404, 10, "1.1", True, False), (LENGTH, True, True, b"\r\n")),
    ((500, -1, "1.1", True, False), (CHUNK, True, True, CHUNKED + b"\r\n")),
    ((503, 20, "1.1", False, False), (LENGTH, False, True, CLOSE)),
]


@pytest.mark.parametrize(("given", "expected"), CASES)
def test_frame(given: tuple[int, int, str, bool, bool], expected: tuple[object, ...]) -> None:
    framing = frame(*given)
    assert (framing.end, framing.keep_alive, framing.write_body, framing.tail) == expected
    assert framing.chunked == (expected[0] is CHUNK)


def test_frame_allocates_nothing() -> None:
    """The answers are made at import: the hot path only looks one up."""
    assert frame(200, 5, "1.1", True, False) is frame(201, 7, "1.1", True, False)


def head_and_body(response: bytes) -> tuple[list[bytes], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    return head.split(b"\r\n"), body


@pytest.mark.parametrize(
    ("error", "status", "reason"),
    [
        (ProtocolError("bad"), 400, b"Bad Request"),
        (RequestTimeout("slow"), 408, b"Request Timeout"),
        (BodyTooLarge("big"), 413, REASONS[413]),  # its phrase depends on Python's version
        (RequestLineTooLong("long"), 414, REASONS[414]),
        (HeaderFieldsTooLarge("many"), 431, b"Request Header Fields Too Large"),
        (NotImplementedFraming("gzip"), 501, b"Not Implemented"),
        (SpoolError("disk", 503), 503, b"Service Unavailable"),
        (error_for(502), 502, b"Bad Gateway"),
        (error_for(504), 504, b"Gateway Timeout"),
        (HTTPError("shed", 503, RETRY_AFTER), 503, b"Service Unavailable"),
    ],
)
def test_errors_render_themselves(error: HTTPError, status: int, reason: bytes) -> None:
    lines, body = head_and_body(error.to_response(DATE, b"X-Request-ID: abc\r\n"))
    assert lines[0] == b"HTTP/1.1 %d %s" % (status, reason)
    assert body == b"%d %s\n" % (status, reason)
    assert b"Content-Length: %d" % len(body) in lines
    assert b"Content-Type: text/plain; charset=utf-8" in lines
    assert b"Date: " + DATE in lines and b"Server: maitred" in lines
    assert b"X-Request-ID: abc" in lines
    assert lines[-1] == b"Connection: close"  # the front gives the connection up
    assert (b"Retry-After: 1" in lines) == (error.headers == RETRY_AFTER)


def test_error_for_maps_each_status_to_one_rendering() -> None:
    assert error_for(502) is error_for(502)
    assert simple_response(502, DATE) == error_for(502).to_response(DATE)
    assert simple_response(503, DATE, RETRY_AFTER) == HTTPError("", 503, RETRY_AFTER).to_response(
        DATE
    )
    odd = simple_response(599, DATE)  # a status without a reason phrase still renders
    assert odd.startswith(b"HTTP/1.1 599 Error\r\n") and odd.endswith(b"\r\n\r\n599 Error\n")


def test_a_parser_error_renders_the_status_it_carries() -> None:
    parser = RequestParser(Limits())
    with pytest.raises(ProtocolError) as caught:
        parser.feed(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
    lines, _ = head_and_body(caught.value.to_response(DATE))
    assert lines[0] == b"HTTP/1.1 501 Not Implemented"


def test_error_fields_for_answers_that_keep_the_connection() -> None:
    """Static files send an error's page on a connection that stays open: the fields and the
    body come from the same error, the framing from frame()."""
    error = error_for(404)
    assert error.fields() == (
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n" % len(error.body)
    )
    assert error.body == b"404 Not Found\n"
