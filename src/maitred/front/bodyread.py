"""A large request body read straight into its own buffer: no bytes object, no call per read.

Theory of operation
-------------------
A body announced by its Content-Length is a count of bytes, with nothing in it to parse; yet
read the usual way, each read of it makes a bytes object (the event loop's copy out of its
read buffer) and goes through the connection, the parser and the body: for a 1 MiB upload, a
megabyte copied and dozens of Python calls in the front, whose one event loop carries every
client.

So once a request's head is in, when its body is to be held in memory (the whole of it within
--body-buffer-size and its location's limit) and at least :data:`DIRECT_MIN` bytes of it are
still to come, the connection lends its transport to a :class:`BodyReader`
(``transport.set_protocol``): an ``asyncio.BufferedProtocol``, which uvloop and asyncio both
support, whose buffer is the rest of the body exactly (``Body.room``), so that the loop
receives into it and no byte of a following request can land there. The parser is told only
how many bytes it did not see (``RequestParser.body_taken``). Once the body is whole the
connection takes its transport back and reads on as usual; an empty feed ends the request.
The connection asks once per request, on the read that ends its head: nothing that rules a
body out (TLS, a spool file, too few bytes left) changes on a later read.

While it reads it passes on what the transport tells: the client left (eof, lost), the
client's buffer filled or drained (the answer to an earlier request may be going out). When
the connection stops reading this body before it is whole (an answer of the front's own: the
body is too slow, the server stops; or its client left), the next read gives the transport
back, and its bytes go to the connection as if no reader had been lent.

Not for TLS connections, whose transport wraps the loop's (front/tlsclose.py), nor for the
gateway protocols, whose parsers frame bodies their own way.

Measured and left (perf, 20 clients uploading 1 MiB): the buffer is a new zero-filled
bytearray per body. Receiving into a memory file handed to the worker as a descriptor (no
copy through the link) cost the front about four times the system time: the kernel makes and frees
each page of a new memory file. Lending spare buffers again took the zero-fill (a fifth of the
front's samples) out, but the receive copy into the colder buffer cost as much more.

Owned by the event loop thread.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from maitred.front.states import READS
from maitred.http.parser import RequestParser

if TYPE_CHECKING:
    from maitred.front.connection import ClientConnection
    from maitred.front.exchange import Exchange

# Below this the few reads the rest of a body takes cost less than lending the transport.
DIRECT_MIN = 64 * 1024
# The buffer of the read that finds the connection no longer reading the body (see above).
STRAY_READ = 64 * 1024


def read_rest(conn: ClientConnection, exchange: Exchange) -> None:
    """Lend `conn`'s transport to a BodyReader for the rest of `exchange`'s body, when the
    body qualifies (see the module docstring)."""
    parser, body, transport = conn.parser, exchange.body, conn.transport
    if not isinstance(parser, RequestParser) or body is None or transport is None:
        return
    left = parser.body_left
    if left < DIRECT_MIN or transport.get_extra_info("sslcontext") is not None:
        return
    view = body.room(left)
    if view is not None:
        transport.set_protocol(BodyReader(conn, exchange, view))


class BodyReader(asyncio.BufferedProtocol):
    """The protocol of a connection's transport while the rest of a body is received."""

    def __init__(self, conn: ClientConnection, exchange: Exchange, view: memoryview) -> None:
        self.conn = conn
        self.exchange = exchange
        self.view = view  # the rest of the body, exactly
        self.got = 0
        self.stray: bytearray | None = None  # a read that is the connection's (see above)

    def get_buffer(self, sizehint: int) -> memoryview | bytearray:
        conn = self.conn
        if conn.reading is self.exchange and conn.state in READS:
            return self.view[self.got :]
        self._give_back()
        self.stray = bytearray(STRAY_READ)
        return self.stray

    def buffer_updated(self, nbytes: int) -> None:
        if self.stray is not None:
            self.conn.data_received(bytes(memoryview(self.stray)[:nbytes]))
            return
        self.got += nbytes
        body = self.exchange.body
        assert body is not None
        body.received(nbytes)
        if self.got == len(self.view):
            self._give_back()
            parser = self.conn.parser
            assert isinstance(parser, RequestParser)
            parser.body_taken(self.got)
            self.conn.data_received(b"")  # END, and whatever it starts

    def _give_back(self) -> None:
        transport = self.conn.transport
        if transport is not None:
            transport.set_protocol(self.conn)

    # --- what the transport tells, passed on ---

    def eof_received(self) -> bool | None:
        return self.conn.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.connection_lost(exc)

    def pause_writing(self) -> None:
        self.conn.pause_writing()

    def resume_writing(self) -> None:
        self.conn.resume_writing()
