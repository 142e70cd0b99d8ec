"""The link's codec: encoders, decoders, the receiving tables, and the frame readers.

See maitred.link for the theory of operation and the frame format; the messages are declared
in maitred.link.messages.
"""

from __future__ import annotations

import marshal
import mmap
import struct
from collections.abc import Callable, Iterable, Sequence
from typing import (
    Concatenate,
    Generic,
    cast,
)

from maitred.link.messages import (
    _EMPTY,
    _FIELD_TYPES,
    _KIND_NAMES,
    _KIND_OF,
    BODY_FIELD,
    HEADER,
    HEADER_SIZE,
    MARSHAL_VERSION,
    MAX_FRAME,
    MESSAGES,
    READ_SIZE,
    REQUEST_META,
    Abort,
    Body,
    Cancel,
    Chunk,
    Drain,
    Drained,
    End,
    Field,
    File,
    Frame,
    Full,
    Head,
    Hello,
    Kind,
    LinkError,
    Message,
    P,
    Payload,
    ProtocolViolation,
    Request,
    T,
    Taken,
    Timeout,
    Window,
    kind_name,
)

# --- encoding ---


def _encoder(message: Callable[P, Message]) -> Callable[Concatenate[int, P], bytes]:
    """The frame of a message: encode(rid, *fields), the fields as the NamedTuple declares them."""
    kind = _KIND_OF[message]
    pack = HEADER.pack
    if not _FIELD_TYPES[message]:
        empty = len(_EMPTY)

        def encode_empty(rid: int) -> bytes:
            return pack(empty, kind, rid) + _EMPTY

        return cast("Callable[Concatenate[int, P], bytes]", encode_empty)
    dumps = marshal.dumps

    def encode(rid: int, *fields: Field) -> bytes:
        payload = dumps(fields, MARSHAL_VERSION)
        return pack(len(payload), kind, rid) + payload

    return cast("Callable[Concatenate[int, P], bytes]", encode)


def _request_encoder(
    message: Callable[P, Request],
) -> Callable[Concatenate[int, Sequence[Chunk], P], list[Chunk]]:
    """A REQUEST frame as buffers to write in order: encode(rid, body chunks, *fields). The
    chunks are not copied; the body field goes empty (b"")."""
    kind = _KIND_OF[message]
    dumps = marshal.dumps

    def encode(rid: int, body: Sequence[Chunk], *fields: Field) -> list[Chunk]:
        meta = dumps(fields, MARSHAL_VERSION)
        size = REQUEST_META.size + len(meta) + sum(map(len, body))
        return [HEADER.pack(size, kind, rid) + REQUEST_META.pack(len(meta)) + meta, *body]

    return cast("Callable[Concatenate[int, Sequence[Chunk], P], list[Chunk]]", encode)


encode_hello = _encoder(Hello)
encode_head = _encoder(Head)
encode_end = _encoder(End)
encode_full = _encoder(Full)
encode_abort = _encoder(Abort)
encode_drain = _encoder(Drain)
encode_file = _encoder(File)
encode_request = _request_encoder(Request)
encode_window = _encoder(Window)
encode_cancel = _encoder(Cancel)
encode_drained = _encoder(Drained)
encode_timeout = _encoder(Timeout)
encode_taken = _encoder(Taken)


def encode_body(rid: int, data: bytes) -> bytes:
    return HEADER.pack(len(data), Kind.BODY, rid) + data


# --- decoding: shapes at the ends, field types too in decode() (see the module docstring) ---


def _malformed(message: object, value: object) -> ProtocolViolation:
    expected = ", ".join(t.__name__ for t in _FIELD_TYPES[message])
    if isinstance(value, tuple):
        got = ", ".join(type(field).__name__ for field in value)
    else:
        got = type(value).__name__
    name = kind_name(_KIND_OF[message])
    return ProtocolViolation(f"malformed {name} message: ({got}) where ({expected}) was expected")


def _loads(message: object, data: Payload) -> object:
    try:
        return marshal.loads(data)
    except (EOFError, ValueError, TypeError) as exc:
        name = kind_name(_KIND_OF[message])
        raise ProtocolViolation(f"malformed {name} message: {exc}") from None


def _fields(message: object, payload: Payload) -> tuple[Field, ...]:
    """The fields of a message, once their number is checked."""
    value = _loads(message, payload)
    if type(value) is not tuple or len(value) != len(_FIELD_TYPES[message]):
        raise _malformed(message, value)
    return cast("tuple[Field, ...]", value)


def _decode_request(payload: Payload) -> Request:
    start = REQUEST_META.size
    try:
        (size,) = REQUEST_META.unpack_from(payload)
        value = marshal.loads(payload[start : start + size])
    except (EOFError, ValueError, TypeError, struct.error) as exc:
        raise ProtocolViolation(f"malformed REQUEST message: {exc}") from None
    if type(value) is not tuple or len(value) != _REQUEST_SIZE:
        raise _malformed(Request, value)
    if len(payload) == start + size:
        return tuple.__new__(Request, value)  # no body, the common case
    # A large frame's payload is a bytearray of its own (FrameReader): its body stays where it
    # was received, and the worker reads it through this view (maitred.worker.bodyinput). A
    # small frame's body is copied out as bytes, cheap at that size, which io.BytesIO shares.
    tail = memoryview(payload)[start + size :]
    body = tail if payload.__class__ is bytearray else bytes(tail)
    return tuple.__new__(Request, (*value[:BODY_FIELD], body, *value[BODY_FIELD + 1 :]))


_REQUEST_SIZE = len(Request._fields)


def decode(kind: int, payload: Payload) -> Message:
    """The message of any frame (BODY's too, as a Body), its field types checked; for tests
    and tools. The two ends read frames through their Receivers instead."""
    message = MESSAGES.get(cast("Kind", kind))
    if message is None:
        raise ProtocolViolation(kind_name(kind))
    if message is Body:
        return Body(bytes(payload))
    value: Message
    if message is Request:
        value = _decode_request(payload)
        if type(value.body) is memoryview:  # as the frame carried it (see Request.body)
            value = value._replace(body=bytes(value.body))
    else:
        value = tuple.__new__(message, _fields(message, payload))
    if tuple(map(type, value)) != _FIELD_TYPES[message]:
        raise _malformed(message, value)
    return value


# --- receiving: one table per side ---

Receive = Callable[[T, int, Payload], None]
Route = tuple[int, Receive[T]]


def on(message: Callable[P, Message]) -> Receiving[P]:
    """A table entry, read as a phrase: ``on(Full)(WorkerConnection._full)``."""
    return Receiving(message)


class Receiving(Generic[P]):
    """A table entry: ``on(Message)(handler)`` calls ``handler(target, rid, *fields)`` with the
    fields of each frame of that type, once its shape is checked.

    The handler takes the fields as its parameters, named and typed as the NamedTuple declares
    them (mypy checks this, through P), as an encoder takes them: no message object is built
    on the way, nor taken apart again. A BODY handler gets the bytes. REQUEST, which its
    receiver keeps whole, has :func:`on_request`.
    """

    __slots__ = ("message",)

    def __init__(self, message: Callable[P, Message]) -> None:
        if _KIND_OF[message] == Kind.REQUEST:
            raise ValueError("REQUEST is received with on_request")
        self.message = message

    def __call__(self, handler: Callable[Concatenate[T, int, P], None]) -> Route[T]:
        message = self.message
        kind = _KIND_OF[message]
        size = len(_FIELD_TYPES[message])
        if message is Body:  # P is (data: bytes)
            take_bytes = cast("Callable[[T, int, bytes], None]", handler)

            def receive_body(target: T, rid: int, payload: Payload) -> None:
                take_bytes(target, rid, payload if type(payload) is bytes else bytes(payload))

            return kind, receive_body
        if not size:  # P is ()
            take_nothing = cast("Callable[[T, int], None]", handler)

            def receive_empty(target: T, rid: int, payload: Payload) -> None:
                if payload != _EMPTY:
                    raise _malformed(message, _loads(message, payload))
                take_nothing(target, rid)

            return kind, receive_empty
        loads = marshal.loads
        take_fields = cast("Callable[..., None]", handler)  # with the fields P declares

        def receive(target: T, rid: int, payload: Payload) -> None:
            try:
                value = loads(payload)
            except (EOFError, ValueError, TypeError):
                value = _loads(message, payload)  # raises, saying why
            if type(value) is not tuple or len(value) != size:
                raise _malformed(message, value)
            take_fields(target, rid, *value)

        return kind, receive


def on_request(handler: Callable[[T, int, Request], None]) -> Route[T]:
    """The table entry for REQUEST: the handler gets the Request, body included."""

    def receive(target: T, rid: int, payload: Payload) -> None:
        handler(target, rid, _decode_request(payload))

    return Kind.REQUEST, receive


class Receivers(dict[int, Receive[T]]):
    """One side's table of the messages it takes: frame type -> what to do with it.

    Each side reads a frame as ``RECEIVERS[kind](side, rid, payload)``: a frame of a type the
    table lacks raises ProtocolViolation (``__missing__``), as does a payload that is not its
    message. (A dict, looked up in the loop itself: a method call per read would cost about
    500 instructions more.)
    """

    def __init__(self, *routes: Route[T]) -> None:
        super().__init__()
        for kind, receive in routes:
            if kind in self:
                raise ValueError(f"two receivers for {kind_name(kind)}")
            self[kind] = receive

    def __missing__(self, kind: int) -> Receive[T]:
        name = kind_name(kind)
        if kind in _KIND_NAMES:
            name = f"unexpected {name} message"
        raise ProtocolViolation(name)

    def dispatch(self, target: T, frames: Iterable[Frame]) -> None:
        """Each frame to its receiver (for tests and tools: the ends loop themselves)."""
        for kind, rid, payload in frames:
            self[kind](target, rid, payload)


# --- framing ---


class FrameBuffer:
    """Splits a byte stream into (kind, rid, payload) frames, however the stream is cut."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        pending = self._pending
        if pending:
            pending += data  # amortised linear, unlike re-joining bytes on every read
            frames, used = _split(pending)
            del pending[:used]
        else:  # the common case: the read holds whole frames, parse it where it lies
            frames, used = _split(data)
            if used < len(data):
                pending += data[used:]
        return frames


class FrameReader:
    """Reads frames with a blocking ``recv_into``, for the worker's link.

    Reads go into one reused buffer (a fresh 256 KiB object per read costs an mmap, page faults
    and an munmap). The buffer is an anonymous map, whose pages the kernel gives zeroed on the
    first write: a bytearray would be zero-filled at once, so a worker that only ever reads
    small requests would hold all of it, private, for nothing. A frame too large for the
    buffer, a big request body, is read straight into a bytearray of its own and returned as it
    is, without a copy.
    """

    __slots__ = ("_buffer", "_end", "_recv_into", "_start", "_view")

    def __init__(self, recv_into: Callable[[memoryview], int], size: int = READ_SIZE) -> None:
        self._recv_into = recv_into
        self._buffer = mmap.mmap(-1, size)
        self._view = memoryview(self._buffer)
        self._start = 0  # the unparsed bytes are buffer[start:end]
        self._end = 0

    def read(self) -> list[Frame]:
        """The next frames (at least one), or [] once the peer has closed the link."""
        while True:
            if self._start < self._end:  # not after a read that ended on a frame boundary
                frames, used = _split(self._view[self._start : self._end])
                self._start += used
                if frames:
                    return frames
            pending = self._end - self._start
            if pending >= HEADER_SIZE:
                length = HEADER.unpack_from(self._buffer, self._start)[0]
                if HEADER_SIZE + length > len(self._buffer):
                    return [self._read_large(length)]
            if not self._fill():
                if pending:
                    raise LinkError("the link closed inside a frame")
                return []

    def _fill(self) -> bool:
        """Read more after the unparsed bytes, moving them to the start first; False at EOF."""
        start, end = self._start, self._end
        if start == end:
            start = end = 0
        elif start:
            # Only a partial frame smaller than the buffer is ever moved (bytes() because the
            # two ranges may overlap).
            self._buffer[: end - start] = bytes(self._view[start:end])
            start, end = 0, end - start
        size = self._recv_into(self._view[end:])
        self._start, self._end = start, end + size
        return size > 0

    def _read_large(self, length: int) -> Frame:
        _, kind, rid = HEADER.unpack_from(self._buffer, self._start)
        payload = bytearray(length)
        begin = self._start + HEADER_SIZE
        got = self._end - begin
        payload[:got] = self._view[begin : self._end]
        self._start = self._end = 0
        target = memoryview(payload)
        while got < length:
            size = self._recv_into(target[got:])
            if not size:
                raise LinkError("the link closed inside a frame")
            got += size
        return kind, rid, payload


def _split(buffer: bytes | bytearray | memoryview) -> tuple[list[Frame], int]:
    """The whole frames at the start of buffer, and how many bytes they took."""
    frames: list[Frame] = []
    offset = 0
    end = len(buffer)
    unpack = HEADER.unpack_from
    while end - offset >= HEADER_SIZE:
        length, kind, rid = unpack(buffer, offset)
        if length > MAX_FRAME:
            raise ProtocolViolation(f"a frame of {length} bytes")
        stop = offset + HEADER_SIZE + length
        if stop > end:
            break
        frames.append((kind, rid, bytes(buffer[offset + HEADER_SIZE : stop])))
        offset = stop
    return frames, offset
