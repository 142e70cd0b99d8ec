"""Connection timeouts: how long a client may take to send its request, or to read a response.

Theory of operation
-------------------
One pass over the connections every :attr:`ConnectionTimeouts.interval` seconds enforces them
all: at 10,000 connections a pass is cheaper than a timer per connection, and the data path
pays nothing. A connection is in at most one phase a client can stretch:

* **idle** (no request in progress; also a new connection that sent nothing): closed after
  ``--keepalive`` seconds, silently.
* **sending a head**: 408 and close when the head is not complete ``--header-timeout`` seconds
  after it began. The whole head counts, not the gaps between its bytes, so a slowloris client
  trickling a byte at a time is cut off like one that stopped.
* **sending a body**: each ``--body-timeout`` period must bring at least one byte and at least
  ``--min-body-rate`` x period bytes; else 408 and close (the spooled body is removed).
* **not reading** (independently of the above): when the transport's buffered response has not
  drained for ``--send-timeout`` seconds, the connection is dropped, which cancels its request
  and so frees an app thread waiting for flow-control credit.

A pass only *sees* when a phase began to within one interval, so it remembers where it first saw
each phase (a head by the parser's message count, a body by its exchange, a send by how much had
drained) and a timeout fires between its value and its value plus one interval. Remembered
state is rebuilt on every pass, so a connection that left a phase leaves nothing behind.
Times come from the loop's monotonic clock.

Owned by the event loop thread.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from maitred.front.states import HELD, READS, WAITING
from maitred.http.errors import RequestTimeout

if TYPE_CHECKING:
    from collections.abc import Iterable

    from maitred.config import Config
    from maitred.front.connection import ClientConnection
    from maitred.front.exchange import Exchange

log = logging.getLogger("maitred.error")

MAX_INTERVAL = 1.0  # a pass a second keeps the default timeouts within 10 % of their value
MIN_INTERVAL = 0.05  # short timeouts (tests) are checked more often, but not in a busy loop
CHECKS_PER_TIMEOUT = 4  # the shortest timeout is checked this many times over its length


def sweep_interval(cfg: Config) -> float:
    """Seconds between passes: a fraction of the shortest timeout, within bounds."""
    timeouts = (
        cfg.keepalive,
        cfg.header_timeout,
        cfg.body_timeout,
        cfg.send_timeout,
        cfg.queue_timeout,
    )
    shortest = min((t for t in timeouts if t > 0), default=MAX_INTERVAL)
    return min(MAX_INTERVAL, max(MIN_INTERVAL, shortest / CHECKS_PER_TIMEOUT))


class ConnectionTimeouts:
    def __init__(self, cfg: Config) -> None:
        self.keepalive = cfg.keepalive
        self.header_timeout = cfg.header_timeout
        self.body_timeout = cfg.body_timeout
        self.min_body_rate = cfg.min_body_rate
        self.send_timeout = cfg.send_timeout
        self.interval = sweep_interval(cfg)
        # What the previous pass saw, per connection in that phase.
        self._heads: dict[ClientConnection, tuple[int, float]] = {}  # message number, since
        self._bodies: dict[ClientConnection, tuple[Exchange, float, int]] = {}  # since, size
        self._sends: dict[ClientConnection, tuple[Exchange | None, float, int]] = {}

    def sweep(self, connections: Iterable[ClientConnection], now: float) -> None:
        heads, bodies, sends = self._heads, self._bodies, self._sends
        self._heads, self._bodies, self._sends = {}, {}, {}
        for conn in list(connections):
            if self.send_timeout and self._send_stalled(conn, sends.get(conn), now):
                log.debug("dropping %s: it stopped reading its response", conn.peer[0])
                assert conn.transport is not None
                conn.transport.abort()
            elif conn.state not in READS:
                continue  # closing: it reads no more requests
            elif conn.reading is not None:
                if self.body_timeout and self._body_stalled(conn, bodies.get(conn), now):
                    conn.reject(RequestTimeout("request body too slow"))
            elif conn.parser.in_head:
                if self.header_timeout and self._head_late(conn, heads.get(conn), now):
                    conn.reject(RequestTimeout("request head too slow"))
            elif conn.state in WAITING and now - conn.idle_since >= self.keepalive:
                conn.close()

    def _head_late(
        self, conn: ClientConnection, seen: tuple[int, float] | None, now: float
    ) -> bool:
        if conn.flow.read_paused:
            return False  # the front stopped reading, not the client
        message = conn.parser.messages
        since = seen[1] if seen is not None and seen[0] == message else now
        self._heads[conn] = (message, since)
        return now - since >= self.header_timeout

    def _body_stalled(
        self, conn: ClientConnection, seen: tuple[Exchange, float, int] | None, now: float
    ) -> bool:
        exchange = conn.reading
        assert exchange is not None
        size = exchange.body.size if exchange.body is not None else 0
        if exchange.state is HELD or conn.flow.read_paused:
            return False  # the client waits for us (100 Continue, or we stopped reading)
        if seen is None or seen[0] is not exchange:
            self._bodies[conn] = (exchange, now, size)
            return False
        _, since, before = seen
        elapsed = now - since
        if elapsed < self.body_timeout:
            self._bodies[conn] = seen
            return False
        if size - before < max(1, self.min_body_rate * elapsed):
            return True
        self._bodies[conn] = (exchange, now, size)  # a new period starts
        return False

    def _send_stalled(
        self,
        conn: ClientConnection,
        seen: tuple[Exchange | None, float, int] | None,
        now: float,
    ) -> bool:
        transport = conn.transport
        buffered = transport.get_write_buffer_size() if transport is not None else 0
        if not buffered:
            return False
        # Bytes the client took so far, less framing: rises only when the client reads.
        exchange = conn.active
        drained = (exchange.sent if exchange is not None else 0) - buffered
        if seen is None or seen[0] is not exchange or drained > seen[2]:
            self._sends[conn] = (exchange, now, drained)
            return False
        self._sends[conn] = seen
        return now - seen[1] >= self.send_timeout
