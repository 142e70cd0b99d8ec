"""Who gets a connection slot: the front's open connections, counted against --max-connections
and --max-connections-per-ip (front/slots.py).

A new connection is admitted, or takes the slot of an idle or slow one (closed to make room:
silently when idle, with 503 when it was sending a request head), or is turned away with 503
when its address holds all it may. Each change tells the accept gate (front/accept.py), which
pauses the listeners while every slot is taken and resumes them once one frees.

The front binds these methods as its own (Front.connection_opened and the rest), so a
connection's calls reach them directly: one Python call per open, slot change and close, as
when they were the front's methods. What it warns of, it warns once, then logs at debug: an
attack would otherwise flood the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from maitred.front.accept import AcceptGate, Accepting
from maitred.front.connection import ClientConnection
from maitred.front.slots import Slot, Slots, Verdict
from maitred.http.errors import RETRY_AFTER, simple_response
from maitred.http.response import DateCache

if TYPE_CHECKING:
    import asyncio

log = logging.getLogger("maitred.error")

# A global, read as a connection's slot changes: an Enum member read as a class attribute costs
# a Python call in CPython 3.11 (front/states.py).
PAUSED = Accepting.PAUSED
Peer = tuple[str, str, str, str, str]


class Admission:
    """The front's connections and their slots; `log_error` writes a refusal to the access
    log, `date` dates the 503 answers."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        max_connections: int,
        max_per_ip: int,
        date: DateCache,
        log_error: Callable[[Peer, int], None],
    ) -> None:
        self.connections: set[ClientConnection] = set()
        self.opened = 0  # connections opened so far: the front's activity, for the idle trim
        self.slots: Slots[ClientConnection] = Slots(
            max_connections, max_per_ip, ClientConnection.slot, loop.time
        )
        self.gate: AcceptGate | None = None  # set once the front serves
        self.date = date
        self.log_error = log_error
        self._warned: set[str] = set()  # what was logged as a warning once (then debug)

    def connection_opened(self, conn: ClientConnection) -> None:
        self.connections.add(conn)
        self.opened += 1
        verdict, evicted = self.slots.admit(conn, conn.peer[0])
        if evicted is not None:
            self._make_room(evicted)
        if verdict is Verdict.ADDRESS_FULL:
            self.warn_once(
                "address",
                "front: refusing a connection from %s: it holds %d (max-connections-per-ip)",
                conn.peer[0],
                self.slots.held_by(conn.peer[0]),
            )
        if verdict is not Verdict.ADMITTED:
            self._turn_away(conn)
        if self.gate is not None:
            self.gate.update()

    def slot_changed(self, conn: ClientConnection, slot: Slot) -> None:
        """The connection went idle or began a head (front/slots.py)."""
        self.slots.entered(conn, slot)
        gate = self.gate
        if gate is not None and gate.state is PAUSED:
            gate.update()  # it may be a slot a newcomer waiting in the backlog can have

    def connection_closed(self, conn: ClientConnection) -> None:
        self.connections.discard(conn)
        self.slots.release(conn)
        gate = self.gate
        # A slot freed matters only to a paused gate: serving, it goes on serving (a gate that
        # should pause after all, with TLS handshakes counted, does at the next open).
        if gate is not None and gate.state is PAUSED:
            gate.update()

    def _make_room(self, conn: ClientConnection) -> None:
        """Close a connection whose slot a new one took: silently when idle, with 503 when it
        was sending a request head (it has been for HEAD_GRACE seconds at least)."""
        sending = conn.parser.in_head
        self.warn_once(
            "evict",
            "front: all %d connection slots taken (max-connections): closing %s from %s to "
            "make room for a new one",
            self.slots.limit,
            "a connection slow to send its request head" if sending else "an idle connection",
            conn.peer[0],
        )
        if sending:
            self.log_error(conn.peer, 503)
            self._turn_away(conn)
        else:
            conn.close()

    def _turn_away(self, conn: ClientConnection) -> None:
        conn.write(simple_response(503, self.date.get(), extra=RETRY_AFTER))
        conn.close()

    def warn_once(self, kind: str, message: str, *args: object) -> None:
        """A warning the first time, debug after: an attack would otherwise flood the log."""
        log.log(logging.DEBUG if kind in self._warned else logging.WARNING, message, *args)
        self._warned.add(kind)
