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


class Chunks:
    """A recv_into that hands out a byte stream at most `step` bytes at a time."""

    def __init__(self, stream: bytes, step: int) -> None:
        self.stream = stream
        self.step = step
        self.offset = 0

    def __call__(self, target: memoryview) -> int:
        piece = self.stream[self.offset : self.offset + min(self.step, len(target))]
        target[: len(piece)] = piece
        self.offset += len(piece)
        return len(piece)


def read_all(reader: link.FrameReader) -> list[tuple[int, int, object]]:
    got = []
    while frames := reader.read():
        got += [(kind, rid, link.decode(kind, payload)) for kind, rid, payload in frames]
    return got


def test_frame_reader_reads_any_split_and_large_frames_whole() -> None:
    fields = (b"POST", b"/", "1.1", [(b"Host", b"h")], b"", "", "1.2.3.4")
    big = bytes(range(256)) * 1000  # larger than the reader's buffer below
    stream = b"".join(
        [
            link.encode(link.WINDOW, 3, 100),
            *link.encode_request(4, fields, [big[:100_000], big[100_000:]]),
            link.encode_body(5, b"y" * 300),
            *link.encode_request(6, fields, [b"small"]),
            link.encode(link.CANCEL, 5),
        ]
    )
    for step in (1, 7, 4096, 64 * 1024, len(stream)):
        got = read_all(link.FrameReader(Chunks(stream, step), size=32 * 1024))
        assert [(kind, rid) for kind, rid, _ in got] == [
            (link.WINDOW, 3),
            (link.REQUEST, 4),
            (link.BODY, 5),
            (link.REQUEST, 6),
            (link.CANCEL, 5),
        ]
        assert got[0][2] == 100
        request = got[1][2]
        assert isinstance(request, tuple)
        assert request[link.BODY_FIELD] == big
        assert request[link.BODY_FIELD + 1 :] == fields[link.BODY_FIELD + 1 :]
        assert got[2][2] == b"y" * 300
        assert got[3][2] == (*fields[: link.BODY_FIELD], b"small", *fields[link.BODY_FIELD + 1 :])


def test_frame_reader_reads_large_frames_into_their_own_buffer() -> None:
    fields: tuple[object, ...] = (b"POST", b"/", "1.1", [], b"", "")
    frame = b"".join(link.encode_request(1, fields, [b"z" * 50_000]))
    [(_, _, payload)] = link.FrameReader(Chunks(frame, 1000), size=4096).read()
    assert isinstance(payload, bytearray)  # read into a buffer of its own
    body = link.decode(link.REQUEST, payload)[link.BODY_FIELD]
    assert type(body) is bytes and body == b"z" * 50_000  # what io.BytesIO shares


def test_frame_reader_end_of_stream() -> None:
    assert link.FrameReader(Chunks(b"", 10)).read() == []
    cut = link.encode_body(1, b"abc")[:-1]
    with pytest.raises(link.LinkError):
        link.FrameReader(Chunks(cut, 10)).read()
    big_cut = link.encode_body(1, b"a" * 10_000)[:-1]
    with pytest.raises(link.LinkError):
        link.FrameReader(Chunks(big_cut, 10), size=1024).read()
