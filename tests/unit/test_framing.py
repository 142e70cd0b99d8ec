"""The one framing decision every response goes through."""

from __future__ import annotations

import pytest

from maitred.http.framing import BodyEnd, frame

CLOSE = b"Connection: close\r\n\r\n"
KEEP = b"Connection: keep-alive\r\n\r\n"
CHUNKED = b"Transfer-Encoding: chunked\r\n"
NONE, LENGTH, CHUNK, UNTIL_CLOSE = BodyEnd.NONE, BodyEnd.LENGTH, BodyEnd.CHUNKED, BodyEnd.CLOSE

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
