"""The link between the front and the workers: frame types, encoding, decoding.

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

A frame is a 9-byte header, payload length (u32), frame type (u8) and rid (u32), little-endian,
then the payload: raw bytes for BODY, a marshal-encoded value for the others (marshal is fast,
and both ends always run the same Python). This module is the only one that knows the format.
"""

from __future__ import annotations

import marshal
import struct
from collections.abc import Callable, Sequence
from typing import Any

HEADER = struct.Struct("<IBI")
HEADER_SIZE = HEADER.size

# Largest BODY payload in one frame: the front holds a whole frame before forwarding it.
MAX_BODY_FRAME = 256 * 1024

# The reused buffer a FrameReader reads into; a frame too large for it is read into its own.
READ_SIZE = 256 * 1024

# Largest frame accepted at all; a peer sending more is broken and is disconnected. A REQUEST
# carries an in-memory body (up to the body buffer size) plus its head.
MAX_FRAME = 64 * 1024 * 1024

# Worker -> front
HELLO = 1  # (pid, worker_id, threads)
HEAD = 3  # (status, content_length or -1, head bytes without the final CRLF)
BODY = 4  # raw body bytes
END = 5  # ()
FULL = 6  # (status, content_length, head bytes, body)
ABORT = 7  # ()
DRAIN = 8  # ()
# (status, content_length, head bytes, fd, st_dev, st_ino, offset): a wsgi.file_wrapper
# file for the front to send itself; the thread waits for TAKEN, then ends with END (taken) or
# streams the file as HEAD/BODY/END (not taken).
FILE = 9
# Front -> worker
REQUEST = 20  # see Request in maitred.worker.wsgi for the field order
WINDOW = 21  # bytes of credit returned
CANCEL = 22  # ()
DRAINED = 23  # ()
TIMEOUT = 24  # () the request ran past --timeout: log its stack, interrupt its thread
TAKEN = 25  # bool: the answer to FILE, whether the front sends the file

# Version 2, not the newest: from 3 on, dumps builds a table of the objects it wrote on every
# call, to refer back to them, and loads a list of those it read. Frame values share no objects;
# without the table and the list, both ends do about a quarter less work per frame.
MARSHAL_VERSION = 2

_EMPTY = marshal.dumps((), MARSHAL_VERSION)

# A REQUEST's body travels as raw bytes after its marshalled fields (a u32 says how long those
# are), so the front can write the body chunks it received as they are, without copying them
# into a frame. The fields carry an empty body at BODY_FIELD (maitred.worker.wsgi.Request.body);
# decode() puts the tail back there.
REQUEST_META = struct.Struct("<I")
BODY_FIELD = 4


class LinkError(Exception):
    """The peer broke the framing; the link must be closed."""


def encode(kind: int, rid: int, value: Any = ()) -> bytes:
    payload = marshal.dumps(value, MARSHAL_VERSION) if value != () else _EMPTY
    return HEADER.pack(len(payload), kind, rid) + payload


def encode_body(rid: int, data: bytes) -> bytes:
    return HEADER.pack(len(data), BODY, rid) + data


def encode_request(rid: int, fields: tuple[Any, ...], body: Sequence[bytes]) -> list[bytes]:
    """A REQUEST frame as buffers to write in order: the body chunks are not copied."""
    meta = marshal.dumps(fields, MARSHAL_VERSION)
    size = REQUEST_META.size + len(meta) + sum(map(len, body))
    return [HEADER.pack(size, REQUEST, rid) + REQUEST_META.pack(len(meta)) + meta, *body]


Payload = bytes | bytearray
Frame = tuple[int, int, Payload]


def decode(kind: int, payload: Payload) -> Any:
    """The value of a frame: the bytes for BODY, the marshalled value for the rest."""
    if kind == BODY:
        return payload
    try:
        if kind == REQUEST:
            (size,) = REQUEST_META.unpack_from(payload)
            start = REQUEST_META.size
            fields = marshal.loads(payload[start : start + size])
            if len(payload) == start + size:
                return fields  # no body, the common case
            # bytes, even from a bytearray payload: io.BytesIO shares a bytes object (and
            # read() returns it whole), where it would copy a bytearray, slowly.
            body = bytes(memoryview(payload)[start + size :])
            return (*fields[:BODY_FIELD], body, *fields[BODY_FIELD + 1 :])
        return marshal.loads(payload)
    except (EOFError, ValueError, TypeError, struct.error) as exc:
        raise LinkError(f"bad payload in frame type {kind}") from exc


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
            raise LinkError(f"frame of {length} bytes")
        stop = offset + HEADER_SIZE + length
        if stop > end:
            break
        frames.append((kind, rid, bytes(buffer[offset + HEADER_SIZE : stop])))
        offset = stop
    return frames, offset
