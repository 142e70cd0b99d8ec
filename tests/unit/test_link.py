"""The link codec: frames survive any split of the byte stream."""

from __future__ import annotations

import io

import pytest

from maitred import link


def test_roundtrip_through_frame_buffer_in_any_split() -> None:
    frames = [
        link.encode(link.HEAD, (200, -1, b"HTTP/1.1 200 OK\r\n")),
        link.encode_body(b"x" * 1000),
        link.encode(link.END),
        link.encode(link.FULL, (404, 3, b"HTTP/1.1 404 Not Found\r\n", b"abc")),
    ]
    stream = b"".join(frames)
    expected = [
        (link.HEAD, (200, -1, b"HTTP/1.1 200 OK\r\n")),
        (link.BODY, b"x" * 1000),
        (link.END, ()),
        (link.FULL, (404, 3, b"HTTP/1.1 404 Not Found\r\n", b"abc")),
    ]
    for step in (1, 2, 5, 64, len(stream)):
        buffer = link.FrameBuffer()
        got = []
        for start in range(0, len(stream), step):
            got += [(k, link.decode(k, p)) for k, p in buffer.feed(stream[start : start + step])]
        assert got == expected


def test_read_frame_from_blocking_stream() -> None:
    stream = io.BytesIO(link.encode(link.REQUEST, (b"GET", b"/")) + link.encode(link.END))
    assert link.read_frame(stream) == (link.REQUEST, (b"GET", b"/"))
    assert link.read_frame(stream) == (link.END, ())
    assert link.read_frame(stream) is None


def test_broken_streams_are_errors() -> None:
    with pytest.raises(link.LinkError):
        link.read_frame(io.BytesIO(link.encode(link.END)[:3]))
    with pytest.raises(link.LinkError):
        link.read_frame(io.BytesIO(link.encode(link.FULL, (1, 2))[:-1]))
    with pytest.raises(link.LinkError):
        link.FrameBuffer().feed(link.HEADER.pack(link.MAX_FRAME + 1, link.BODY))
