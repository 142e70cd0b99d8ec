"""Client connections: read whole requests, hand them on in order, close when it is time.

Theory of operation
-------------------
A :class:`ClientConnection` is the asyncio protocol of one client. Its ``state``
(front/states.py) says what it does now; its exchanges (front/exchange.py) say where each
request is. Where a request goes:

* **parsed** in :meth:`~ClientConnection.data_received`: the sans-IO parser (http/parser.py)
  turns bytes into a head, body chunks and an end. A head makes an exchange, the connection's
  ``reading`` one, and the connection BUSY; its body is gathered (in memory, spooled to a file
  past the buffer size; the rest of a large one in memory is read straight into its buffer by
  a reader the transport is lent to: front/bodyread.py);
* **judged** at its head (:meth:`~ClientConnection.admit`): the router settles its client and
  app, and its location's rules may refuse it (front/rules.py) before a byte of its body is
  read: one without a body is answered in its turn, one with a body at once, and the
  connection lingers and closes;
* **queued**: only once the whole request is in does it go on (``_request_complete``), so a
  slow upload never holds a worker thread. Responses leave in request order: one exchange is
  ``active`` (routed to the dispatcher or the static files, running, or being answered); later
  pipelined ones wait in ``pipeline``, and past :data:`~maitred.front.flow.MAX_PIPELINED` of
  them the front stops reading (front/flow.py);
* **run and answered**: by the dispatcher and its workers, or the static files, through the
  exchange's ``respond_*`` methods;
* **done**: :meth:`~ClientConnection.exchange_done` logs it and starts the next one, or sends
  the error a bad request left owed, or settles IDLE, or closes.

A client that leaves (its connection drops, or it sends FIN: HTTP clients do not half-close to
wait for an answer, and nginx takes FIN the same way) cancels its requests: the connection is
CLOSED, its pipelined requests are dropped unlogged, the others cancelled (front/exchange.py).

An answer the front gives before the whole request is in (4xx, a body it cannot spool) ends
with a lingering close (front/linger.py, LINGERING), so a client still sending can read it; so
does the answer to a last request (Connection: close) after which the client sent more, as
nginx does: closed at once, the socket would answer the client's next bytes with RST. After a
last request with nothing more sent, the connection closes at once: a lingering close costs
a shutdown, more reads and a timer, for every new connection of such a client. When
the request's head was read (a rule refused it, its body was too large or too slow), that
request is kept (``refused``) until the answer goes out, then logged as any answered one.

Everything here runs on the event loop thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, cast

from maitred.front.bodyread import read_rest
from maitred.front.exchange import BODY_CUT_SHORT, Exchange
from maitred.front.flow import FlowControl
from maitred.front.linger import Linger
from maitred.front.slots import Slot
from maitred.front.spool import Body
from maitred.front.states import (
    CLOSE,
    COMPLETE,
    CONTINUE,
    DONE,
    HEAD_IN,
    HELD,
    HOLD,
    IDLE,
    LINGER,
    NEW,
    READS,
    ROUTE,
    SETTLED,
    SLOT_OF,
    STOP_READING,
)
from maitred.http.errors import HTTPError, ProtocolError
from maitred.http.framing import frame
from maitred.http.parser import END, Limits, RequestHead, RequestParser, RequestReader

if TYPE_CHECKING:
    from maitred.front.main import Front
    from maitred.front.rules import Refusal

log = logging.getLogger("maitred.error")

CONTINUE_LINE = b"HTTP/1.1 100 Continue\r\n\r\n"

# Globals: see front/states.py.
IDLE_SLOT, HEAD_SLOT, IN_USE_SLOT = Slot.IDLE, Slot.HEAD, Slot.IN_USE


class ClientConnection(asyncio.Protocol):
    """An HTTP client's connection. A gateway protocol's (maitred.front.gateway) reads its
    requests with another parser (:meth:`new_parser`) and frames responses its own way
    (:attr:`frame`, :meth:`write`, :meth:`exchange_done`)."""

    flow: FlowControl  # from connection_made
    # The end of `peer` its listener says for every connection (Front.server_end), set by the
    # front as it makes the connection; None: asked of the transport (TLS: the secure one's).
    server: tuple[str, str, str] | None = None
    # How a response's body ends and its connection goes on (maitred.http.framing).
    frame = staticmethod(frame)
    # The client sent bytes after its last request (Connection: close), read and not parsed:
    # its answer lingers (exchange_done). Set on the instance only then.
    sent_more = False

    def __init__(self, front: Front) -> None:
        self.front = front
        self.state = NEW
        self.transport: asyncio.Transport | None = None
        self.parser = self.new_parser(front.limits)
        self.peer: tuple[str, str, str, str, str] = ("", "", "", "", "http")
        self.reading: Exchange | None = None  # request whose body is arriving
        self.active: Exchange | None = None  # request being served
        self.pipeline: deque[Exchange] = deque()
        # CLOSING: the error to answer once earlier responses are out
        self.pending_error: HTTPError | None = None
        self.refused: Exchange | None = None  # the request it answers, if its head was read
        self.linger: Linger | None = None  # LINGERING: reads what the client still sends
        self.idle_since = front.loop.time()
        self.last_slot = SLOT_OF[NEW]  # when it was last looked at (_report_slot)
        self.client_dn = ""  # a verified TLS client certificate's subject (front/tls.py)

    def new_parser(self, limits: Limits) -> RequestReader:
        return RequestParser(limits)

    # --- asyncio callbacks ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        self.flow = FlowControl(transport)
        transport.set_write_buffer_limits(high=self.front.cfg.response_buffer_size)
        self.peer = self.front.peer_info(transport, self.server)
        self.front.connection_opened(self)

    def data_received(self, data: bytes) -> None:
        if self.state not in READS:
            if self.linger is not None:
                self.linger.discard(len(data))
            else:
                self.sent_more = True
            return
        error: ProtocolError | None = None
        before = self.reading
        try:
            events = self.parser.feed(data)
        except ProtocolError as exc:
            events, error = exc.events, exc  # requests before the bad one are still served
        try:
            for event in events:
                if event.__class__ is bytes:  # a head announcing a body made its Body
                    assert self.reading is not None and self.reading.body is not None
                    self.reading.body.add(event)
                elif event is END:
                    self._request_complete()
                elif self.state in READS and isinstance(event, RequestHead):
                    self._head_complete(event)  # isinstance narrows without typing.cast's call
                else:  # a request after the last one, or an answer closed the connection
                    self.sent_more = True
                    break  # later requests go unanswered
        except ProtocolError as exc:  # the body could not be spooled
            error = exc
        if error is not None:
            self._protocol_error(error)
        elif self.parser.closed and self.reading is None:
            self._stop_reading()
        elif self.reading is not before and self.reading is not None and self.reading.body:
            # A large body: straight into its buffer. Decided on the read that ends its head:
            # what rules it out (TLS, spooled, too little left) holds for every later read.
            read_rest(self, self.reading)
        if self.state is not IDLE or self.parser.in_head:
            # A connection becomes IDLE only in _settle, which reported it: a request
            # answered within this read (a static file) leaves nothing to report.
            self._report_slot()

    def eof_received(self) -> bool:
        # The client closed its side: it left (see the module docstring). Returning False
        # closes the transport once what is already written has gone out.
        self._abandon()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.front.connection_closed(self)
        if self.linger is not None:
            self.linger.stop()
        self._abandon()
        self.transport = None

    def _abandon(self) -> None:
        """The client is gone: stop its requests. Pipelined ones never began: they are dropped
        unlogged, as nginx would not have read them yet."""
        self.state = CLOSE[self.state]
        reading, active, refused = self.reading, self.active, self.refused
        # First: exchange_done must not start the next one.
        self.reading = self.active = self.refused = None
        self._drop_pipeline()
        if reading is not None:
            reading.status = BODY_CUT_SHORT
            reading.cancel()
        if refused is not None:
            refused.cancel()  # gone before its error went out: 499
        if active is not None and active.state is not DONE:
            active.cancel()

    def _drop_pipeline(self) -> None:
        for exchange in self.pipeline:
            exchange.drop()
        self.pipeline.clear()

    def pause_writing(self) -> None:
        self.flow.write_paused = True  # credit for further body bytes waits (front/exchange.py)

    def resume_writing(self) -> None:
        self.flow.write_paused = False
        if self.active is not None:
            self.active.return_credit()

    # --- requests in ---

    def _head_complete(self, head: RequestHead) -> None:
        self.state = HEAD_IN[self.state]
        has_body = head.chunked or head.content_length
        # Most requests have no body: then no Body is made, filled nor discarded.
        exchange = Exchange(self, head, None)
        self.reading = exchange
        refusal = self.admit(exchange)
        if has_body:
            if refusal is not None:
                raise refusal  # answered now (or in its turn), its body never read: it closes
            cfg = self.front.cfg
            location = exchange.location
            limit = location.body_limit if location is not None else 0
            exchange.body = Body(cfg.body_buffer_size, cfg.body_temp_dir, limit)
        elif refusal is not None:
            exchange.refusal = refusal  # answered in its turn, on a connection that goes on
        if head.expect_continue and has_body:
            if self.active is None:
                self.write(CONTINUE_LINE)
            else:
                exchange.state = HOLD[exchange.state]  # until the active one is answered

    def admit(self, exchange: Exchange) -> Refusal | None:
        """Settle who sent the request, where it goes and whether its location's rules let it
        (maitred.front.router): the answer to give instead, or None."""
        return self.front.router.head(exchange)

    def _request_complete(self) -> None:
        exchange = self.reading
        assert exchange is not None
        if exchange.body is not None:
            exchange.body.end()  # SpoolError while it is still the request being read
        self.reading = None
        exchange.state = COMPLETE[exchange.state]
        exchange.complete = self.front.loop.time()
        if not exchange.keep_alive:
            self._stop_reading()
        if self.active is None:
            self._route(exchange)
        else:
            self.pipeline.append(exchange)
            self.flow.pipeline_grew(len(self.pipeline))

    def _route(self, exchange: Exchange) -> None:
        """Its turn: to the dispatcher's queue or the static files."""
        self.active = exchange
        exchange.state = ROUTE[exchange.state]
        self.front.router.route(exchange)

    def _protocol_error(self, exc: ProtocolError) -> None:
        log.debug("bad request from %s: %s (%d)", self.peer[0], exc.reason, exc.status)
        if self.state not in READS:
            # Bytes after the last request (llhttp refuses any after Connection: close), or it
            # answered and closed meanwhile: they belong to nobody.
            self.sent_more = True
            return
        if self.reading is not None:
            location = self.reading.location
            if location is not None and not exc.headers:
                exc.headers = location.error_lines  # its location's headers (front/rules.py)
            self.refused = self.reading  # answered with the error, and logged, in its turn
            self.reading = None
        self._stop_reading()
        if self.active is None:
            self._send_error(exc)
        else:
            self.pending_error = exc

    def reject(self, exc: ProtocolError) -> None:
        """Answer a request the front gave up on (front/timeouts.py) like a bad one, and close."""
        self._protocol_error(exc)

    def _stop_reading(self) -> None:
        self.state = STOP_READING[self.state]

    # --- responses out ---

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def abort_after_write(self) -> None:
        self.close()  # flushes what is buffered, then closes: a truncated body

    def _send_error(self, error: HTTPError) -> None:
        refused, self.refused = self.refused, None
        self.answer_error(error, refused)
        self._linger()

    def answer_error(self, error: HTTPError, refused: Exchange | None) -> None:
        """Write the front's own closing answer and log it. When the request's head was read
        (`refused`: a rule refused it, its body is too large or too slow), the answer is that
        exchange's: it carries its request id and is logged as every answered request is
        (:meth:`Exchange.refused`); a request that could not be parsed has only its status."""
        extra = refused.extra_head if refused is not None else b""
        self.write(error.to_response(self.front.date.get(), extra))
        if refused is None:
            self.front.access_log_error(self.peer, error.status)
        else:
            refused.refused(error.status, len(error.body))

    def _linger(self) -> None:
        """Close after an answer given while the client may still be sending (front/linger.py);
        requests it sent after that answer go unanswered."""
        if self.reading is not None:
            self.reading.drop()
            self.reading = None
        self._drop_pipeline()
        transport = self.transport
        if transport is None or transport.is_closing() or not transport.can_write_eof():
            self.close()
            return
        self.state = LINGER[self.state]
        self.flow.resume_reading()
        self.linger = Linger(self.front.loop, transport)

    def exchange_done(self, exchange: Exchange) -> None:
        self.front.log_access(exchange)
        if exchange is not self.active:
            return
        self.active = None
        if not exchange.keep_alive:
            if self.pipeline or self.reading is not None or self.parser.in_head or self.sent_more:
                self._linger()  # the client is sending more: let it read this answer
            else:
                self.close()
        elif self.pipeline:
            self._route_next()
        elif self.pending_error is not None:
            self._send_error(self.pending_error)
        elif self.state in READS:
            self._settle()
        else:
            self.close()  # it stopped reading, and all it owed is answered

    def _route_next(self) -> None:
        exchange = self.pipeline.popleft()
        self.flow.pipeline_shrank(len(self.pipeline))
        self._route(exchange)

    def _settle(self) -> None:
        """Nothing is being answered: IDLE, or on with the request still arriving."""
        reading = self.reading
        if reading is None:
            self.state = SETTLED[self.state]
        elif reading.state is HELD:
            reading.state = CONTINUE[reading.state]
            self.write(CONTINUE_LINE)
        self.idle_since = self.front.loop.time()
        self._report_slot()

    def last_answer(self) -> bool:
        """True when the response being sent is the last this connection will carry: it stops
        reading, and no pipelined request or pending error remains to be answered after it."""
        return self.state not in READS and not self.pipeline and self.pending_error is None

    def slot(self) -> Slot:
        """What this connection does with its slot: whether a new client may take it when all
        are taken (front/slots.py)."""
        slot = SLOT_OF[self.state]
        if slot is IDLE_SLOT and self.parser.in_head:
            return HEAD_SLOT  # a kept-alive connection part-way through its next head
        return slot

    def _report_slot(self) -> None:
        """Tell the front when this connection begins to wait, IDLE or in a HEAD, so that
        it may give its slot up to a new client (front/slots.py explains why going IN_USE is
        not told). This runs after every read and answer: most leave the slot as it was."""
        slot = SLOT_OF[self.state]  # self.slot(), inline: a call costs more than the rest
        if slot is IDLE_SLOT and self.parser.in_head:
            slot = HEAD_SLOT
        if slot is not self.last_slot:
            self.last_slot = slot
            if slot is not IN_USE_SLOT:
                self.front.slot_changed(self, slot)

    def close(self) -> None:
        self.state = CLOSE[self.state]
        if self.transport is not None:
            self.transport.close()
