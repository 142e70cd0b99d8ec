"""Sans-IO reader of FastCGI records (what nginx's fastcgi_pass sends), and the records back.

Theory of operation
-------------------
Everything on a FastCGI connection travels in records: an 8-byte header (version 1, type,
request id, content length, padding length) and up to 65535 bytes of content. A request is::

    BEGIN_REQUEST (role RESPONDER, flags: KEEP_CONN)
    PARAMS ... PARAMS (empty: the end)   name-value pairs, lengths of 1 byte (< 128) or 4
    STDIN ... STDIN (empty: the end)     the body

:class:`FastCGIParser` makes of it the events of the HTTP parser (maitred.http.parser): a head
once the params are in (maitred.gateway.params), the body from STDIN, END at its empty record.
A head whose CONTENT_LENGTH is empty (nginx passing a chunked or HTTP/2 body on unbuffered)
waits for the first STDIN record: empty, there is no body; else the body is what STDIN
carries, to its end, and the head says it is chunked (its length unknown until it ends).
The response goes back as STDOUT records (:func:`stdout_records`: a CGI head, ``Status:``
first, then the body) and one END_REQUEST (:func:`end_request`); KEEP_CONN says whether the
connection then carries another request, else the server closes it.

One request at a time: FCGI_MPXS_CONNS is 0, and a BEGIN_REQUEST for another id while one is
in progress (begun, and its END_REQUEST not sent: :meth:`FastCGIParser.request_done`) is
answered at once with END_REQUEST CANT_MPX_CONN, and that id's records are dropped. Records
the parser answers itself (GET_VALUES, an unknown type, a refused request) queue in
:attr:`FastCGIParser.replies` for the connection to write. GET_VALUES is answered honestly:
no multiplexing, and FCGI_MAX_CONNS/FCGI_MAX_REQS are --max-connections (one request per
connection). ABORT_REQUEST for the request in progress raises :class:`RequestAborted` (the
connection cancels it, answers END_REQUEST and closes).

The params are held until complete, bounded like an HTTP head (maitred.gateway.params); a
record that cannot be read (another version, a BEGIN_REQUEST of the wrong size, a pair that
runs past its block, STDIN before the params end or carrying more or less than
CONTENT_LENGTH, a record only a server sends) raises
:class:`~maitred.gateway.params.GatewayError` and the connection is closed. A body over
--limit-request-body raises BodyTooLarge once its head is out (the error's ``events`` end
with it), as for HTTP: the 413 answers a known request.
"""

from __future__ import annotations

import enum
import struct

from maitred.gateway.params import (
    GatewayError,
    GatewayHead,
    head_from_params,
    param_limits,
    refuse_oversize,
)
from maitred.http.errors import BodyTooLarge, ProtocolError
from maitred.http.framing import CRLF, NO_BODY_STATUSES, BodyEnd, Framing
from maitred.http.parser import END, Event, Limits

VERSION = 1
RECORD = struct.Struct(">BBHHBx")
BEGIN_BODY = struct.Struct(">HB5x")
END_BODY = struct.Struct(">IB3x")
UNKNOWN_BODY = struct.Struct(">B7x")
LONG_LENGTH = struct.Struct(">I")
MAX_CONTENT = 0xFFFF  # a record's content length is a u16

BEGIN_REQUEST, ABORT_REQUEST, END_REQUEST, PARAMS, STDIN, STDOUT = 1, 2, 3, 4, 5, 6
STDERR, DATA, GET_VALUES, GET_VALUES_RESULT, UNKNOWN_TYPE = 7, 8, 9, 10, 11
RESPONDER = 1
KEEP_CONN = 1
# END_REQUEST protocol statuses
REQUEST_COMPLETE, CANT_MPX_CONN, OVERLOADED, UNKNOWN_ROLE = 0, 1, 2, 3
MANAGEMENT_ID = 0  # the request id of GET_VALUES and UNKNOWN_TYPE
# Record types only an application sends: from a web server they are a broken peer.
_FROM_APPLICATION = frozenset((END_REQUEST, STDOUT, STDERR, GET_VALUES_RESULT, UNKNOWN_TYPE))
UNKNOWN_LENGTH = -1  # a body without CONTENT_LENGTH: what STDIN carries, to its end
_SHORT_LENGTH_MAX = 0x7F
_LONG_FLAG = 0x80000000


class RequestAborted(GatewayError):
    """The web server aborted the request in progress (ABORT_REQUEST)."""

    def __init__(self, request_id: int) -> None:
        super().__init__(f"FastCGI request {request_id} aborted by the web server")
        self.request_id = request_id


class Stage(enum.Enum):
    IDLE = "idle"  # no request in progress
    PARAMS = "params"  # begun: params arriving
    STDIN = "stdin"  # head out: the body arriving
    ANSWERING = "answering"  # the request is in; its END_REQUEST is not sent yet


class FastCGIParser:
    """Reads the requests of one FastCGI connection, one at a time. Not thread-safe."""

    def __init__(self, limits: Limits, max_conns: int) -> None:
        self._limits = limits
        self._max_block, self._max_vars, self._max_var = param_limits(limits)
        self._values = {
            b"FCGI_MAX_CONNS": str(max_conns).encode(),
            b"FCGI_MAX_REQS": str(max_conns).encode(),
            b"FCGI_MPXS_CONNS": b"0",
        }
        self._buffer = b""  # the start of a record not yet whole
        self._stage = Stage.IDLE
        self._params = bytearray()
        self._body = 0
        self._length = UNKNOWN_LENGTH  # the CONTENT_LENGTH STDIN must carry
        # A head whose CONTENT_LENGTH is not given, until the first STDIN record says whether
        # a body follows (see _stdin).
        self._held: GatewayHead | None = None
        self.request_id = 0  # of the request in progress
        self.keep_conn = False
        self.replies: list[bytes] = []  # records to write back (see the module docstring)
        self.messages = 0
        self.closed = False

    @property
    def in_head(self) -> bool:
        return self._stage is Stage.PARAMS or self._held is not None

    def request_done(self) -> None:
        """Its END_REQUEST is sent: the connection may carry the next request."""
        self._stage = Stage.IDLE
        self._held = None
        self.request_id = 0

    def feed(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        # bytes, not a bytearray: records are read through memoryviews, which a bytearray would
        # not let go of while they live; what is left is at most one partial record.
        buffer = self._buffer + data if self._buffer else data
        view = memoryview(buffer)
        at, size = 0, len(buffer)
        try:
            while size - at >= RECORD.size:
                version, kind, request_id, length, padding = RECORD.unpack_from(buffer, at)
                if version != VERSION:
                    raise GatewayError(f"FastCGI record of version {version}")
                end = at + RECORD.size + length + padding
                if end > size:
                    self._check_size(kind, request_id, length)  # before holding it whole
                    break
                content = view[at + RECORD.size : at + RECORD.size + length]
                self._record(kind, request_id, content, events)
                at = end
        except ProtocolError as exc:  # the events before it are still the connection's
            exc.events = events
            raise
        self._buffer = buffer[at:] if at < size else b""
        return events

    def _check_size(self, kind: int, request_id: int, length: int) -> None:
        if kind == PARAMS and request_id == self.request_id and request_id:
            self._check_params(length)

    def _check_params(self, length: int) -> None:
        if len(self._params) + length > self._max_block:
            raise GatewayError("FastCGI params over the head limits")

    def _record(self, kind: int, request_id: int, content: memoryview, events: list[Event]) -> None:
        if request_id == MANAGEMENT_ID:
            if kind == GET_VALUES:
                self.replies.append(self._get_values(content))
            elif kind in _FROM_APPLICATION:
                raise GatewayError(f"FastCGI record type {kind} from the web server")
            else:
                self.replies.append(unknown_type(kind))
        elif kind == BEGIN_REQUEST:
            self._begin(request_id, content)
        elif kind in _FROM_APPLICATION:
            raise GatewayError(f"FastCGI record type {kind} from the web server")
        elif request_id != self.request_id or self._stage is Stage.IDLE:
            return  # a refused request's, or one that is over: nothing to do with it
        elif kind == PARAMS:
            self._param_record(content, events)
        elif kind == STDIN:
            self._stdin(content, events)
        elif kind == ABORT_REQUEST:
            raise RequestAborted(request_id)
        elif kind != DATA:  # DATA is the FILTER role's, which never begins here
            self.replies.append(unknown_type(kind))

    def _begin(self, request_id: int, content: memoryview) -> None:
        if len(content) != BEGIN_BODY.size:
            raise GatewayError(f"FastCGI BEGIN_REQUEST of {len(content)} bytes")
        role, flags = BEGIN_BODY.unpack(content)
        if self._stage is not Stage.IDLE:
            if request_id == self.request_id:
                raise GatewayError(f"FastCGI request {request_id} begun twice")
            self.replies.append(end_request(request_id, CANT_MPX_CONN))
            return
        if role != RESPONDER:
            self.replies.append(end_request(request_id, UNKNOWN_ROLE))
            return
        self.request_id = request_id
        self.keep_conn = bool(flags & KEEP_CONN)
        self._stage = Stage.PARAMS
        self._params.clear()
        self.messages += 1

    def _param_record(self, content: memoryview, events: list[Event]) -> None:
        if self._stage is not Stage.PARAMS:
            raise GatewayError("FastCGI PARAMS after the params ended")
        if content:
            self._check_params(len(content))
            self._params += content
            return
        params = self._pairs(self._params)
        head = head_from_params(params, self.keep_conn)
        self._params.clear()
        self._body = 0
        self._stage = Stage.STDIN
        if not params.get(b"CONTENT_LENGTH"):
            self._length = UNKNOWN_LENGTH
            self._held = head  # a body of unknown length, or none: STDIN will say
            return
        self._length = head.content_length or 0
        events.append(head)
        refuse_oversize(head, events, self._limits.body)

    def _pairs(self, block: bytes | bytearray | memoryview) -> dict[bytes, bytes]:
        """The name-value pairs of a whole block. One loop, no call per length: it runs for
        every request."""
        pairs: dict[bytes, bytes] = {}
        block = bytes(block)
        unpack, longest = LONG_LENGTH.unpack_from, self._max_var
        at, end = 0, len(block)
        while at < end:
            if at + 2 > end:  # two one-byte lengths at least
                raise GatewayError("FastCGI param length runs past the params")
            name_size = block[at]
            if name_size > _SHORT_LENGTH_MAX:
                if at + LONG_LENGTH.size + 1 > end:
                    raise GatewayError("FastCGI param length runs past the params")
                name_size = unpack(block, at)[0] & ~_LONG_FLAG
                at += LONG_LENGTH.size
            else:
                at += 1
            value_size = block[at]
            if value_size > _SHORT_LENGTH_MAX:
                if at + LONG_LENGTH.size > end:
                    raise GatewayError("FastCGI param length runs past the params")
                value_size = unpack(block, at)[0] & ~_LONG_FLAG
                at += LONG_LENGTH.size
            else:
                at += 1
            if at + name_size + value_size > end:
                raise GatewayError("FastCGI param runs past the params")
            if name_size > longest or value_size > longest:
                raise GatewayError("FastCGI param over the field size limit")
            name_end = at + name_size
            at = name_end + value_size
            pairs[block[name_end - name_size : name_end]] = block[name_end:at]
        if len(pairs) > self._max_vars:
            raise GatewayError("too many FastCGI params")
        return pairs

    def _stdin(self, content: memoryview, events: list[Event]) -> None:
        if self._stage is not Stage.STDIN:
            raise GatewayError("FastCGI STDIN before the params ended, or after it ended")
        held = self._held
        if held is not None:
            # nginx leaves CONTENT_LENGTH empty for a body it passes on unbuffered
            # (fastcgi_request_buffering off) whose length its client did not say (chunked,
            # HTTP/2): then the body is all STDIN carries, read to its end, as a chunked one.
            self._held = None
            held.chunked = bool(content)
            events.append(held)
        if not content:
            if self._body < self._length:  # a body cut short must not pass for a whole one
                raise GatewayError(f"FastCGI STDIN ended {self._length - self._body} bytes short")
            self._stage = Stage.ANSWERING
            events.append(END)
            return
        self._body += len(content)
        if 0 <= self._length < self._body:
            raise GatewayError("FastCGI STDIN longer than its CONTENT_LENGTH")
        if self._limits.body and self._body > self._limits.body:
            raise BodyTooLarge(f"body over {self._limits.body} bytes")
        events.append(bytes(content))

    def _get_values(self, content: memoryview) -> bytes:
        wanted = self._pairs(content)
        known = {name: self._values[name] for name in wanted if name in self._values}
        return record(GET_VALUES_RESULT, MANAGEMENT_ID, b"".join(map(encode_pair, known.items())))


# --- records an application writes ---


def record(kind: int, request_id: int, content: bytes) -> bytes:
    """One record (content up to MAX_CONTENT bytes, no padding)."""
    return RECORD.pack(VERSION, kind, request_id, len(content), 0) + content


def stdout_records(request_id: int, data: bytes) -> list[bytes]:
    """`data` as STDOUT records: headers and data, to write in order (data not copied when it
    fits one record)."""
    if len(data) <= MAX_CONTENT:
        return [RECORD.pack(VERSION, STDOUT, request_id, len(data), 0), data]
    view = memoryview(data)
    out: list[bytes] = []
    for at in range(0, len(data), MAX_CONTENT):
        piece = bytes(view[at : at + MAX_CONTENT])
        out += (RECORD.pack(VERSION, STDOUT, request_id, len(piece), 0), piece)
    return out


def end_request(request_id: int, protocol_status: int = REQUEST_COMPLETE) -> bytes:
    """The END_REQUEST record (app status 0); after an answer, the empty STDOUT that ends its
    stream goes before it (maitred.front.gateway)."""
    return record(END_REQUEST, request_id, END_BODY.pack(0, protocol_status))


def unknown_type(kind: int) -> bytes:
    return record(UNKNOWN_TYPE, MANAGEMENT_ID, UNKNOWN_BODY.pack(kind))


def encode_length(size: int) -> bytes:
    return bytes((size,)) if size <= _SHORT_LENGTH_MAX else LONG_LENGTH.pack(size | _LONG_FLAG)


def encode_pair(pair: tuple[bytes, bytes]) -> bytes:
    name, value = pair
    return encode_length(len(name)) + encode_length(len(value)) + name + value


# --- how a response is framed ---

# Every answer fastcgi_frame can give, by [keep_alive][writes a body]: the body ends with the
# END_REQUEST record, never with chunks or the connection's close, and the CGI head needs no
# Connection field (the web server decides about its client's connection).
_FRAMINGS = tuple(
    tuple(
        Framing(BodyEnd.RECORD if body else BodyEnd.NONE, keep, body, CRLF)
        for body in (False, True)
    )
    for keep in (False, True)
)


def fastcgi_frame(
    status: int, length: int, version: str, keep_alive: bool, head_request: bool
) -> Framing:
    """maitred.http.framing.frame for a FastCGI response: `keep_alive` is the request's
    KEEP_CONN (as the front settles it); `length` and `version` change nothing."""
    return _FRAMINGS[keep_alive][not head_request and status not in NO_BODY_STATUSES]
