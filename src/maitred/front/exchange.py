"""One request and its response as the front sees them: the request/response cycle.

Theory of operation
-------------------
An :class:`Exchange` is made by its connection when a request head is parsed
(front/connection.py) and lives until its response is out or its client leaves. Its
``state`` (front/states.py) says where it is; every method here that acts on it takes one move
of that table, so what may happen in each state is read there:

* **parsed** and **received**: the body goes into ``body`` (memory, then a spool file) while
  RECEIVING; a client waiting for ``100 Continue`` behind an earlier response is HELD;
* **queued**: complete, it waits PIPELINED behind the connection's earlier request, then is
  ROUTED: to the dispatcher's queue, or to the front's static files;
* **run**: a worker thread takes it (:meth:`attach`, RUNNING); the worker's frames arrive as
  ``respond_*`` calls (front/dispatcher.py);
* **answered**: the head moves it to RESPONDING (or SENDING when the front sends the body
  itself), the end to DONE, when it is logged and its connection goes on.

Response bytes from the worker are written to the client transport as they arrive, and each
write returns the same amount of flow-control credit to the worker thread, unless the
transport's buffer is past the response buffer size: then the rest of the body goes to a
response spool file (front/respspool.py) with its credit returned at once, so a slow reader
holds neither an app thread nor the front's memory. Without a spool (--response-spool-size 0,
or the spool is full) the credit waits until the buffer drains: the app thread's writes wait.

A client that leaves cancels its exchange (:meth:`cancel`): one not yet begun never runs, a
running one's thread is told (CANCEL) and is free at its next write, and the exchange waits
CANCELLED for the worker's last frame. Each is logged once, when it is over, as nginx logs it:
499 when no response had begun, else the status that was sent with the body bytes written so
far; a body cut short is logged 400.

Everything here runs on the event loop thread.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from maitred import link
from maitred.front.respspool import ResponseSpool
from maitred.front.spool import Body
from maitred.front.states import (
    APP_END,
    CANCEL,
    CANCELLED,
    DONE,
    DROP,
    FINISH,
    GONE,
    HEAD,
    HEAD_SENT,
    RECEIVING,
    REFUSE,
    START,
)
from maitred.http.errors import simple_response
from maitred.http.framing import Framing
from maitred.http.parser import RequestHead
from maitred.http.response import LAST_CHUNK, chunk

if TYPE_CHECKING:
    from maitred.front.cachefetch import Fetch
    from maitred.front.connection import ClientConnection
    from maitred.front.dispatcher import WorkerConnection
    from maitred.front.limits import Limiter
    from maitred.front.router import Target
    from maitred.front.rules import Refusal, Rule
    from maitred.front.sendfile import FileSender

log = logging.getLogger("maitred.error")


# Access-log statuses of requests whose client left (nginx's): before any response began, and
# in the middle of sending its body.
CLIENT_CLOSED = 499
BODY_CUT_SHORT = 400
# Who answered a request (Exchange.source): the router says it once, and the access log and
# the metrics read it. Plain strings: an Enum member read per request costs a Python call.
APP, STATIC, HEALTH = "app", "static", "health"
# What a request without a body sends: no chunks, no spool file (Body.finish).
NO_BODY: tuple[Sequence[link.Chunk], int] = ((), -1)


class Exchange:
    """One request and its response, as the front sees them."""

    __slots__ = (
        "app",
        "app_done",
        "body",
        "cache",
        "cache_fetch",
        "chunked",
        "client_wait",
        "complete",
        "conn",
        "dispatched",
        "extra_head",
        "head",
        "keep_alive",
        "limit_held",
        "location",
        "not_before",
        "peer",
        "refusal",
        "request_id",
        "rid",
        "sender",
        "sent",
        "source",
        "spool",
        "started",
        "state",
        "status",
        "suppress_body",
        "target",
        "unacked",
        "waiting_since",
        "worker",
    )

    def __init__(self, conn: ClientConnection, head: RequestHead, body: Body | None) -> None:
        self.conn = conn
        self.head = head
        self.body = body  # None: the request has no body
        self.worker: WorkerConnection | None = None
        self.rid = 0
        self.unacked = 0  # body bytes written while the client's buffer was full
        # Time the app spent held back by a slow client (credit withheld) does not count
        # against --timeout: that is the send timeout's business.
        self.client_wait = 0.0
        self.waiting_since = 0.0  # when credit started being withheld; 0 when it is not
        self.state = RECEIVING
        self.keep_alive = head.keep_alive
        self.chunked = False
        self.suppress_body = head.method == b"HEAD"
        self.status = 0  # the response's, for the access log
        self.sent = 0
        self.started = conn.front.loop.time()  # head complete
        self.complete = self.started  # whole request read: set when the body is in
        self.dispatched = 0.0  # handed to a worker thread
        self.app_done = 0.0  # the worker's last frame (maitred.front.dispatcher)
        self.request_id = ""
        self.source = APP  # or STATIC, HEALTH: who answers it (maitred.front.router)
        self.app = ""  # the app it goes to, when the server runs several (maitred.front.router)
        self.peer = conn.peer  # as a trusted proxy may say it is (maitred.front.router)
        # The request id header line, for heads the front writes itself (static files, errors);
        # a worker adds it to the heads it writes.
        self.extra_head = b""
        self.sender: FileSender | None = None  # sending a file body (maitred.front.sendfile)
        self.spool: ResponseSpool | None = None  # body bytes past the buffer (front.respspool)
        # Settled when the head is complete (maitred.front.router): the app it goes to (None:
        # no app takes it), the rules of its location (maitred.front.rules; None: there are
        # no rules), and the answer a rule gives instead of the app's.
        self.target: Target | None = None
        self.location: Rule | None = None
        self.refusal: Refusal | None = None
        # A location's limits (maitred.front.rules): the limit-conn count it holds, released
        # when it ends, and when a request within a rate's burst may go on (0: at once).
        self.limit_held: tuple[Limiter, int] | None = None
        self.not_before = 0.0
        # What the response cache made of it (maitred.front.cache), for the log and metrics;
        # and its record of the app's response (set only on that way: see front/cachefill.py).
        self.cache = ""
        self.cache_fetch: Fetch | None

    @property
    def queue_time(self) -> float:
        """Seconds the complete request waited for a thread (0 until it got one)."""
        return self.dispatched - self.complete if self.dispatched else 0.0

    def attach(self, worker: WorkerConnection, rid: int) -> None:
        """A worker thread takes the request (front/dispatcher.py)."""
        self.state = START[self.state]
        self.worker = worker
        self.rid = rid

    def request_frame(self, rid: int) -> tuple[list[link.Chunk], int]:
        """The REQUEST frame (maitred.link.Request) as buffers to write: the body chunks travel
        after the fields, uncopied; and the spooled body's descriptor that goes with it (-1:
        none), the caller's to send and close."""
        head = self.head
        body, spooled = self.body.finish() if self.body is not None else NO_BODY
        self.dispatched = self.conn.front.loop.time()
        frame = link.encode_request(
            rid,
            body,
            head.method,
            head.target,
            head.version,
            head.headers,
            b"",  # the body is the frame's tail
            spooled >= 0,
            *self.peer,
            self.dispatched - self.complete,  # queue time
            self.request_id,
            head.script_name,
            self.conn.client_dn,
        )
        return frame, spooled

    # --- the response, frame by frame from the worker ---

    def respond_head(self, status: int, length: int, head: bytes) -> None:
        if self.state in GONE:
            return  # answered already (timed out), or the client left: nothing to write
        self.state = HEAD[self.state]
        self.status = status
        location = self.location
        if location is not None and location.edit is not None:
            head = location.edit(head)  # the location's headers, on every response alike
        framing = self._framing(status, length)
        self.chunked = framing.chunked
        # Until now suppress_body says whether this is a HEAD; from here whether bytes go out.
        self.suppress_body = not framing.write_body
        self.conn.write(head + framing.tail)

    def _framing(self, status: int, length: int) -> Framing:
        """How this response's body ends (maitred.http.framing); settles keep-alive: the
        connection closes after it when the server stops or nothing follows."""
        conn = self.conn
        keep_alive = self.keep_alive and not (conn.front.stopping or conn.last_answer())
        framing = conn.frame(status, length, self.head.version, keep_alive, self.suppress_body)
        self.keep_alive = framing.keep_alive
        return framing

    def respond_body(self, data: bytes) -> None:
        if self.state in GONE:
            return
        if self.conn.flow.write_paused and self.spool is None and not self.suppress_body:
            self.spool = ResponseSpool.overflow(self)  # past the buffer: None if it cannot
        if self.spool is not None:
            self.spool.add(data)
            return
        size = len(data)
        if not self.suppress_body:
            self.write_body(data)
        if self.conn.flow.write_paused:
            self.withhold(size)
        else:
            self.credit(size)

    def write_body(self, data: bytes) -> None:
        self.sent += len(data)
        self.conn.write(chunk(data) if self.chunked else data)

    def credit(self, size: int) -> None:
        """Let the app thread write `size` bytes more."""
        assert self.worker is not None
        self.worker.credit(self.rid, size)

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
        if self.unacked and self.worker is not None and self.state is not DONE:
            self.worker.credit(self.rid, self.unacked)
            self.unacked = 0

    def respond_end(self) -> None:
        if self.spool is not None:
            self.spool.ended = True  # it ends this once its bytes are out
            self.state = APP_END[self.state]
            return
        if self.sender is not None:
            self.state = APP_END[self.state]  # the file the worker handed over ends this
            return
        if self.state in GONE and self._over_if_gone():  # a set lookup spares the call
            return
        self.state = FINISH[self.state]
        if self.chunked and not self.suppress_body:
            self.conn.write(LAST_CHUNK)
        self._done()

    def respond_full(self, status: int, length: int, head: bytes, body: bytes) -> None:
        if self.state in GONE and self._over_if_gone():  # a set lookup spares the call
            return
        self.state = FINISH[self.state]
        self.status = status
        location = self.location
        if location is not None and location.edit is not None:
            head = location.edit(head)
        framing = self._framing(status, length)
        if not framing.write_body:
            body = b""
        self.sent = len(body)
        self.conn.write(b"".join((head, framing.tail, body)))
        self._done()

    def respond_abort(self) -> None:
        """The app failed mid-response: end the connection so the client sees it truncated."""
        if self.state in GONE and self._over_if_gone():  # a set lookup spares the call
            return
        self.state = FINISH[self.state]
        self.keep_alive = False
        self.conn.abort_after_write()
        self._done()

    def respond_error(self, status: int, extra: bytes = b"") -> None:
        """A response of the front's own (the worker never saw or could not finish it)."""
        if self.state in GONE and self._over_if_gone():  # a set lookup spares the call
            return
        self.state = FINISH[self.state]
        self.status = status
        self.keep_alive = False
        extra += self.extra_head
        if self.location is not None:
            extra += self.location.error_lines
        self.conn.write(simple_response(status, self.conn.front.date.get(), extra=extra))
        self._done()

    def worker_lost(self, worker: str) -> None:
        """The link of the worker running it dropped; `worker` names it for the log."""
        if self.state is DONE:
            return  # answered already (timed out): only the thread's release matters
        log.error(
            "%s died handling %s %s",
            worker,
            self.head.method.decode("latin-1"),
            self.head.target.decode("latin-1"),
        )
        if self.state in HEAD_SENT:
            self.respond_abort()  # head already sent: the client must see a truncated response
        else:
            self.respond_error(502)

    def time_out(self) -> None:
        """The app ran past --timeout: 504 (or a truncated response), and interrupt it."""
        assert self.worker is not None
        self.worker.send(link.encode_timeout(self.rid))
        log.warning(
            "request timed out: %s %s",
            self.head.method.decode("latin-1"),
            self.head.target.decode("latin-1"),
        )
        if self.state in HEAD_SENT:
            self.respond_abort()
        else:
            self.respond_error(504)

    def cancel(self) -> None:
        """The client went away: stop this exchange wherever it is (it must not be DONE).

        It is over, and logged, at once unless a worker still holds it. The status it is logged
        with is nginx's choice: 499 when no response had begun, else the status sent (or
        BODY_CUT_SHORT, set by the connection for a request whose body was arriving).
        """
        self.state = CANCEL[self.state]
        if not self.status:
            self.status = CLIENT_CLOSED
        self._close_senders()
        if self.state is CANCELLED:
            assert self.worker is not None
            self.worker.cancel(self.rid)
            # It is over when the worker says so (END, FULL, ABORT) or its link drops, both
            # ending in _done.
            return
        self._done()

    def refused(self, status: int, sent: int) -> None:
        """The front answered it with an error of its own (`status`, `sent` body bytes) while
        its body was arriving; its connection closes. It is over, and logged like any answered
        request: its request line, id, app, and its location's ``access-log``."""
        self.state = REFUSE[self.state]
        self.status = status
        self.sent = sent
        self._done()

    def drop(self) -> None:
        """Forget a request that will not be answered (nor logged): the connection closes."""
        self.state = DROP[self.state]
        self.cleanup()

    def _over_if_gone(self) -> bool:
        """True when there is nothing to write: the exchange was answered already (timed out)
        or its client left. The worker's last frame then only ends a cancelled exchange (its
        thread is free), leaving the status and byte count it had for the log."""
        state = self.state
        if state is CANCELLED:
            self.state = FINISH[state]
            self._done()
            return True
        return state is DONE

    def cleanup(self) -> None:
        if self.body is not None:
            self.body.discard()
        if self.limit_held is not None:
            limiter, held = self.limit_held
            self.limit_held = None
            limiter.release(held)
        if self.sender is not None or self.spool is not None:  # seldom: no call then
            self._close_senders()

    def _close_senders(self) -> None:
        if self.sender is not None:
            self.sender.close()
        if self.spool is not None:
            self.spool.close()

    def _done(self) -> None:
        """Over (the state is DONE already): the connection logs it and goes on."""
        self.cleanup()
        self.conn.exchange_done(self)
