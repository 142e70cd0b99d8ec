"""The front process: an event loop that owns every client connection.

It serves on the listening sockets the master bound, accepts worker links on the link socket,
and sweeps idle keep-alive connections once a second (one pass over the connections is cheaper
than a timer per request). On SIGTERM it stops accepting, lets requests in flight finish within
the graceful timeout, closes idle connections, and exits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from typing import TextIO

from setproctitle import setproctitle

from maitred import logs
from maitred.config import Config
from maitred.front.client import ClientConnection, Exchange
from maitred.front.dispatcher import Dispatcher, WorkerLink
from maitred.http.parser import Limits
from maitred.http.response import DateCache

log = logging.getLogger("maitred.error")

SWEEP_INTERVAL = 1.0  # seconds between passes over idle connections
STOP_POLL = 0.05  # seconds between checks that a graceful stop is complete
MIN_EXPIRY_INTERVAL = 0.05  # the finest grain of --timeout checks


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when it is installed, else the standard asyncio loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class Front:
    def __init__(self, cfg: Config, loop: asyncio.AbstractEventLoop) -> None:
        self.cfg = cfg
        self.loop = loop
        self.limits = Limits(
            request_line=cfg.limit_request_line,
            fields=cfg.limit_request_fields,
            field_size=cfg.limit_request_field_size,
            body=cfg.limit_request_body,
        )
        self.dispatcher = Dispatcher(loop)
        self.connections: set[ClientConnection] = set()
        self.date = DateCache()
        self.access = AccessLog(cfg.access_logfile) if cfg.access_logfile else None
        self.servers: list[asyncio.AbstractServer] = []
        self.stopping = False
        self.stopped: asyncio.Future[None] = loop.create_future()
        self.master_pid = os.getppid()

    @staticmethod
    def peer_info(transport: asyncio.BaseTransport) -> tuple[str, str, str, str, str]:
        """(REMOTE_ADDR, REMOTE_PORT, SERVER_NAME, SERVER_PORT, url scheme) of a connection."""
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        if isinstance(local, tuple):
            remote = peer if isinstance(peer, tuple) else ("", 0)
            return (remote[0], str(remote[1]), local[0], str(local[1]), "http")
        return ("", "", "localhost", "", "http")  # a unix socket: no addresses to report

    async def serve(self, listeners: list[socket.socket], link_listener: socket.socket) -> None:
        loop = self.loop
        for sock in listeners:
            server = await loop.create_server(
                lambda: ClientConnection(self), sock=sock, backlog=self.cfg.backlog
            )
            self.servers.append(server)
        link_server = await loop.create_unix_server(
            lambda: WorkerLink(self.dispatcher), sock=link_listener, backlog=self.cfg.backlog
        )
        tasks = [loop.create_task(self._sweep())]
        if self.cfg.timeout:
            tasks.append(loop.create_task(self._expire_requests(self.cfg.timeout)))
        try:
            await self.stopped
        finally:
            for task in tasks:
                task.cancel()
            link_server.close()

    async def _sweep(self) -> None:
        keepalive = self.cfg.keepalive
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            if os.getppid() != self.master_pid:
                log.warning("front: the master is gone, stopping")
                self.shutdown()
            expired = self.loop.time() - keepalive
            for conn in list(self.connections):
                if conn.idle_since < expired and conn.is_idle():
                    conn.close()

    async def _expire_requests(self, timeout: float) -> None:
        """Enforce --timeout, checking a few times per timeout period."""
        interval = min(SWEEP_INTERVAL, max(MIN_EXPIRY_INTERVAL, timeout / 4))
        while True:
            await asyncio.sleep(interval)
            self.dispatcher.expire(self.loop.time() - timeout)

    def shutdown(self) -> None:
        """Graceful stop: no new connections or requests; finish what is in flight."""
        if self.stopping:
            return
        self.stopping = True
        log.info("front: stopping, %d connections open", len(self.connections))
        for server in self.servers:
            server.close()
        for conn in list(self.connections):
            # A kept-alive connection between requests may be closed (its client retries,
            # RFC 9112 section 9.3.1); one that has not sent its first request yet may be
            # carrying it right now, so it is served (with Connection: close) or swept later.
            if conn.is_idle() and conn.served:
                conn.close()
        self.loop.create_task(self._await_drained())

    async def _await_drained(self) -> None:
        deadline = self.loop.time() + self.cfg.graceful_timeout
        while self.connections and self.loop.time() < deadline:
            await asyncio.sleep(STOP_POLL)
        for conn in list(self.connections):
            log.warning("front: graceful timeout, closing a connection with work in flight")
            conn.close()
        if not self.stopped.done():
            self.stopped.set_result(None)

    def reopen_logs(self) -> None:
        """USR1: reopen log files, after logrotate moved them."""
        logs.reopen()
        if self.access is not None:
            self.access.reopen()

    # --- access log ---

    def log_access(self, exchange: Exchange) -> None:
        if self.access is not None:
            self.access.write(exchange.conn.peer[0], exchange.head, exchange.status, exchange.sent)

    def access_log_error(self, conn: ClientConnection, status: int) -> None:
        if self.access is not None:
            self.access.write(conn.peer[0], None, status, 0)


class AccessLog:
    """The combined log format, one line per response (basic: see issue-tracked extensions)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.stream: TextIO = self._open()

    def _open(self) -> TextIO:
        import sys

        if self.path == "-":
            return sys.stdout
        return open(self.path, "a", buffering=1, encoding="utf-8")

    def reopen(self) -> None:
        if self.path != "-":
            self.stream.close()
            self.stream = self._open()

    def write(self, remote: str, head: object, status: int, size: int) -> None:
        from maitred.http.parser import RequestHead

        if isinstance(head, RequestHead):
            line = b"%s %s HTTP/%s" % (head.method, head.target, head.version.encode())
            referer = agent = b"-"
            for name, value in head.headers:
                lowered = name.lower()
                if lowered == b"referer":
                    referer = value
                elif lowered == b"user-agent":
                    agent = value
            request = _quoted(line)
            extra = f' "{_quoted(referer)}" "{_quoted(agent)}"'
        else:
            request, extra = "-", ' "-" "-"'
        when = time.strftime("%d/%b/%Y:%H:%M:%S %z")
        self.stream.write(
            f'{remote or "-"} - - [{when}] "{request}" {status} {size or "-"}{extra}\n'
        )


def _quoted(raw: bytes) -> str:
    """A client-supplied value, safe inside a double-quoted log field."""
    text = raw.decode("latin-1")
    return text.encode("unicode_escape").decode("ascii").replace('"', '\\"')


def run_front(
    cfg: Config, listeners: list[socket.socket], link_listener: socket.socket, master_pid: int
) -> int:
    """Main of the front process (after fork)."""
    setproctitle("maitred: front")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group; master decides
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    front = Front(cfg, loop)
    loop.add_signal_handler(signal.SIGTERM, front.shutdown)
    loop.add_signal_handler(signal.SIGQUIT, os._exit, 0)
    loop.add_signal_handler(signal.SIGUSR1, front.reopen_logs)
    front.master_pid = master_pid
    try:
        loop.run_until_complete(front.serve(listeners, link_listener))
    finally:
        loop.close()
    return 0
