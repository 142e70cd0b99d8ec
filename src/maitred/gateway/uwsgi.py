"""Sans-IO reader of the uwsgi protocol's request packet (what nginx's uwsgi_pass sends).

Theory of operation
-------------------
A connection carries one request (nginx opens one per request to a uwsgi upstream, and reads
the response up to the connection's close). The request is one packet::

    u8 modifier1 (0: a WSGI request) | u16 datasize (little-endian) | u8 modifier2
    datasize bytes of vars: (u16 key size | key | u16 value size | value)...

and then the body, CONTENT_LENGTH bytes of it, raw. The response goes back as HTTP (nginx
reads a status line and header fields), its body ending where the connection does
(:func:`uwsgi_frame`). :class:`UwsgiParser` makes of it the
events of the HTTP parser (maitred.http.parser): a head (maitred.gateway.params), the body as
it arrives (passed on without a copy when a read holds only body bytes), and END.

The vars block is held until complete (bounded by the HTTP head limits: maitred.gateway.params);
anything malformed (another modifier1, a var running past the block, too many or too long vars,
a bad CONTENT_LENGTH) raises :class:`~maitred.gateway.params.GatewayError`: there is no way to
answer a packet that cannot be read, so the connection is closed. A body over
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
from maitred.http.framing import HTTP_10, Framing, frame
from maitred.http.parser import END, Event, Limits

PACKET_HEADER = struct.Struct("<BHB")
VAR_SIZE = struct.Struct("<H")
WSGI_REQUEST = 0  # modifier1 of a request for a WSGI app (what uwsgi_pass sends by default)


class Stage(enum.Enum):
    HEADER = "packet header"
    VARS = "vars block"
    BODY = "body"
    DONE = "done"  # the one request is in


class UwsgiParser:
    """Reads the one request of a uwsgi connection. Not thread-safe; one per connection."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._max_block, self._max_vars, self._max_var = param_limits(limits)
        self._stage = Stage.HEADER
        self._buffer = bytearray()  # the packet header and vars block until complete
        self._needed = PACKET_HEADER.size  # bytes the buffer must hold for the next step
        self._body_left = 0
        self.messages = 0
        self.closed = False

    @property
    def in_head(self) -> bool:
        return self._stage is Stage.VARS or (self._stage is Stage.HEADER and bool(self._buffer))

    def feed(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        if self._stage is Stage.BODY:
            self._body(data, events)
            return events
        if self._stage is Stage.DONE or not data:
            return events  # after the request: nothing more is read (nginx sends nothing)
        buffer = self._buffer
        buffer += data
        if self._stage is Stage.HEADER and len(buffer) >= PACKET_HEADER.size:
            self._header(buffer)
        if self._stage is Stage.VARS and len(buffer) >= self._needed:
            rest = bytes(buffer[self._needed :])
            head = self._head(buffer)
            buffer.clear()
            events.append(head)
            refuse_oversize(head, events, self._limits.body)
            self._body(rest, events)
        return events

    def _header(self, buffer: bytearray) -> None:
        modifier1, size, _ = PACKET_HEADER.unpack_from(buffer)
        if modifier1 != WSGI_REQUEST:
            raise GatewayError(f"uwsgi packet with modifier1 {modifier1}, not a WSGI request")
        if size > self._max_block:
            raise GatewayError(f"uwsgi vars block of {size} bytes, over the head limits")
        self.messages += 1
        self._stage = Stage.VARS
        self._needed = PACKET_HEADER.size + size

    def _head(self, buffer: bytearray) -> GatewayHead:
        params = self._vars(bytes(buffer[PACKET_HEADER.size : self._needed]))
        head = head_from_params(params, False)
        self._body_left = head.content_length or 0
        self._stage = Stage.BODY
        return head

    def _vars(self, block: bytes) -> dict[bytes, bytes]:
        """The vars of a whole block. One loop, no call per var: it runs for every request."""
        params: dict[bytes, bytes] = {}
        unpack, size, longest = VAR_SIZE.unpack_from, VAR_SIZE.size, self._max_var
        at, end = 0, len(block)
        while at < end:
            if at + size > end:
                raise GatewayError("uwsgi var size runs past the vars block")
            (key_size,) = unpack(block, at)
            key_end = at + size + key_size
            if key_end + size > end:
                raise GatewayError("uwsgi var runs past the vars block")
            (value_size,) = unpack(block, key_end)
            at = key_end + size + value_size
            if at > end:
                raise GatewayError("uwsgi var runs past the vars block")
            if key_size > longest or value_size > longest:
                raise GatewayError("uwsgi var over the field size limit")
            params[block[key_end - key_size : key_end]] = block[at - value_size : at]
        if len(params) > self._max_vars:
            raise GatewayError("too many uwsgi vars")
        return params

    def _body(self, data: bytes, events: list[Event]) -> None:
        left = self._body_left
        if data and left:
            piece = data if len(data) <= left else data[:left]
            events.append(piece)
            left -= len(piece)
            self._body_left = left
        if not left:
            self._stage = Stage.DONE
            self.closed = True
            events.append(END)


def uwsgi_frame(
    status: int, length: int, version: str, keep_alive: bool, head_request: bool
) -> Framing:
    """maitred.http.framing.frame for a uwsgi response: as for an HTTP/1.0 client that does
    not keep its connection (Content-Length when known, never chunks: nginx reads a uwsgi
    response up to the connection's close)."""
    return frame(status, length, HTTP_10, False, head_request)
