"""Connection limits: stop accepting past --max-connections, and fit the open-file limit.

Theory of operation
-------------------
At start the front raises its soft RLIMIT_NOFILE (up to the hard limit) so that max-connections
fit with :data:`FD_RESERVE` descriptors to spare for listeners, worker links, spooled bodies and
logs; when they cannot fit, it serves fewer connections and says so.

Past the limit the :class:`AcceptGate` stops accepting: it closes its servers, and new
connections wait in the kernel's listen backlog until a connection closes and it serves again.
asyncio and uvloop both close the socket a server used, so each server gets a duplicate of the
inherited listener. A loop accepts a batch of connections per wakeup, so a few may still arrive
past the limit: the front answers those 503 and closes them.

Should descriptors run out anyway (spooled bodies take one each), neither loop dies on EMFILE:
asyncio pauses the listener for a second, libuv (uvloop) drops the waiting connections using a
descriptor it keeps in reserve; a body that cannot be spooled is answered 503.

Owned by the event loop thread.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import resource
import socket
from collections.abc import Callable, Sized

log = logging.getLogger("maitred.error")

# Descriptors kept free beyond the client connections: listeners, worker links, log files, the
# event loop's own, and spooled request bodies in progress.
FD_RESERVE = 128

# Seconds before trying to serve again when the listeners could not be reopened (EMFILE).
RESUME_RETRY = 1.0

# Sent with every 503 the front sheds load with: clients may retry, preferably a second later.
RETRY_AFTER = b"Retry-After: 1\r\n"


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
        factory: Callable[[], asyncio.Protocol],
        listeners: list[socket.socket],
        backlog: int,
        connections: Sized,
        limit: int,
    ) -> None:
        self.loop = loop
        self.factory = factory
        self.listeners = listeners
        self.backlog = backlog
        self.connections = connections
        self.limit = limit
        self.state = Accepting.PAUSED
        self.servers: list[asyncio.AbstractServer] = []
        self._task: asyncio.Task[None] | None = None
        self._warned = False  # the first pause is a warning; the rest would flood the log

    async def start(self) -> None:
        self.state = Accepting.RESUMING
        await self._open_servers()
        self.state = Accepting.SERVING

    def admit(self) -> bool:
        """A connection was accepted: False when it is past the limit (shed it)."""
        self.update()
        return len(self.connections) <= self.limit

    def update(self) -> None:
        """Serve or stop serving, to match the number of open connections."""
        count = len(self.connections)
        if self.state is Accepting.SERVING and count >= self.limit:
            self.state = Accepting.PAUSED
            log.log(
                logging.DEBUG if self._warned else logging.WARNING,
                "front: %d connections open (max-connections): not accepting until one closes",
                count,
            )
            self._warned = True
            self._close_servers()
        elif self.state is Accepting.PAUSED and count < self.limit:
            self.state = Accepting.RESUMING
            self._task = self.loop.create_task(self._resume())

    def stop(self) -> None:
        self.state = Accepting.STOPPED
        self._close_servers()

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
        if self.state is Accepting.STOPPED:
            self._close_servers()  # stopped while the servers were being created
            return
        self.state = Accepting.SERVING
        self.update()

    async def _open_servers(self) -> None:
        for sock in self.listeners:
            server = await self.loop.create_server(
                self.factory, sock=sock.dup(), backlog=self.backlog
            )
            self.servers.append(server)

    def _close_servers(self) -> None:
        for server in self.servers:
            server.close()
        self.servers.clear()
