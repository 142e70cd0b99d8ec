"""Client connections: read whole requests, hand them to the dispatcher, write responses.

Theory of operation
-------------------
A connection parses requests as bytes arrive. A request becomes an :class:`Exchange` when its
head is complete; its body is gathered (in memory, spooled to a file past the buffer size) and
only once the whole request is in does the exchange go to the dispatcher. So a slow upload never
holds a worker thread.

Responses leave in request order: one exchange per connection is *active* (queued in the
dispatcher or running in a worker); later pipelined requests wait in ``pipeline`` until it is
done. Response bytes from the worker are written to the client transport as they arrive, and
each write returns the same amount of flow-control credit to the worker thread, unless the
transport's buffer is past the response buffer size: then the rest of the body goes to a
response spool file (front/respspool.py) with its credit returned at once, so a slow reader
holds neither an app thread nor the front's memory. Without a spool (--response-spool-size 0,
or the spool is full) the credit waits until the buffer drains: the app thread's writes wait.

A client that leaves (its connection drops, or it sends FIN: HTTP clients do not half-close to
wait for an answer, and nginx takes FIN the same way) cancels its requests: one not yet begun
never runs, a running one's thread is told (CANCEL) and is free at its next write. Each is
logged once, when it is over, as nginx logs it: 499 when no response had begun, else the status
that was sent with the body bytes written so far; a body cut short is logged 400.

An answer the front gives before the whole request is in (4xx, a body it cannot spool) ends
with a lingering close (front/linger.py), so a client still sending can read it.

Everything here runs on the event loop thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any, cast

from maitred import link as linkcodec
from maitred.front.linger import Linger
from maitred.front.respspool import ResponseSpool
from maitred.front.slots import Slot
from maitred.front.spool import Body
from maitred.http.errors import ProtocolError, simple_response
from maitred.http.framing import frame
from maitred.http.parser import END, RequestHead, RequestParser
from maitred.http.response import LAST_CHUNK, chunk

if TYPE_CHECKING:
    from maitred.front.dispatcher import WorkerLink
    from maitred.front.main import Front
    from maitred.front.sendfile import FileSender

log = logging.getLogger("maitred.error")

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

# Complete requests one connection may have waiting behind its active one before the front
# stops reading from it: pipelining is for latency, not for queueing work in the front.
MAX_PIPELINED = 16

# Access-log statuses of requests whose client left (nginx's): before any response began, and
# in the middle of sending its body.
CLIENT_CLOSED = 499
BODY_CUT_SHORT = 400


class Exchange:
    """One request and its response, as the front sees them."""

    __slots__ = (
        "app_done",
        "body",
        "cancelled",
        "chunked",
        "client_wait",
        "complete",
        "conn",
        "continue_pending",
        "dispatched",
        "extra_head",
        "finished",
        "head",
        "keep_alive",
        "link",
        "peer",
        "request_id",
        "rid",
        "sender",
        "sent",
        "spool",
        "started",
        "status",
        "suppress_body",
        "unacked",
        "waiting_since",
    )

    def __init__(self, conn: ClientConnection, head: RequestHead, body: Body) -> None:
        self.conn = conn
        self.head = head
        self.body = body
        self.link: WorkerLink | None = None
        self.rid = 0
        self.unacked = 0  # body bytes written while the client's buffer was full
        # Time the app spent held back by a slow client (credit withheld) does not count
        # against --timeout: that is the send timeout's business.
        self.client_wait = 0.0
        self.waiting_since = 0.0  # when credit started being withheld; 0 when it is not
        self.cancelled = False
        self.finished = False
        self.continue_pending = False
        self.keep_alive = head.keep_alive
        self.chunked = False
        self.suppress_body = head.method == b"HEAD"
        self.status = 0
        self.sent = 0
        self.started = conn.front.loop.time()  # head complete
        self.complete = self.started  # whole request read: set when the body is in
        self.dispatched = 0.0  # handed to a worker thread
        self.app_done = 0.0  # the worker's last frame (maitred.front.dispatcher)
        self.request_id = ""
        self.peer = conn.peer  # as a trusted proxy may say it is (maitred.front.router)
        # The request id header line, for heads the front writes itself (static files, errors);
        # a worker adds it to the heads it writes.
        self.extra_head = b""
        self.sender: FileSender | None = None  # sending a file body (maitred.front.sendfile)
        self.spool: ResponseSpool | None = None  # body bytes past the buffer (front.respspool)

    @property
    def queue_time(self) -> float:
        """Seconds the complete request waited for a thread (0 until it got one)."""
        return self.dispatched - self.complete if self.dispatched else 0.0

    def attach(self, link: WorkerLink, rid: int) -> None:
        self.link = link
        self.rid = rid

    def request_frame(self) -> tuple[tuple[Any, ...], list[bytes]]:
        """The REQUEST frame's fields (order: maitred.worker.wsgi.Request), and the body
        chunks that travel after them."""
        head = self.head
        body, body_path = self.body.finish()
        self.dispatched = self.conn.front.loop.time()
        fields = (
            head.method,
            head.target,
            head.version,
            head.headers,
            b"",  # the body travels as the frame's tail: link.encode_request
            body_path,
            *self.peer,
            self.dispatched - self.complete,  # queue time
            self.request_id,
        )
        return fields, body

    # --- the response, frame by frame from the worker ---

    def respond_head(self, status: int, length: int, head: bytes) -> None:
        if self.finished or self.cancelled:
            return  # answered already (timed out), or the client left: nothing to write
        self.status = status
        conn = self.conn
        # The connection closes after this response when the server stops or nothing follows.
        keep_alive = self.keep_alive and not (conn.front.stopping or conn.last_answer())
        # Until now suppress_body says whether this is a HEAD; from here whether bytes go out.
        framing = frame(status, length, self.head.version, keep_alive, self.suppress_body)
        self.keep_alive = framing.keep_alive
        self.chunked = framing.chunked
        self.suppress_body = not framing.write_body
        self.conn.write(head + framing.tail)

    def respond_body(self, data: bytes) -> None:
        if self.finished or self.cancelled:
            return
        if self.conn.write_paused and self.spool is None and not self.suppress_body:
            self.spool = ResponseSpool.overflow(self)  # past the buffer: None if it cannot
        if self.spool is not None:
            self.spool.add(data)
            return
        size = len(data)
        if not self.suppress_body:
            self.write_body(data)
        if self.conn.write_paused:
            self.withhold(size)
        else:
            self.credit(size)

    def write_body(self, data: bytes) -> None:
        self.sent += len(data)
        self.conn.write(chunk(data) if self.chunked else data)

    def credit(self, size: int) -> None:
        """Let the app thread write `size` bytes more."""
        assert self.link is not None
        self.link.credit(self.rid, size)

    def withhold(self, size: int) -> None:
        """Keep the credit for `size` bytes until the client drains its buffer."""
        self.unacked += size
        if not self.waiting_since:
            self.waiting_since = self.conn.front.loop.time()

    def return_credit(self) -> None:
        """The client's buffer drained: let the app thread write again."""
        if self.spool is not None:
            self.spool.resume()
            return
        if self.sender is not None:
            self.sender.resume()
            return
        if self.waiting_since:
            self.client_wait += self.conn.front.loop.time() - self.waiting_since
            self.waiting_since = 0.0
        if self.unacked and self.link is not None and not self.finished:
            self.link.credit(self.rid, self.unacked)
            self.unacked = 0

    def respond_end(self) -> None:
        if self.spool is not None:
            self.spool.ended = True  # it ends this once its bytes are out
            return
        if self.sender is not None:
            return  # the front is sending the file the worker handed over; it ends this
        if self._over_if_gone():
            return
        if self.chunked and not self.suppress_body:
            self.conn.write(LAST_CHUNK)
        self._done()

    def respond_full(self, status: int, length: int, head: bytes, body: bytes) -> None:
        if self._over_if_gone():
            return
        self.status = status
        conn = self.conn
        keep_alive = self.keep_alive and not (conn.front.stopping or conn.last_answer())
        framing = frame(status, length, self.head.version, keep_alive, self.suppress_body)
        self.keep_alive = framing.keep_alive
        if not framing.write_body:
            body = b""
        self.sent = len(body)
        conn.write(b"".join((head, framing.tail, body)))
        self._done()

    def respond_abort(self) -> None:
        """The app failed mid-response: end the connection so the client sees it truncated."""
        if self._over_if_gone():
            return
        self.keep_alive = False
        self.conn.abort_after_write()
        self._done()

    def respond_error(self, status: int, extra: bytes = b"") -> None:
        """A response of the front's own (the worker never saw or could not finish it)."""
        if self._over_if_gone():
            return
        self.status = status
        self.keep_alive = False
        extra += self.extra_head
        self.conn.write(simple_response(status, self.conn.front.date.get(), extra=extra))
        self._done()

    def worker_lost(self, pid: int) -> None:
        if self.finished:
            return  # answered already (timed out): only the thread's release matters
        log.error(
            "worker %d died handling %s %s",
            pid,
            self.head.method.decode("latin-1"),
            self.head.target.decode("latin-1"),
        )
        if self.status:
            self.respond_abort()  # head already sent: the client must see a truncated response
        else:
            self.respond_error(502)

    def time_out(self) -> None:
        """The app ran past --timeout: 504 (or a truncated response), and interrupt it."""
        assert self.link is not None
        self.link.send(linkcodec.encode(linkcodec.TIMEOUT, self.rid))
        log.warning(
            "request timed out: %s %s",
            self.head.method.decode("latin-1"),
            self.head.target.decode("latin-1"),
        )
        if self.status:
            self.respond_abort()
        else:
            self.respond_error(504)

    def cancel(self) -> None:
        """The client went away: stop this exchange wherever it is (it must not be finished).

        It is over, and logged, at once unless a worker still holds it. The status it is logged
        with is nginx's choice: 499 when no response had begun, else the status sent.
        """
        self.cancelled = True
        if not self.status:
            self.status = CLIENT_CLOSED
        self._close_senders()
        if self.link is not None and not self.app_done:
            self.link.cancel(self.rid)
            # The worker may not have opened a spooled body yet: it goes when the worker says
            # the request is over (END, FULL, ABORT) or its link drops, both ending in _done.
            return
        self._done()

    def _over_if_gone(self) -> bool:
        """True when there is nothing to write: the exchange was answered already (timed out)
        or its client left. The worker's last frame then only ends a cancelled exchange (its
        thread is free), leaving the status and byte count it had for the log."""
        if self.cancelled and not self.finished:
            self._done()
        return self.finished

    def cleanup(self) -> None:
        self.body.discard()
        self._close_senders()

    def _close_senders(self) -> None:
        if self.sender is not None:
            self.sender.close()
        if self.spool is not None:
            self.spool.close()

    def _done(self) -> None:
        self.finished = True
        self.cleanup()
        self.conn.exchange_done(self)


class ClientConnection(asyncio.Protocol):
    def __init__(self, front: Front) -> None:
        self.front = front
        self.transport: asyncio.Transport | None = None
        self.parser = RequestParser(front.limits)
        self.peer: tuple[str, str, str, str, str] = ("", "", "", "", "http")
        self.reading: Exchange | None = None  # request whose body is arriving
        self.active: Exchange | None = None  # request being served
        self.pipeline: deque[Exchange] = deque()
        self.write_paused = False
        self.read_paused = False
        self.closing = False  # no further requests are read: close once responses are out
        self.pending_error = 0  # status to answer once earlier responses are out
        self.linger: Linger | None = None  # reading what it still sends after the last answer
        self.served = 0  # responses completed on this connection
        self.idle_since = front.loop.time()

    # --- asyncio callbacks ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(high=self.front.cfg.response_buffer_size)
        self.peer = self.front.peer_info(transport)
        self.front.connection_opened(self)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            if self.linger is not None:
                self.linger.discard(len(data))
            return
        error: ProtocolError | None = None
        try:
            events = self.parser.feed(data)
        except ProtocolError as exc:
            events, error = exc.events, exc  # requests before the bad one are still served
        try:
            for event in events:
                if event.__class__ is bytes:
                    assert self.reading is not None
                    self.reading.body.add(event)
                elif event is END:
                    self._request_complete()
                else:
                    self._head_complete(cast(RequestHead, event))
        except ProtocolError as exc:  # the body could not be spooled
            error = exc
        if error is not None:
            self._protocol_error(error)
        elif self.parser.closed and self.reading is None:
            self._stop_reading()
        self.front.slot_changed(self)

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
        self.closing = True
        reading, active = self.reading, self.active
        self.reading = self.active = None  # first: exchange_done must not start the next one
        self._drop_pipeline()
        if reading is not None:
            reading.status = BODY_CUT_SHORT
            reading.cancel()
        if active is not None and not active.finished:
            active.cancel()

    def _drop_pipeline(self) -> None:
        for exchange in self.pipeline:
            exchange.cleanup()
        self.pipeline.clear()

    def pause_writing(self) -> None:
        self.write_paused = True  # credit for further body bytes waits (Exchange.respond_body)

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.active is not None:
            self.active.return_credit()

    # --- requests in ---

    def _head_complete(self, head: RequestHead) -> None:
        cfg = self.front.cfg
        exchange = Exchange(self, head, Body(cfg.body_buffer_size, cfg.body_temp_dir))
        self.reading = exchange
        if head.expect_continue and (head.chunked or head.content_length):
            if self.active is None:
                self.write(CONTINUE)
            else:
                exchange.continue_pending = True

    def _request_complete(self) -> None:
        exchange = self.reading
        assert exchange is not None
        exchange.body.end()  # SpoolError while it is still the request being read
        self.reading = None
        exchange.complete = self.front.loop.time()
        if not exchange.keep_alive:
            self._stop_reading()
        if self.active is None:
            self.active = exchange
            self.front.router.route(exchange)
        else:
            self.pipeline.append(exchange)
            if len(self.pipeline) >= MAX_PIPELINED and not self.read_paused:
                self.read_paused = True
                assert self.transport is not None
                self.transport.pause_reading()

    def _protocol_error(self, exc: ProtocolError) -> None:
        log.debug("bad request from %s: %s (%d)", self.peer[0], exc.reason, exc.status)
        if self.reading is not None:
            self.reading.cleanup()
            self.reading = None
        self._stop_reading()
        if self.active is None:
            self._send_error(exc.status)
        else:
            self.pending_error = exc.status

    def reject(self, exc: ProtocolError) -> None:
        """Answer a request the front gave up on (front/timeouts.py) like a bad one, and close."""
        self._protocol_error(exc)

    def _stop_reading(self) -> None:
        self.closing = True

    # --- responses out ---

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def abort_after_write(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()  # flushes what is buffered, then closes: a truncated body

    def _send_error(self, status: int) -> None:
        self.write(simple_response(status, self.front.date.get()))
        self.front.access_log_error(self, status)
        self._linger()

    def _linger(self) -> None:
        """Close after an answer given while the client may still be sending (front/linger.py);
        requests it sent after that answer go unanswered."""
        self.closing = True
        if self.reading is not None:
            self.reading.cleanup()
            self.reading = None
        self._drop_pipeline()
        transport = self.transport
        if transport is None or transport.is_closing() or self.linger is not None:
            return
        if not transport.can_write_eof():
            transport.close()
            return
        if self.read_paused:
            self.read_paused = False
            transport.resume_reading()
        self.linger = Linger(self.front.loop, transport)

    def exchange_done(self, exchange: Exchange) -> None:
        self.served += 1
        self.front.log_access(exchange)
        if exchange is not self.active:
            return
        self.active = None
        if not exchange.keep_alive:
            if self.pipeline or self.reading is not None or self.parser.in_head:
                self._linger()  # the client is sending more: let it read this answer
            else:
                self.close()
            return
        if self.pipeline:
            self.active = self.pipeline.popleft()
            if self.read_paused and len(self.pipeline) < MAX_PIPELINED // 2:
                self.read_paused = False
                assert self.transport is not None
                self.transport.resume_reading()
            self.front.router.route(self.active)
        elif self.pending_error:
            self._send_error(self.pending_error)
        elif self.closing and self.reading is None:
            self.close()
        else:
            if self.reading is not None and self.reading.continue_pending:
                self.reading.continue_pending = False
                self.write(CONTINUE)
            self.idle_since = self.front.loop.time()
            self.front.slot_changed(self)

    def last_answer(self) -> bool:
        """True when the response being sent is the last this connection will carry: it stops
        reading, and no pipelined request or pending error remains to be answered after it."""
        return self.closing and not self.pipeline and not self.pending_error

    def is_idle(self) -> bool:
        return self.active is None and self.reading is None and not self.parser.in_head

    def slot(self) -> Slot:
        """What this connection does with its slot: whether a new client may take it when all
        are taken (front/slots.py)."""
        if self.closing or self.active is not None or self.reading is not None or self.pipeline:
            return Slot.IN_USE
        return Slot.IDLE if self.served and not self.parser.in_head else Slot.HEAD

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()
