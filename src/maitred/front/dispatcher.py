"""The dispatcher: one FIFO queue in front of the worker threads, never greedy.

Theory of operation
-------------------
A front has one dispatcher per app (maitred.apps), fed by that app's workers only: each app has
its own queue, its own threads and its own limits, so a flood on one cannot take another's.

Each worker process has one link to the front (:class:`WorkerConnection`) and says how many threads
it runs. A complete request goes straight to the least busy worker that has an idle thread now
(the most idle threads); when every thread is busy it waits in ``queue``, and the next thread
that frees takes the oldest request. So no request waits inside a busy worker while another
thread is free, and no worker ever holds more requests than it has threads.

A request counts against its worker's threads until the worker says it is over (END, FULL or
ABORT), even when its client has gone and the front sent CANCEL: the thread is busy until then.

The queue is bounded: past ``max_queue`` waiting requests, or for one that waited longer than
``queue_timeout`` (checked when a thread frees and on every sweep), the front answers 503 with
Retry-After itself: under a flood, clients get a fast "try later" instead of a wall of timeouts.

Frames from a worker are read through one table, :data:`RECEIVERS` (see maitred.link): a
worker that sends anything else, or a malformed message, has its link closed.

A worker that sends DRAIN gets no new requests; the front answers DRAINED, after which the
worker finishes what it holds and exits. A link that drops (the worker died) fails the requests
it held with 502; requests still in the queue are untouched.

Frames for a worker are gathered during an event-loop turn and written once at its end. A
spooled body's descriptor goes with them (maitred.link.files), written with sendmsg on the
link's socket itself, which keeps the bytes in order only while the transport holds none
unsent: otherwise, or when the socket is full, the batch waits and is tried again shortly
(FILES_RETRY). A full link is rare, as a worker's reader thread reads all the time.

Owned by the event loop thread: nothing here is touched from another thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from maitred import link
from maitred.front import sendfile
from maitred.front.states import DONE
from maitred.http.errors import RETRY_AFTER

if TYPE_CHECKING:
    from maitred.front.exchange import Exchange

log = logging.getLogger("maitred.error")

FILES_RETRY = 0.002  # seconds before a batch with files tries a link that was full again
# Room on the link for a whole in-memory request body (--body-buffer-size, 1 MiB by default)
# with its frame, so that it crosses in one write and few reads: with the kernel's default
# (about 200 KiB) a 1 MiB upload took five rounds or more of write, wake the worker's reader,
# read, wake the front. A bound, not an allocation; the kernel caps it at net.core.wmem_max.
LINK_SEND_BUFFER = 4 * 1024 * 1024


class Dispatcher:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        max_queue: int = 0,
        queue_timeout: float = 0.0,
        app: str = "",
    ) -> None:
        self.loop = loop
        self.app = app  # the app whose pool it feeds, as logs name it ("": the only one)
        self.queue: deque[Exchange] = deque()
        self.workers: list[WorkerConnection] = []
        self.max_queue = max_queue  # 0: unbounded
        self.queue_timeout = queue_timeout  # 0: wait as long as it takes
        self.shed = 0  # requests answered 503 since the last report_shed()
        # Called when a request joins the queue: the pool's load meter (front/load.py).
        self.on_queue: Callable[[], None] | None = None

    def submit(self, exchange: Exchange) -> None:
        """Send a complete request to a free thread now, or queue it."""
        if not self.queue:
            worker = self._least_busy()
            if worker is not None:
                worker.start(exchange)
                return
        if self.max_queue and len(self.queue) >= self.max_queue:
            self._shed(exchange)
            return
        self.queue.append(exchange)
        if self.on_queue is not None:
            self.on_queue()

    def _least_busy(self) -> WorkerConnection | None:
        best: WorkerConnection | None = None
        most = 0
        for worker in self.workers:
            free = worker.threads - len(worker.exchanges)
            if free > most and not worker.draining:
                best, most = worker, free
        return best

    def pump(self) -> None:
        """Threads became free: give them the oldest queued requests."""
        queue = self.queue
        while queue:
            if queue[0].state is DONE:  # its client left
                queue.popleft()
                continue
            worker = self._least_busy()
            if worker is None:
                return
            exchange = queue.popleft()
            if self._too_old(exchange, self.loop.time()):
                self._shed(exchange)
            else:
                worker.start(exchange)

    def expire_queued(self, now: float) -> None:
        """Answer 503 to queued requests that waited past the queue timeout."""
        if not (self.queue_timeout and self.queue):
            return
        waiting, self.queue = self.queue, deque()
        for exchange in waiting:
            if exchange.state is DONE:  # its client left
                continue
            if self._too_old(exchange, now):
                self._shed(exchange)
            else:
                self.queue.append(exchange)

    def report_shed(self) -> None:
        if self.shed:
            log.warning(
                "overloaded: %d requests%s answered 503 (max-queue, queue-timeout)",
                self.shed,
                f" to {self.app}" if self.app else "",
            )
            self.shed = 0

    def shed_queue(self) -> None:
        """The app is gone (front/apptable.py): its queued requests get 503, as a full queue
        gives; a retry finds no app (404)."""
        waiting, self.queue = self.queue, deque()
        for exchange in waiting:
            if exchange.state is not DONE:  # else its client left
                self._shed(exchange)

    def _too_old(self, exchange: Exchange, now: float) -> bool:
        # From the end of the request, as its client counts (and as maitred.queue_time does).
        return bool(self.queue_timeout) and now - exchange.complete > self.queue_timeout

    def _shed(self, exchange: Exchange) -> None:
        self.shed += 1
        exchange.respond_error(503, RETRY_AFTER)

    def add(self, worker: WorkerConnection) -> None:
        self.workers.append(worker)
        self.pump()

    def has_ready_worker(self) -> bool:
        """Whether a worker that takes requests is linked (maitred.readiness)."""
        return any(not worker.draining for worker in self.workers)

    def remove(self, worker: WorkerConnection) -> None:
        if worker in self.workers:
            self.workers.remove(worker)

    def expire(self, dispatched_before: float) -> None:
        """Requests dispatched before the given time ran too long: time them out (once).

        Time a request spent held back by its slow client does not count, nor does a
        request being held back now: the app is waiting, not stuck.
        """
        for worker in self.workers:
            for exchange in list(worker.exchanges.values()):
                if exchange.state is DONE or exchange.waiting_since:
                    continue
                if exchange.dispatched + exchange.client_wait < dispatched_before:
                    exchange.time_out()


class WorkerConnection(asyncio.Protocol):
    """The front's end of one worker's link."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.frames = link.FrameBuffer()
        self.transport: asyncio.Transport | None = None
        self.pid = 0
        self.worker_id = 0
        self.threads = 0  # 0 until HELLO: no requests before the worker said who it is
        self.draining = False
        self.exchanges: dict[int, Exchange] = {}  # rid -> exchange its thread is running
        self.served = 0  # requests its threads finished, for the status page (front/inflight.py)
        self._next_rid = 0
        self._out: list[link.Chunk] = []
        self._files: list[int] = []  # spooled bodies that go with the frames in _out

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, LINK_SEND_BUFFER)

    # --- out: gathered per loop turn ---

    def send(self, *buffers: link.Chunk) -> None:
        """Queue frames (or the buffers of one) for the write at the end of this loop turn."""
        if not self._out:
            self.dispatcher.loop.call_soon(self._flush)
        self._out += buffers

    def _flush(self) -> None:
        if self._files:
            self._flush_with_files()
            return
        out, self._out = self._out, []
        if self.transport is None or not out:
            return
        if len(out) == 1:
            self.transport.write(out[0])
        else:
            self.transport.writelines(out)  # uvloop: one writev, body chunks not copied

    def _flush_with_files(self) -> None:
        """Write the batch with its files by sendmsg, or try again soon (see the top)."""
        transport = self.transport
        if transport is None:
            self._drop_out()
            return
        sent = -1
        if not transport.get_write_buffer_size():
            fileno = transport.get_extra_info("socket").fileno()
            try:
                sent = link.send_with_files(fileno, self._out, self._files)
            except BlockingIOError:
                pass
            except OSError:  # the link is broken: connection_lost follows
                self._drop_out()
                return
        if sent < 0:
            self.dispatcher.loop.call_later(FILES_RETRY, self._flush)
            return
        rest = memoryview(b"".join(self._out))[sent:]
        self._drop_out()  # the files are the worker's now
        if rest:
            transport.write(rest)

    def _drop_out(self) -> None:
        self._out = []
        files, self._files = self._files, []
        for fd in files:
            with contextlib.suppress(OSError):
                os.close(fd)

    def start(self, exchange: Exchange) -> None:
        self._next_rid = rid = (self._next_rid + 1) & 0xFFFFFFFF or 1
        self.exchanges[rid] = exchange
        exchange.attach(self, rid)
        frame, spooled = exchange.request_frame(rid)
        if spooled >= 0:
            self._files.append(spooled)
        self.send(*frame)

    def credit(self, rid: int, size: int) -> None:
        self.send(link.encode_window(rid, size))

    def cancel(self, rid: int) -> None:
        """The client is gone: the worker closes the app's iterable at its next write."""
        self.send(link.encode_cancel(rid))

    # --- in: the messages of RECEIVERS, below ---

    def data_received(self, data: bytes) -> None:
        try:
            for kind, rid, payload in self.frames.feed(data):
                RECEIVERS[kind](self, rid, payload)
        except link.LinkError as exc:
            log.error("%s broke the link protocol, closing its link: %s", self.name, exc)
            self.close()

    @property
    def name(self) -> str:
        """How log lines name the worker: by pid, and with its app when there are several."""
        app = self.dispatcher.app
        if app:
            return f"worker {self.worker_id} of {app} (pid {self.pid})"
        return f"worker {self.pid}"

    def _exchange(self, rid: int) -> Exchange:
        exchange = self.exchanges.get(rid)
        if exchange is None:
            raise link.ProtocolViolation(f"a message for request {rid}, which it does not hold")
        return exchange

    def _hello(self, rid: int, pid: int, worker_id: int, threads: int) -> None:
        if self.threads:
            raise link.ProtocolViolation("a second HELLO")
        self.pid, self.worker_id, self.threads = pid, worker_id, threads
        self.dispatcher.add(self)

    def _head(self, rid: int, status: int, content_length: int, head: bytes) -> None:
        self._exchange(rid).respond_head(status, content_length, head)

    def _body(self, rid: int, data: bytes) -> None:
        self._exchange(rid).respond_body(data)

    def _end(self, rid: int) -> None:
        self._over(rid).respond_end()

    def _full(self, rid: int, status: int, content_length: int, head: bytes, body: bytes) -> None:
        self._over(rid).respond_full(status, content_length, head, body)

    def _abort(self, rid: int) -> None:
        self._over(rid).respond_abort()

    def _file(
        self,
        rid: int,
        status: int,
        content_length: int,
        head: bytes,
        fd: int,
        device: int,
        inode: int,
        offset: int,
    ) -> None:
        file = link.File(status, content_length, head, fd, device, inode, offset)
        taken = sendfile.take_over(self._exchange(rid), self.pid, file)
        self.send(link.encode_taken(rid, taken))

    def _drain(self, rid: int) -> None:
        self.draining = True
        self.send(link.encode_drained(0))

    def _over(self, rid: int) -> Exchange:
        """The thread of `rid` is free before its response reaches the client, so a queued
        request can start while this response drains to a slow client."""
        exchange = self.exchanges.pop(rid, None)
        if exchange is None:
            raise link.ProtocolViolation(f"the end of request {rid}, which it does not hold")
        self.served += 1
        dispatcher = self.dispatcher
        exchange.app_done = dispatcher.loop.time()
        if dispatcher.queue:
            dispatcher.pump()
        return exchange

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._drop_out()
        self.dispatcher.remove(self)
        exchanges, self.exchanges = self.exchanges, {}
        for exchange in exchanges.values():
            exchange.worker_lost(self.name)


# What a front takes from a worker; any other frame closes the worker's link.
RECEIVERS: link.Receivers[WorkerConnection] = link.Receivers(
    link.on(link.Hello)(WorkerConnection._hello),
    link.on(link.Head)(WorkerConnection._head),
    link.on(link.Body)(WorkerConnection._body),
    link.on(link.End)(WorkerConnection._end),
    link.on(link.Full)(WorkerConnection._full),
    link.on(link.Abort)(WorkerConnection._abort),
    link.on(link.File)(WorkerConnection._file),
    link.on(link.Drain)(WorkerConnection._drain),
)
