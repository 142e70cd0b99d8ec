"""The dispatcher: one FIFO queue in front of the worker threads, never greedy.

Theory of operation
-------------------
Each worker thread is a *slot*: its own link connection to the front. A slot is either idle
(in its worker's ``idle`` list) or carries exactly one exchange. A complete request goes straight
to an idle slot of the least busy worker (the one with the most idle slots); when there is none,
it waits in ``queue`` and the next slot that frees takes the oldest request. So a request never
waits inside a busy worker while another thread is free, and no worker ever holds more requests
than it has threads.

A worker that sends DRAIN gets no new requests; its slots are closed as they become idle, which
tells its threads to exit. A slot whose link drops mid-request (the worker died) fails its
exchange with 502; requests still in the queue are untouched.

Owned by the event loop thread: nothing here is touched from another thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any, cast

from maitred import link

if TYPE_CHECKING:
    from maitred.front.client import Exchange

log = logging.getLogger("maitred.error")


class WorkerEntry:
    """What the front knows of one worker process."""

    __slots__ = ("busy", "draining", "idle", "pid", "worker_id")

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.worker_id = -1
        self.idle: list[Slot] = []
        self.busy = 0
        self.draining = False


class Dispatcher:
    def __init__(self) -> None:
        self.queue: deque[Exchange] = deque()
        self.workers: dict[int, WorkerEntry] = {}

    def worker(self, pid: int) -> WorkerEntry:
        entry = self.workers.get(pid)
        if entry is None:
            entry = self.workers[pid] = WorkerEntry(pid)
        return entry

    def submit(self, exchange: Exchange) -> None:
        """Send a complete request to a free thread now, or queue it."""
        if not self.queue:
            slot = self._free_slot()
            if slot is not None:
                slot.start(exchange)
                return
        self.queue.append(exchange)

    def _free_slot(self) -> Slot | None:
        best: WorkerEntry | None = None
        most = 0
        for entry in self.workers.values():
            free = len(entry.idle)
            if free > most and not entry.draining:
                best, most = entry, free
        if best is None:
            return None
        best.busy += 1
        return best.idle.pop()

    def release(self, slot: Slot) -> None:
        """A slot finished its exchange (or just said hello): give it the next request."""
        entry = slot.worker
        assert entry is not None
        if entry.draining:
            slot.close()
            return
        entry.idle.append(slot)
        queue = self.queue
        while queue:
            exchange = queue[0]
            if exchange.cancelled:
                queue.popleft()
                continue
            free = self._free_slot()
            if free is None:
                break
            queue.popleft()
            free.start(exchange)

    def drain(self, pid: int) -> None:
        entry = self.worker(pid)
        entry.draining = True
        idle, entry.idle = entry.idle, []
        for slot in idle:
            slot.close()

    def lost(self, slot: Slot) -> None:
        """A slot's link closed: forget the slot, and the worker once it has none left."""
        entry = slot.worker
        if entry is None:
            return
        if slot in entry.idle:
            entry.idle.remove(slot)
        if not entry.idle and entry.busy == 0:
            self.workers.pop(entry.pid, None)

    @property
    def in_flight(self) -> int:
        return sum(entry.busy for entry in self.workers.values())


class Slot(asyncio.Protocol):
    """The front's end of one link connection: a worker thread, or a worker's control link."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.frames = link.FrameBuffer()
        self.transport: asyncio.Transport | None = None
        self.worker: WorkerEntry | None = None
        self.exchange: Exchange | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def start(self, exchange: Exchange) -> None:
        self.exchange = exchange
        exchange.slot = self
        transport = self.transport
        assert transport is not None
        transport.write(link.encode(link.REQUEST, exchange.request_frame()))
        if exchange.conn.write_paused:
            transport.pause_reading()

    def data_received(self, data: bytes) -> None:
        try:
            for kind, payload in self.frames.feed(data):
                self._frame(kind, link.decode(kind, payload))
        except link.LinkError as exc:
            log.error("closing link to worker: %s", exc)
            self.close()

    def _frame(self, kind: int, value: Any) -> None:
        exchange = self.exchange
        if exchange is not None:
            if kind == link.FULL:
                self._finish()
                exchange.respond_full(*value)
            elif kind == link.BODY:
                exchange.respond_body(value)
            elif kind == link.HEAD:
                exchange.respond_head(*value)
            elif kind == link.END:
                self._finish()
                exchange.respond_end()
            elif kind == link.ABORT:
                self._finish()
                exchange.respond_abort()
            else:
                raise link.LinkError(f"unexpected frame type {kind} during a response")
        elif kind == link.HELLO_THREAD:
            self.worker = self.dispatcher.worker(value[0])
            self.dispatcher.release(self)
        elif kind == link.HELLO_WORKER:
            pid, worker_id, _threads = value
            self.worker = self.dispatcher.worker(pid)
            self.worker.worker_id = worker_id
        elif kind == link.DRAIN and self.worker is not None:
            self.dispatcher.drain(self.worker.pid)
        else:
            raise link.LinkError(f"unexpected frame type {kind} on an idle link")

    def _finish(self) -> None:
        """The exchange is over on this link: the slot is free before the client is written,
        so a queued request can start while this response drains to a slow client."""
        assert self.exchange is not None
        self.exchange.slot = None
        self.exchange = None
        entry = self.worker
        assert entry is not None
        entry.busy -= 1
        self.dispatcher.release(self)

    def abandon(self) -> None:
        """The client is gone mid-exchange: close the link so the worker stops the app."""
        self.exchange = None
        if self.worker is not None:
            self.worker.busy -= 1
        self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        exchange, self.exchange = self.exchange, None
        if exchange is not None:
            assert self.worker is not None
            self.worker.busy -= 1
            exchange.worker_lost(self.worker.pid)
        self.dispatcher.lost(self)

    def pause_writing(self) -> None:
        """A worker that stops reading its link is not our flow-control problem: the front
        writes one REQUEST frame per idle thread, never more."""

    def resume_writing(self) -> None:
        pass
