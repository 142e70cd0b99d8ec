"""The accept gate: stop accepting when no slot can be had, and fit the open-file limit.

Theory of operation
-------------------
At start the front raises its soft RLIMIT_NOFILE (up to the hard limit) so that max-connections
fit with :data:`FD_RESERVE` descriptors to spare for listeners, worker links, spooled bodies and
logs; when they cannot fit, it serves fewer connections and says so.

At the limit a new connection takes the slot of an idle or slow one (front/slots.py). When no
connection can give its slot up, the :class:`AcceptGate` stops accepting: it closes its
servers, and new connections wait in the kernel's listen backlog until a slot can be had again
(a connection closes, goes idle, or has sent a head slowly for long enough) and it serves again.
asyncio and uvloop both close the socket a server used, so each server gets a duplicate of the
inherited listener. A loop accepts a batch of connections per wakeup, so a few may still arrive
past the limit: the front answers those that find no slot 503 and closes them.

Should descriptors run out anyway (spooled bodies take one each), neither loop dies on EMFILE:
asyncio pauses the listener for a second, libuv (uvloop) drops the waiting connections using a
descriptor it keeps in reserve; a body that cannot be spooled is answered 503. Neither says so
usefully: libuv says nothing at all, and asyncio (3.11, as measured here) logs a traceback for
every failed accept and even goes on through the rest of the backlog after the first failure,
rescheduling itself each time: thousands of tracebacks a second. So the front counts asyncio's
reports instead (:func:`accept_errors`, the loop's exception handler), and on either loop checks
on every sweep that a descriptor can still be had (:meth:`AcceptGate.check_descriptors`);
:class:`Shortage` turns both into at most one error line a second while descriptors are short,
and one line once they are back.

Stopping (:meth:`AcceptGate.stop`) closes the listeners, so that a client connecting from then
on is refused at once (a load balancer tries another server) instead of waiting in a backlog
nobody accepts from, to be reset when the server exits. The connections already in the backlog
connected before the stop: the gate accepts them first, until the kernel has none left, and
hands them to the loop like any other (past --max-connections they get the 503). Closing is
the last holder's act: the master closes its copies when it stops, and each front holds only
its own listeners (maitred.arbiter), so a front's close is what turns clients away.

Owned by the event loop thread.
"""

from __future__ import annotations

import asyncio
import enum
import errno
import functools
import logging
import os
import resource
import socket
from collections.abc import Callable, Sized
from typing import Any

log = logging.getLogger("maitred.error")

# Descriptors kept free beyond the client connections: listeners, worker links, log files, the
# event loop's own, and spooled request bodies in progress.
FD_RESERVE = 128

# Seconds before trying to serve again when the listeners could not be reopened (EMFILE).
RESUME_RETRY = 1.0

# Seconds between error lines about running out of descriptors: a line a second says that it
# persists and how often accepts fail, without burying the rest of the log.
SHORTAGE_REPORT_INTERVAL = 1.0
NEVER = float("-inf")

# accept(2) errors that mean the process or the system is out of a resource, not that the
# listener is broken: the ones asyncio backs off from, and reports with this message.
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_ACCEPT_FAILED = "socket.accept() out of system resource"


def fd_plan(wanted: int, soft: int, hard: int) -> tuple[int, int]:
    """(soft limit to set, connections that fit in it) for `wanted` connections."""
    needed = wanted + FD_RESERVE
    if soft < needed:
        soft = needed if hard == resource.RLIM_INFINITY else max(soft, min(hard, needed))
    return soft, max(1, min(wanted, soft - FD_RESERVE))


def fit_fd_limit(wanted: int) -> int:
    """Raise the open-file limit for `wanted` connections; returns how many fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new_soft, fit = fd_plan(wanted, soft, hard)
    if new_soft != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
    if fit < wanted:
        log.warning(
            "max-connections %d lowered to %d: the open-file limit is %d (raise `ulimit -n`)",
            wanted,
            fit,
            new_soft,
        )
    return fit


class Shortage:
    """Reports running out of descriptors: at most one error line per interval while it lasts,
    and one line when it is over."""

    def __init__(self, interval: float = SHORTAGE_REPORT_INTERVAL) -> None:
        self.interval = interval
        self.reported = NEVER  # loop time of the last error line
        self.last_failure = NEVER

    def failed(self, exc: OSError, now: float) -> None:
        self.last_failure = now
        if now - self.reported >= self.interval:
            self.reported = now
            log.error(
                "front: cannot accept connections: %s; raise `ulimit -n` or lower "
                "--max-connections",
                exc,
            )

    def ok(self, now: float) -> None:
        """A descriptor could be had: the shortage is over once none failed for an interval."""
        if self.reported != NEVER and now - self.last_failure >= self.interval:
            self.reported = self.last_failure = NEVER
            log.info("front: accepting connections again")


def accept_errors(
    shortage: Shortage,
) -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]:
    """A loop exception handler that counts asyncio's failed accepts (no traceback) and
    leaves everything else to the default handler."""

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if context.get("message") == _ACCEPT_FAILED and isinstance(exc, OSError):
            shortage.failed(exc, loop.time())
        else:
            loop.default_exception_handler(context)

    return handle


class BatchEndingListener(socket.socket):
    """A listening socket whose accept() ends the batch after one failed for want of resources.

    asyncio accepts in batches of up to `backlog` connections per wakeup, and (in 3.11) goes on
    through the batch after an accept failed with EMFILE, scheduling one retry per failure: a
    storm of failed accepts that grows every second. "Nothing more to accept" (BlockingIOError)
    right after such a failure ends the batch, leaving one failure and one retry a second.
    uvloop accepts in libuv and never calls this.
    """

    def __init__(self, family: int, kind: int, proto: int, fileno: int) -> None:
        super().__init__(family, kind, proto, fileno)
        self.failed = False

    def accept(self) -> tuple[socket.socket, Any]:
        if self.failed:
            self.failed = False
            raise BlockingIOError(errno.EAGAIN, "the batch ends after a failed accept")
        try:
            return super().accept()
        except OSError as exc:
            self.failed = exc.errno in _OUT_OF_RESOURCES
            raise


class Accepting(enum.Enum):
    SERVING = "serving"
    PAUSED = "paused"  # at the connection limit
    RESUMING = "resuming"  # servers being created again
    STOPPED = "stopped"  # shutting down: never again


class AcceptGate:
    """Serves the listeners while fewer than `limit` connections are open."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        factory: Callable[[socket.socket], asyncio.Protocol],
        listeners: list[socket.socket],
        backlog: int,
        connections: Sized,
        limit: int,
        room_at: Callable[[], float | None] = lambda: None,
    ) -> None:
        self.loop = loop
        # The protocol of a connection accepted on a listener (each may speak its own).
        self.factory = factory
        self.listeners = listeners
        self.backlog = backlog
        self.connections = connections
        self.limit = limit
        # At the limit, when a slot can be made free for a newcomer (front/slots.py): a loop
        # time (now or past: at once), or None (not until a connection closes).
        self.room_at = room_at
        self.state = Accepting.PAUSED
        self.servers: list[asyncio.AbstractServer] = []
        self._task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.TimerHandle | None = None  # when room is due at the limit
        self._warned = False  # the first pause is a warning; the rest would flood the log
        self.shortage = Shortage()

    async def start(self) -> None:
        self.state = Accepting.RESUMING
        await self._open_servers()
        if self.state is Accepting.RESUMING:  # not stopped meanwhile
            self.state = Accepting.SERVING

    def update(self) -> None:
        """Serve or stop serving, to match the number of open connections."""
        count = len(self.connections)
        if self.state is Accepting.SERVING and count >= self.limit and not self._room():
            self.state = Accepting.PAUSED
            log.log(
                logging.DEBUG if self._warned else logging.WARNING,
                "front: %d connections open (max-connections) and none may be closed to make room: "
                "not accepting for now",
                count,
            )
            self._warned = True
            self._close_servers()
        elif self.state is Accepting.PAUSED and (count < self.limit or self._room()):
            self.state = Accepting.RESUMING
            self._task = self.loop.create_task(self._resume())

    def _room(self) -> bool:
        """Can a newcomer have the slot of a connection now? If only later, wake up then."""
        at = self.room_at()
        if at is None or at <= self.loop.time():
            return at is not None
        if self._wakeup is None or self._wakeup.when() > at:
            if self._wakeup is not None:
                self._wakeup.cancel()
            self._wakeup = self.loop.call_at(at, self._woken)
        return False

    def _woken(self) -> None:
        self._wakeup = None
        self.update()

    def stop(self) -> list[asyncio.Task[None]]:
        """Never accept again: take what the backlogs hold, then close the listeners. Returns
        the tasks that hand the connections taken to the loop (a drain waits for them)."""
        self.state = Accepting.STOPPED
        if self._wakeup is not None:
            self._wakeup.cancel()
        self._close_servers()
        adopting = [
            self.loop.create_task(self._adopt(sock, conn))
            for sock in self.listeners
            for conn in _take_backlog(sock)
        ]
        for sock in self.listeners:
            sock.close()
        self.listeners = []
        return adopting

    async def _adopt(self, listener: socket.socket, conn: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(functools.partial(self.factory, listener), conn)
        except OSError:  # the client is gone already
            conn.close()

    def check_descriptors(self) -> None:
        """Can one more descriptor be had (an accept would succeed)? Two system calls."""
        if not self.listeners:
            return
        now = self.loop.time()
        try:
            os.close(os.dup(self.listeners[0].fileno()))
        except OSError as exc:
            if exc.errno in _OUT_OF_RESOURCES:
                self.shortage.failed(exc, now)
            return
        self.shortage.ok(now)

    async def _resume(self) -> None:
        try:
            await self._open_servers()
        except OSError as exc:  # out of descriptors for the duplicates: try again later
            log.error("front: cannot accept connections again yet: %s", exc)
            self._close_servers()
            if self.state is Accepting.RESUMING:
                self.state = Accepting.PAUSED
                self.loop.call_later(RESUME_RETRY, self.update)
            return
        if self.state is Accepting.RESUMING:
            self.state = Accepting.SERVING
            self.update()

    async def _open_servers(self) -> None:
        for sock in list(self.listeners):
            if self.state is Accepting.STOPPED:  # stop() closed the listeners meanwhile
                break
            dup = sock.dup()
            listener = BatchEndingListener(dup.family, dup.type, dup.proto, dup.detach())
            server = await self.loop.create_server(
                functools.partial(self.factory, sock), sock=listener, backlog=self.backlog
            )
            self.servers.append(server)
        if self.state is Accepting.STOPPED:
            self._close_servers()  # stopped while the servers were being created

    def _close_servers(self) -> None:
        for server in self.servers:
            server.close()
        self.servers.clear()


def _take_backlog(sock: socket.socket) -> list[socket.socket]:
    """The connections waiting in a listener's backlog, accepted until the kernel has no more.
    On an error other than "none left" (descriptors ran out), the rest are left to be reset
    when the listener closes, and the log says so."""
    taken: list[socket.socket] = []
    sock.setblocking(False)
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return taken
        except ConnectionAbortedError:
            continue  # the client gave up while it waited
        except OSError as exc:
            log.error(
                "front: stopping: cannot accept the connections waiting in the backlog (%s); "
                "they are reset",
                exc,
            )
            return taken
        taken.append(conn)
