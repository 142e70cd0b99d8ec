"""The link codec: every message survives the trip, and nothing else gets through."""

from __future__ import annotations

import marshal
from collections.abc import Callable

import pytest
from test_heap import MIB, resident_anonymous

from maitred import link
from maitred.front import dispatcher
from maitred.worker import main as worker_main

HEADERS = [(b"Host", b"h"), (b"Accept", b"*/*")]


def request(body: bytes = b"", spooled: bool = False) -> link.Request:
    return link.Request(
        b"POST", b"/x?y", "1.1", HEADERS, body, spooled,
        "10.0.0.1", "5555", "127.0.0.1", "8000", "http", 0.25, "id-1", "",
    )  # fmt: skip


def encode_request(rid: int, req: link.Request, chunks: list[bytes]) -> list[bytes]:
    """A REQUEST frame as the front writes it: the body as chunks after the fields."""
    fields = req._replace(body=b"")
    return link.encode_request(rid, chunks, *fields)


# One message of each kind, and how its sender encodes it.
SAMPLES: list[tuple[link.Message, Callable[[int], bytes]]] = [
    (link.Hello(123, 2, 4), lambda rid: link.encode_hello(rid, 123, 2, 4)),
    (
        link.Head(200, -1, b"HTTP/1.1 200 OK\r\n"),
        lambda rid: link.encode_head(rid, 200, -1, b"HTTP/1.1 200 OK\r\n"),
    ),
    (link.Body(b"x" * 1000), lambda rid: link.encode_body(rid, b"x" * 1000)),
    (link.End(), link.encode_end),
    (
        link.Full(404, 3, b"HTTP/1.1 404 Not Found\r\n", b"abc"),
        lambda rid: link.encode_full(rid, 404, 3, b"HTTP/1.1 404 Not Found\r\n", b"abc"),
    ),
    (link.Abort(), link.encode_abort),
    (link.Drain(), link.encode_drain),
    (
        link.File(200, 70000, b"HTTP/1.1 200 OK\r\n", 9, 2049, 2**40, 512),
        lambda rid: link.encode_file(rid, 200, 70000, b"HTTP/1.1 200 OK\r\n", 9, 2049, 2**40, 512),
    ),
    (request(b"abcdef"), lambda rid: b"".join(encode_request(rid, request(), [b"abc", b"def"]))),
    (link.Window(65536), lambda rid: link.encode_window(rid, 65536)),
    (link.Cancel(), link.encode_cancel),
    (link.Drained(), link.encode_drained),
    (link.Timeout(), link.encode_timeout),
    (link.Taken(True), lambda rid: link.encode_taken(rid, True)),
]


def kind_of(message: link.Message) -> link.Kind:
    [kind] = [kind for kind, cls in link.MESSAGES.items() if cls is type(message)]
    return kind


def test_the_samples_cover_every_message() -> None:
    assert {kind_of(message) for message, _ in SAMPLES} == set(link.MESSAGES) == set(link.Kind)


@pytest.mark.parametrize(("message", "encode"), SAMPLES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(message: link.Message, encode: Callable[[int], bytes]) -> None:
    [(kind, rid, payload)] = link.FrameBuffer().feed(encode(7))
    assert (kind, rid) == (kind_of(message), 7)
    decoded = link.decode(kind, payload)
    assert type(decoded) is type(message) and decoded == message


def test_each_side_takes_exactly_the_messages_of_the_other() -> None:
    from_worker = {kind for kind in link.Kind if kind < link.Kind.REQUEST}
    assert set(dispatcher.RECEIVERS) == from_worker
    assert set(worker_main.RECEIVERS) == set(link.Kind) - from_worker


def record(log: list[object], rid: int, *fields: object) -> None:
    log.append((rid, *fields))


def test_receivers_hand_each_handler_its_fields() -> None:
    got: list[object] = []
    table: link.Receivers[list[object]] = link.Receivers(
        link.on(link.Full)(record),
        link.on(link.End)(record),
        link.on(link.Body)(record),
        link.on_request(record),
    )
    stream = b"".join(
        [
            link.encode_full(1, 200, 2, b"H", b"ok"),
            link.encode_body(2, b"d"),
            link.encode_end(2),
            *encode_request(3, request(), [b"abc"]),
        ]
    )
    table.dispatch(got, link.FrameBuffer().feed(stream))
    assert got == [(1, 200, 2, b"H", b"ok"), (2, b"d"), (2,), (3, request(b"abc"))]
    assert type(got[3][1]) is link.Request  # type: ignore[index]
    with pytest.raises(ValueError, match="two receivers for END"):
        link.Receivers(link.on(link.End)(record), link.on(link.End)(record))
    with pytest.raises(ValueError, match="on_request"):
        link.on(link.Request)


def frame(kind: int, rid: int, payload: bytes) -> bytes:
    return link.HEADER.pack(len(payload), kind, rid) + payload


def dispatch_to_the_front(data: bytes) -> None:
    dispatcher.RECEIVERS.dispatch(None, link.FrameBuffer().feed(data))  # type: ignore[arg-type]


def test_a_frame_type_a_side_does_not_take_is_refused() -> None:
    with pytest.raises(link.ProtocolViolation, match="unknown frame type 99"):
        dispatch_to_the_front(frame(99, 0, b""))
    with pytest.raises(link.ProtocolViolation, match="unexpected REQUEST message"):
        dispatch_to_the_front(b"".join(encode_request(3, request(), [])))
    with pytest.raises(link.ProtocolViolation, match="unexpected HELLO message"):
        worker_main.RECEIVERS.dispatch(
            None,  # type: ignore[arg-type]
            link.FrameBuffer().feed(link.encode_hello(0, 1, 1, 1)),
        )


def dumps(value: object) -> bytes:
    return marshal.dumps(value, link.MARSHAL_VERSION)


@pytest.mark.parametrize(
    ("kind", "payload", "says"),
    [
        (link.Kind.FULL, dumps((200, 2, b"H")), r"malformed FULL message: \(int, int, bytes\)"),
        (link.Kind.FULL, dumps([200, 2, b"H", b"ok"]), r"malformed FULL message: \(list\)"),
        (link.Kind.FULL, b"\xff\x00", "malformed FULL message: bad marshal data"),
        (link.Kind.HEAD, b"", "malformed HEAD message: EOF"),
        (link.Kind.HELLO, dumps((1, 2, 3, 4)), r"\(int, int, int, int\) where \(int, int, int\)"),
        (link.Kind.WINDOW, dumps(100), r"malformed WINDOW message: \(int\) where \(int\)"),
        (link.Kind.END, dumps((1,)), r"malformed END message: \(int\) where \(\)"),
        (link.Kind.CANCEL, b"junk", "malformed CANCEL message"),
        (link.Kind.FILE, dumps((200, 1, b"H", 9, 1, 1)), "malformed FILE message"),
        (link.Kind.REQUEST, b"\x01", "malformed REQUEST message: unpack_from requires"),
        (link.Kind.REQUEST, link.REQUEST_META.pack(1) + b"i", "malformed REQUEST message"),
        (
            link.Kind.REQUEST,
            link.REQUEST_META.pack(len(dumps((b"GET", b"/")))) + dumps((b"GET", b"/")),
            r"malformed REQUEST message: \(bytes, bytes\) where \(bytes, bytes, str, list,",
        ),
    ],
)
def test_malformed_messages_are_refused(kind: int, payload: bytes, says: str) -> None:
    """Not a tuple of the declared number of fields: refused by both ends and by decode()."""
    with pytest.raises(link.ProtocolViolation, match=says):
        link.decode(kind, payload)
    table = dispatcher.RECEIVERS if kind < link.Kind.REQUEST else worker_main.RECEIVERS
    with pytest.raises(link.ProtocolViolation, match=says):
        table.dispatch(None, link.FrameBuffer().feed(frame(kind, 5, payload)))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "fields", "says"),
    [
        (link.Kind.FULL, (200, 2, "head as text", b"ok"), r"\(int, int, str, bytes\) where"),
        (link.Kind.HELLO, (1, 2, True), r"\(int, int, bool\) where \(int, int, int\)"),
        (link.Kind.TAKEN, (1,), r"malformed TAKEN message: \(int\) where \(bool\)"),
    ],
)
def test_decode_checks_the_field_types(kind: int, fields: tuple[object, ...], says: str) -> None:
    """The ends leave the field types to mypy (see maitred.link); decode() checks them."""
    with pytest.raises(link.ProtocolViolation, match=says):
        link.decode(kind, dumps(fields))
    bad = b"".join(encode_request(1, request()._replace(queue_time=1), []))  # type: ignore[arg-type]
    [(_, _, payload)] = link.FrameBuffer().feed(bad)
    says = r"str, int, str, str, str\) where \(.*float, str, str, str\)"
    with pytest.raises(link.ProtocolViolation, match=says):
        link.decode(link.Kind.REQUEST, payload)


def test_roundtrip_through_frame_buffer_in_any_split() -> None:
    stream = b"".join(encode(7) for _, encode in SAMPLES)
    expected = [(kind_of(message), 7, message) for message, _ in SAMPLES]
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
        link.FrameBuffer().feed(link.HEADER.pack(link.MAX_FRAME + 1, link.Kind.BODY, 1))
    with pytest.raises(link.LinkError):
        link.decode(link.Kind.FULL, b"\xff\x00")


def test_request_body_travels_as_the_frame_tail() -> None:
    fields = request()
    buffers = encode_request(3, fields, [b"abc", b"", b"def"])
    assert buffers[1:] == [b"abc", b"", b"def"]  # the chunks themselves, not copies
    [(kind, rid, payload)] = link.FrameBuffer().feed(b"".join(buffers))
    value = link.decode(kind, payload)
    assert (kind, rid) == (link.Kind.REQUEST, 3)
    assert isinstance(value, link.Request)
    assert value.body == b"abcdef"
    assert value._replace(body=b"") == fields
    [(_, _, empty)] = link.FrameBuffer().feed(b"".join(encode_request(4, fields, [])))
    assert link.decode(link.Kind.REQUEST, empty) == fields


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
    fields = request()
    big = bytes(range(256)) * 1000  # larger than the reader's buffer below
    stream = b"".join(
        [
            link.encode_window(3, 100),
            *encode_request(4, fields, [big[:100_000], big[100_000:]]),
            link.encode_body(5, b"y" * 300),
            *encode_request(6, fields, [b"small"]),
            link.encode_cancel(5),
        ]
    )
    for step in (1, 7, 4096, 64 * 1024, len(stream)):
        got = read_all(link.FrameReader(Chunks(stream, step), size=32 * 1024))
        assert [(kind, rid) for kind, rid, _ in got] == [
            (link.Kind.WINDOW, 3),
            (link.Kind.REQUEST, 4),
            (link.Kind.BODY, 5),
            (link.Kind.REQUEST, 6),
            (link.Kind.CANCEL, 5),
        ]
        assert got[0][2] == link.Window(100)
        assert got[1][2] == fields._replace(body=big)
        assert got[2][2] == link.Body(b"y" * 300)
        assert got[3][2] == fields._replace(body=b"small")


def test_frame_reader_reads_large_frames_into_their_own_buffer() -> None:
    frame = b"".join(encode_request(1, request(), [b"z" * 50_000]))
    [(_, _, payload)] = link.FrameReader(Chunks(frame, 1000), size=4096).read()
    assert isinstance(payload, bytearray)  # read into a buffer of its own
    decoded = link.decode(link.Kind.REQUEST, payload)
    assert isinstance(decoded, link.Request)
    body = decoded.body
    assert type(body) is bytes and body == b"z" * 50_000  # what io.BytesIO shares


def test_frame_readers_hold_no_memory_they_have_not_read_into() -> None:
    # A worker keeps one reader per link: its buffer's pages are only taken when written.
    before = resident_anonymous()
    readers = [link.FrameReader(Chunks(b"", 10)) for _ in range(16)]  # 4 MiB of buffers
    assert resident_anonymous() - before < MIB
    assert all(reader.read() == [] for reader in readers)


def test_a_large_body_reaches_the_worker_in_the_buffer_it_was_received_in() -> None:
    """Not copied out into bytes: wsgi.input reads it where it lies (worker/bodyinput.py)."""
    frame = b"".join(encode_request(7, request(), [b"z" * 50_000]))
    [(_, rid, payload)] = link.FrameReader(Chunks(frame, 1000), size=4096).read()
    got: list[link.Request] = []
    _, receive = link.on_request(lambda target, rid, req: got.append(req))
    receive(None, rid, payload)
    body = got[0].body
    assert isinstance(body, memoryview) and body.obj is payload
    assert body == b"z" * 50_000


def test_frame_reader_end_of_stream() -> None:
    assert link.FrameReader(Chunks(b"", 10)).read() == []
    cut = link.encode_body(1, b"abc")[:-1]
    with pytest.raises(link.LinkError):
        link.FrameReader(Chunks(cut, 10)).read()
    big_cut = link.encode_body(1, b"a" * 10_000)[:-1]
    with pytest.raises(link.LinkError):
        link.FrameReader(Chunks(big_cut, 10), size=1024).read()
