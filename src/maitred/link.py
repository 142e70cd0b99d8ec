"""The link between the front and the workers: its messages, their frames, how each side reads them.

Theory of operation
-------------------
Each worker process holds one Unix stream connection to the front, its *link*. Frames on it
carry a request id (``rid``), so the requests of all of a worker's threads share one socket, and
the front writes everything it has for a worker in one system call per event-loop turn; the
worker reads many frames per ``recv``. Per request, the only messages are:

    front  -> worker:  REQUEST, then WINDOW* (flow-control credit), or CANCEL, or TIMEOUT
    worker -> front:   HEAD, BODY*, END    or  FULL (head, body and end in one frame)
                       ABORT (the app failed after the head was sent, or the request was
                              cancelled: the thread is free again either way)
                       FILE (a wsgi.file_wrapper file: the front answers TAKEN; then END
                             if it sends the file itself, else HEAD, BODY*, END as usual)

The front sends a worker a REQUEST only while it has an idle thread, so a worker never holds
more requests than threads. A thread may send BODY bytes only while it has credit: it starts
with WINDOW_SIZE per request and the front returns credit as it hands bytes to the client. A slow
reader therefore stops one thread, never the whole link.

Worker-level frames use rid 0: HELLO (after connecting), DRAIN (the worker wants to stop: send
it nothing new) and DRAINED (the front's answer, after which no REQUEST can follow).

The closed set of messages
--------------------------
Every message is declared here once, as a NamedTuple of typed fields (:class:`Full`,
:class:`Request`, ...), with its frame type, a :class:`Kind`. Both ends are checked against that
one declaration by mypy, without building a NamedTuple on the hot path (marshal refuses tuple
subclasses, and building one costs several times a plain tuple):

* A sender calls the message's encoder, ``encode_full(rid, status, content_length, head,
  body)``, whose parameters mypy takes from the NamedTuple (a ParamSpec): a missing field or
  one of the wrong type is a type error. The encoder marshals the fields as a plain tuple.
  Fields go by position (a keyword argument is a TypeError at run time).
* A receiver reads frames through its side's table, a :class:`Receivers` built from
  ``on(Full)(WorkerConnection._full)`` entries: the handler takes the message's fields as its own
  parameters, which mypy checks against the NamedTuple, names and types. BODY's handler gets
  the bytes; REQUEST's (``on_request``) gets the :class:`Request` itself, which the worker keeps.

At run time a receiver checks each message's shape: its payload decodes to a tuple of the
declared number of fields. The field types are left to mypy at the sender: a check per field
costs about 300 instructions in CPython, a few percent of a hello-world request for the 13
fields of a REQUEST. :func:`decode` (tests, tools) checks them too.

A frame of a type the receiving side does not take (the other side's, or none at all), or a
payload that is not its message, is a :class:`ProtocolViolation`: the peer is broken, and nothing
after it on the link can be trusted. The front then closes that worker's link
(maitred.front.dispatcher); a worker stops, and the master starts another
(maitred.worker.main). Both say so in the error log.

A frame is a 9-byte header, payload length (u32), frame type (u8) and rid (u32), little-endian,
then the payload: the raw bytes for BODY, the marshalled tuple of the fields for the others
(marshal is fast, and both ends always run the same Python). This module is the only one that
knows the format.
"""

from __future__ import annotations

import marshal
import struct
from collections.abc import Callable, Iterable, Sequence
from enum import IntEnum
from typing import (
    Concatenate,
    Generic,
    NamedTuple,
    ParamSpec,
    TypeVar,
    cast,
    get_origin,
    get_type_hints,
)

HEADER = struct.Struct("<IBI")
HEADER_SIZE = HEADER.size

# Largest BODY payload in one frame: the front holds a whole frame before forwarding it.
MAX_BODY_FRAME = 256 * 1024

# The reused buffer a FrameReader reads into; a frame too large for it is read into its own.
READ_SIZE = 256 * 1024

# Largest frame accepted at all; a peer sending more is broken and is disconnected. A REQUEST
# carries an in-memory body (up to the body buffer size) plus its head.
MAX_FRAME = 64 * 1024 * 1024

# Version 2, not the newest: from 3 on, dumps builds a table of the objects it wrote on every
# call, to refer back to them, and loads a list of those it read. Frame values share no objects;
# without the table and the list, both ends do about a quarter less work per frame.
MARSHAL_VERSION = 2

_EMPTY = marshal.dumps((), MARSHAL_VERSION)

# A REQUEST's body travels as raw bytes after its marshalled fields (a u32 says how long those
# are), so the front can write the body chunks it received as they are, without copying them
# into a frame. The fields carry an empty body; decoding puts the tail back in its place.
REQUEST_META = struct.Struct("<I")


class Kind(IntEnum):
    """A frame's type, the u8 of its header: worker -> front below 20, front -> worker above."""

    HELLO = 1
    HEAD = 3
    BODY = 4
    END = 5
    FULL = 6
    ABORT = 7
    DRAIN = 8
    FILE = 9
    REQUEST = 20
    WINDOW = 21
    CANCEL = 22
    DRAINED = 23
    TIMEOUT = 24
    TAKEN = 25


class LinkError(Exception):
    """The link cannot go on: it closed inside a frame, or the peer broke the protocol."""


class ProtocolViolation(LinkError):
    """The peer sent a frame this side does not take, a malformed message or a frame too large:
    it is broken, and nothing after that on the link can be trusted."""


# --- worker -> front ---


class Hello(NamedTuple):
    """The first message on a new link (rid 0): which worker this is, how many threads it runs."""

    pid: int
    worker_id: int
    threads: int


class Head(NamedTuple):
    """A response's head; BODY messages and END follow."""

    status: int
    content_length: int  # -1 when the app gave none
    head: bytes  # the status line and header lines, without the final CRLF


class Body(NamedTuple):
    """Response body bytes, within the request's credit. The one message that travels raw:
    its receiver gets the bytes themselves (see :func:`on_body`)."""

    data: bytes


class End(NamedTuple):
    """The response is complete; the thread is free."""


class Full(NamedTuple):
    """Head, whole body and end in one message: the common small response."""

    status: int
    content_length: int
    head: bytes
    body: bytes


class Abort(NamedTuple):
    """The response ends unfinished (the app failed after its head, or the request was
    cancelled); the thread is free either way."""


class Drain(NamedTuple):
    """The worker wants to stop (rid 0): send it nothing new."""


class File(NamedTuple):
    """A wsgi.file_wrapper file for the front to send itself (maitred.front.sendfile). The
    thread waits for TAKEN, then ends with END (taken) or streams the file (not taken)."""

    status: int
    content_length: int
    head: bytes
    fd: int  # the descriptor's number in the worker, which the front opens through /proc
    device: int  # st_dev and st_ino: the front checks that it opened the same file
    inode: int
    offset: int


# --- front -> worker ---


class Request(NamedTuple):
    """A whole request, for a worker thread to run (maitred.worker.wsgi builds the environ)."""

    method: bytes
    target: bytes
    version: str
    headers: list[tuple[bytes, bytes]]
    body: bytes  # empty on the wire: the body is the frame's tail (encode_request)
    body_path: str  # non-empty when the body was spooled to a file
    remote_addr: str
    remote_port: str
    server_name: str
    server_port: str
    url_scheme: str
    queue_time: float  # seconds the complete request waited in the front for a thread
    request_id: str  # empty when none was assigned


class Window(NamedTuple):
    """Credit returned: the request's thread may send `size` more body bytes."""

    size: int


class Cancel(NamedTuple):
    """The client is gone: the thread stops at its next write."""


class Drained(NamedTuple):
    """The answer to DRAIN (rid 0): no REQUEST follows."""


class Timeout(NamedTuple):
    """The request ran past --timeout: log its thread's stack and interrupt it."""


class Taken(NamedTuple):
    """The answer to FILE: whether the front sends the file."""

    taken: bool


FromWorker = Hello | Head | Body | End | Full | Abort | Drain | File
FromFront = Request | Window | Cancel | Drained | Timeout | Taken
Message = FromWorker | FromFront

# The closed set: every frame type and the message it carries.
MESSAGES: dict[Kind, type[Message]] = {
    Kind.HELLO: Hello,
    Kind.HEAD: Head,
    Kind.BODY: Body,
    Kind.END: End,
    Kind.FULL: Full,
    Kind.ABORT: Abort,
    Kind.DRAIN: Drain,
    Kind.FILE: File,
    Kind.REQUEST: Request,
    Kind.WINDOW: Window,
    Kind.CANCEL: Cancel,
    Kind.DRAINED: Drained,
    Kind.TIMEOUT: Timeout,
    Kind.TAKEN: Taken,
}

# Plain ints, not Kind members: they go into struct.pack and dict lookups on every frame.
_KIND_OF: dict[object, int] = {message: int(kind) for kind, message in MESSAGES.items()}


def _field_types(message: type[Message]) -> tuple[type, ...]:
    """The run-time type of each field, in order (list for list[...])."""
    hints = get_type_hints(message)
    return tuple(get_origin(hints[name]) or hints[name] for name in message._fields)


_FIELD_TYPES: dict[object, tuple[type, ...]] = {
    message: _field_types(message) for message in MESSAGES.values()
}

BODY_FIELD = Request._fields.index("body")

Payload = bytes | bytearray
Frame = tuple[int, int, Payload]
# What a field may be on the wire (what marshal is given).
Field = bytes | str | int | float | list[tuple[bytes, bytes]]

P = ParamSpec("P")
T = TypeVar("T")


def kind_name(kind: int) -> str:
    return Kind(kind).name if kind in _KIND_NAMES else f"unknown frame type {kind}"


_KIND_NAMES = frozenset(int(kind) for kind in Kind)


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
) -> Callable[Concatenate[int, Sequence[bytes], P], list[bytes]]:
    """A REQUEST frame as buffers to write in order: encode(rid, body chunks, *fields). The
    chunks are not copied; the body field goes empty (b"")."""
    kind = _KIND_OF[message]
    dumps = marshal.dumps

    def encode(rid: int, body: Sequence[bytes], *fields: Field) -> list[bytes]:
        meta = dumps(fields, MARSHAL_VERSION)
        size = REQUEST_META.size + len(meta) + sum(map(len, body))
        return [HEADER.pack(size, kind, rid) + REQUEST_META.pack(len(meta)) + meta, *body]

    return cast("Callable[Concatenate[int, Sequence[bytes], P], list[bytes]]", encode)


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
    # bytes, even from a bytearray payload: io.BytesIO shares a bytes object (and read()
    # returns it whole), where it would copy a bytearray, slowly.
    body = bytes(memoryview(payload)[start + size :])
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
    and an munmap). A frame too large for the buffer, a big request body, is read straight into
    a bytearray of its own and returned as it is, without a copy.
    """

    __slots__ = ("_buffer", "_end", "_recv_into", "_start", "_view")

    def __init__(self, recv_into: Callable[[memoryview], int], size: int = READ_SIZE) -> None:
        self._recv_into = recv_into
        self._buffer = bytearray(size)
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
