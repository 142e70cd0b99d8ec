"""The link between the front and the workers: frame types, encoding, decoding.

Theory of operation
-------------------
Every worker thread holds its own Unix stream connection to the front (a *thread link*), and
each worker process one more (its *control link*). The front sends a request on a thread link
only when that thread is idle, so a thread link carries at most one exchange at a time and no
frame needs a request id:

    front  -> thread:  REQUEST
    thread -> front:   HEAD, BODY*, END        (or FULL: head, body and end in one frame)
                       ABORT                   (the app failed after the head was sent)

Flow control falls out of this: when a client reads slowly, the front stops reading that thread
link, the socket buffer fills, and only that thread's writes wait.

On connecting, a link says who it is (HELLO_WORKER on the control link, HELLO_THREAD on a thread
link). A worker that wants to stop sends DRAIN on its control link; the front then sends it no new
requests and closes each of its thread links once idle, which is how the threads learn to exit.

A frame is a 5-byte header, the payload length (little-endian u32) and the frame type (u8),
followed by the payload: raw bytes for BODY, a marshal-encoded tuple for the others. marshal is
fast, and both ends always run the same Python. This module is the only one that knows the format.
"""

from __future__ import annotations

import marshal
import struct
from typing import Any, BinaryIO

HEADER = struct.Struct("<IB")
HEADER_SIZE = HEADER.size

# Largest BODY payload a worker puts in one frame: the front holds a whole frame before it
# forwards it, so this bounds the front's memory per response beyond the response buffer.
MAX_BODY_FRAME = 256 * 1024

# Largest frame accepted at all; a peer sending more is broken and is disconnected.
MAX_FRAME = 64 * 1024 * 1024

# Frame types. Worker -> front:
HELLO_WORKER = 1  # (pid, worker_id, threads)
HELLO_THREAD = 2  # (pid, thread_index)
HEAD = 3  # (status, content_length or -1, head bytes without the final CRLF)
BODY = 4  # raw body bytes
END = 5  # ()
FULL = 6  # (status, content_length or -1, head bytes, body)
ABORT = 7  # ()
DRAIN = 8  # ()
# Front -> worker:
REQUEST = 20  # see Request in maitred.worker.wsgi for the field order

_EMPTY = marshal.dumps(())


class LinkError(Exception):
    """The peer broke the framing; the link must be closed."""


def encode(kind: int, value: Any = ()) -> bytes:
    payload = marshal.dumps(value) if value != () else _EMPTY
    return HEADER.pack(len(payload), kind) + payload


def encode_body(data: bytes) -> bytes:
    return HEADER.pack(len(data), BODY) + data


def decode(kind: int, payload: bytes) -> Any:
    """The value of a frame: bytes for BODY, the marshalled tuple for the rest."""
    if kind == BODY:
        return payload
    try:
        return marshal.loads(payload)
    except (EOFError, ValueError, TypeError) as exc:
        raise LinkError(f"bad payload in frame type {kind}") from exc


class FrameBuffer:
    """Splits a byte stream into (kind, payload) frames; for the front's non-blocking reads."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buffer = self._buffer + data if self._buffer else data
        frames = []
        offset = 0
        end = len(buffer)
        while end - offset >= HEADER_SIZE:
            length, kind = HEADER.unpack_from(buffer, offset)
            if length > MAX_FRAME:
                raise LinkError(f"frame of {length} bytes")
            stop = offset + HEADER_SIZE + length
            if stop > end:
                break
            frames.append((kind, buffer[offset + HEADER_SIZE : stop]))
            offset = stop
        # Keep only the incomplete tail; a partial frame is at most MAX_BODY_FRAME-ish, and
        # it is re-joined once per read, not once per byte.
        self._buffer = buffer[offset:] if offset < end else b""
        return frames


def read_frame(stream: BinaryIO) -> tuple[int, Any] | None:
    """One decoded frame from a blocking buffered stream; None at a clean end of stream."""
    header = stream.read(HEADER_SIZE)
    if not header:
        return None
    if len(header) < HEADER_SIZE:
        raise LinkError("stream ended inside a frame header")
    length, kind = HEADER.unpack(header)
    if length > MAX_FRAME:
        raise LinkError(f"frame of {length} bytes")
    payload = stream.read(length)
    if len(payload) < length:
        raise LinkError("stream ended inside a frame")
    return kind, decode(kind, payload)
