"""The link codec: frames survive any split of the byte stream."""

from __future__ import annotations

import pytest

from maitred import link


def test_roundtrip_through_frame_buffer_in_any_split() -> None:
    frames = [
        link.encode(link.HEAD, 7, (200, -1, b"HTTP/1.1 200 OK\r\n")),
        link.encode_body(7, b"x" * 1000),
        link.encode(link.END, 7),
        link.encode(link.FULL, 9, (404, 3, b"HTTP/1.1 404 Not Found\r\n", b"abc")),
        link.encode(link.DRAIN, 0),
    ]
    stream = b"".join(frames)
    expected = [
        (link.HEAD, 7, (200, -1, b"HTTP/1.1 200 OK\r\n")),
        (link.BODY, 7, b"x" * 1000),
        (link.END, 7, ()),
        (link.FULL, 9, (404, 3, b"HTTP/1.1 404 Not Found\r\n", b"abc")),
        (link.DRAIN, 0, ()),
    ]
    for step in (1, 2, 5, 9, 64, len(stream)):
        buffer = link.FrameBuffer()
        got = []
        for start in range(0, len(stream), step):
            got += [
                (kind, rid, link.decode(kind, payload))
                for kind, rid, payload in buffer.feed(stream[start : start + step])
            ]
        assert got == expected


def test_oversized_frames_and_bad_payloads_are_errors() -> None:
    with pytest.raises(link.LinkError):
        link.FrameBuffer().feed(link.HEADER.pack(link.MAX_FRAME + 1, link.BODY, 1))
    with pytest.raises(link.LinkError):
        link.decode(link.FULL, b"\xff\x00")


def test_request_body_travels_as_the_frame_tail() -> None:
    fields = (b"POST", b"/", "1.1", [(b"Host", b"h")], b"", "", "1.2.3.4")
    buffers = link.encode_request(3, fields, [b"abc", b"", b"def"])
    assert buffers[1:] == [b"abc", b"", b"def"]  # the chunks themselves, not copies
    [(kind, rid, payload)] = link.FrameBuffer().feed(b"".join(buffers))
    value = link.decode(kind, payload)
    assert (kind, rid) == (link.REQUEST, 3)
    assert value[link.BODY_FIELD] == b"abcdef"
    assert value[: link.BODY_FIELD] == fields[: link.BODY_FIELD]
    assert value[link.BODY_FIELD + 1 :] == fields[link.BODY_FIELD + 1 :]
    [(_, _, empty)] = link.FrameBuffer().feed(b"".join(link.encode_request(4, fields, [])))
    assert link.decode(link.REQUEST, empty) == fields
