"""The link's messages, declared once: frame types, limits, and each message's typed fields.

See maitred.link for the theory of operation; maitred.link.codec encodes, decodes and reads
the frames that carry these messages.
"""

from __future__ import annotations

import marshal
import struct
from enum import IntEnum
from types import UnionType
from typing import (
    NamedTuple,
    ParamSpec,
    TypeVar,
    get_args,
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
    # Empty on the wire: the body is the frame's tail (encode_request); a large one reaches
    # the worker as a view of the buffer it was received in (maitred.link.codec).
    body: bytes | memoryview
    spooled: bool  # the body was spooled: its open file comes with the frame (link.files)
    remote_addr: str
    remote_port: str
    server_name: str
    server_port: str
    url_scheme: str
    queue_time: float  # seconds the complete request waited in the front for a thread
    request_id: str  # empty when none was assigned
    script_name: str  # the mount a gateway's proxy named (target = it + PATH_INFO); "": --root-path
    client_dn: str = ""  # a verified TLS client certificate's subject (maitred.tls.subject)


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
    """The run-time type of each field on the wire, in order (list for list[...]; a union's
    first member: Request.body is bytes on the wire)."""
    hints = get_type_hints(message)
    types = []
    for name in message._fields:
        hint = hints[name]
        origin = get_origin(hint)
        types.append(get_args(hint)[0] if origin is UnionType else origin or hint)
    return tuple(types)


_FIELD_TYPES: dict[object, tuple[type, ...]] = {
    message: _field_types(message) for message in MESSAGES.values()
}

BODY_FIELD = Request._fields.index("body")

Payload = bytes | bytearray
# A piece of a frame to write: a request body may be received into a bytearray of its own
# (maitred.front.bodyread), and goes to the link as it is.
Chunk = bytes | bytearray
Frame = tuple[int, int, Payload]
# What a field may be on the wire (what marshal is given).
Field = bytes | str | int | float | list[tuple[bytes, bytes]]

P = ParamSpec("P")
T = TypeVar("T")


def kind_name(kind: int) -> str:
    return Kind(kind).name if kind in _KIND_NAMES else f"unknown frame type {kind}"


_KIND_NAMES = frozenset(int(kind) for kind in Kind)
