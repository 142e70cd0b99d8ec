"""Connection slots: who holds one, and whose connection closes when a new client needs one.

Theory of operation
-------------------
A front holds at most --max-connections client connections (its share of them, with --fronts),
and at most --max-connections-per-ip from one client address. Each connection holding a slot is
in one of three states, which the connection itself reports (``ClientConnection.slot``):

* ``IDLE``: kept alive between requests, after at least one response.
* ``HEAD``: waiting for or reading a request head: a new connection that has sent nothing yet
  or part of its first head, or a kept-alive one part-way through its next head.
* ``IN_USE``: everything else: a request body arriving, a request queued or running in a
  worker, a response being written, pipelined requests waiting, an early answer lingering, a
  close under way.

When a new connection arrives and every slot is taken, one connection gives its slot up, as
nginx does with its reusable connections (``ngx_drain_connections``), and one step further:

1. the IDLE connection idle the longest. Its client loses no work: a kept-alive connection may
   close between requests, and clients open another (RFC 9112, section 9.3). It is closed
   without an answer. This is what 10,000 idle keep-alive connections left open by clients
   that went away would otherwise hold for --keepalive seconds.
2. else the HEAD connection whose head began the longest ago, once it began at least
   :data:`HEAD_GRACE` seconds ago. A slowloris client sits here (it trickles a head for as
   long as --header-timeout lets it), and so does a client that connects and sends nothing.
   A real client sends its head within a round trip of connecting, in one packet; the grace
   keeps a burst of new connections from pushing each other out before their first bytes are
   read. It is answered 503 with Retry-After when it had begun a head, then closed.
3. never an IN_USE connection: its request is work the app does, or has done and whose
   answer is on its way. A body being uploaded is in use too: --body-timeout and
   --min-body-rate are what cut a too slow one off.

When no connection can give its slot up, the new connection is answered 503 (it came in the
same accept batch) and the front stops accepting (``AcceptGate`` in front/accept.py): new
connections wait in the kernel's listen backlog until one closes, becomes IDLE, or has been in
HEAD for the grace (:meth:`Slots.room_at` says when).

Per address, the limit is checked first: a connection from an address that holds its share
already is refused (503, closed) without closing anybody else's. A Unix-socket peer has no
address and no per-address limit.

Cost: the IDLE and HEAD connections wait in two insertion-ordered dicts, each in the order the
connections entered that state, so the one to close is the first of its dict: O(1) to admit,
re-file, release and pick, never a scan of the connections. A connection reports its state
changes where they happen (:meth:`Slots.entered`); a change made elsewhere (a timeout closing
it) is noticed when it reaches the front of its dict, and it is re-filed then, so each entry
is looked at a bounded number of times. So a connection reports only that it began to wait
(IDLE, HEAD: ``ClientConnection._report_slot``), not that it went IN_USE: a request that
reaches a worker costs one filing, not two, and most reads and answers (a static file is
answered within the read that brought its request) leave the slot as it was and cost a
comparison.

Pure logic over any hashable connection: the clock and the state come from callables. Owned by
the event loop thread.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

# Seconds a connection must have been waiting for or sending a head before a new client may
# take its slot. A real client's head arrives within a round trip of connecting (well under a
# second, even across the world); a slowloris client's takes --header-timeout.
HEAD_GRACE = 1.0

NO_LIMIT = 0
NO_ADDRESS = ""  # a Unix-socket peer


class Slot(enum.Enum):
    # Members hash by identity: Enum's own __hash__ is a Python call, and a connection's slot
    # is filed in a dict keyed by it on every change (front/states.py does the same).
    __hash__ = object.__hash__

    IDLE = "idle"  # kept alive between requests: the first to go
    HEAD = "head"  # waiting for or sending a request head: goes after the grace
    IN_USE = "in use"  # never closed to make room


class Verdict(enum.Enum):
    ADMITTED = "admitted"
    FULL = "full"  # every slot is held by a connection that keeps it
    ADDRESS_FULL = "address full"  # the address holds its --max-connections-per-ip


C = TypeVar("C", bound=Hashable)


class Slots(Generic[C]):
    """The connections holding a front's slots, filed by state, oldest first."""

    def __init__(
        self,
        limit: int,
        per_address: int,
        state_of: Callable[[C], Slot],
        clock: Callable[[], float],
        head_grace: float = HEAD_GRACE,
    ) -> None:
        self.limit = limit
        self.per_address = per_address
        self.state_of = state_of
        self.clock = clock
        self.head_grace = head_grace
        self._held: dict[C, tuple[str, Slot]] = {}  # connection -> its address, its state
        # Connection -> when it entered the state, in that order (dicts keep insertion order).
        self._waiting: dict[Slot, dict[C, float]] = {Slot.IDLE: {}, Slot.HEAD: {}}
        self._by_address: dict[str, int] = {}  # counted only with a per-address limit

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, conn: object) -> bool:
        return conn in self._held

    def held_by(self, address: str) -> int:
        return self._by_address.get(address, 0)

    def admit(self, conn: C, address: str) -> tuple[Verdict, C | None]:
        """Give a new connection a slot: the verdict, and the connection that gave its slot up
        for it (released already; the caller closes it), if one had to."""
        counted = self.per_address != NO_LIMIT and address != NO_ADDRESS
        if counted and self.held_by(address) >= self.per_address:
            return Verdict.ADDRESS_FULL, None
        evicted = None
        if len(self._held) >= self.limit:
            evicted = self.victim()
            if evicted is None:
                return Verdict.FULL, None
            self.release(evicted)
        if counted:
            self._by_address[address] = self.held_by(address) + 1
        self._file(conn, address, self.state_of(conn))
        return Verdict.ADMITTED, evicted

    def update(self, conn: C) -> None:
        """The connection may have changed state: re-file it (a no-op when it did not)."""
        held = self._held.get(conn)
        state = self.state_of(conn)
        if held is not None and state is not held[1]:
            self.entered(conn, state)

    def entered(self, conn: C, state: Slot) -> None:
        """The connection entered `state` just now: file it there, after those that entered it
        before (a no-op when it holds no slot). Connections report entering IDLE and HEAD;
        entering IN_USE they need not: it is noticed before one would be closed (_oldest)."""
        held = self._held.get(conn)
        if held is None:
            return
        address, old = held
        waiting = self._waiting.get(old)
        if waiting is not None:
            waiting.pop(conn, None)
        self._file(conn, address, state)

    def release(self, conn: C) -> None:
        """The connection closed (or was closed to make room): its slot is free."""
        held = self._held.pop(conn, None)
        if held is None:
            return
        address, state = held
        self._waiting.get(state, {}).pop(conn, None)
        count = self._by_address.get(address)
        if count is not None:
            if count > 1:
                self._by_address[address] = count - 1
            else:
                del self._by_address[address]

    def victim(self) -> C | None:
        """The connection to close for a newcomer (policy: the module docstring), or None."""
        idle, head, since = self._candidates()
        if idle is not None:
            return idle
        if head is not None and self.clock() - since >= self.head_grace:
            return head
        return None

    def room_at(self) -> float | None:
        """When a newcomer could get a slot by closing a connection: now or earlier when one
        can be closed, the time a head passes the grace, or None (all are in use)."""
        idle, head, since = self._candidates()
        if idle is not None:
            return self._waiting[Slot.IDLE][idle]
        return since + self.head_grace if head is not None else None

    def _candidates(self) -> tuple[C | None, C | None, float]:
        """The oldest IDLE connection, and the oldest HEAD one with when its head began."""
        # Heads first: an unreported change may have made one of them idle.
        head, since = self._oldest(Slot.HEAD)
        idle, _ = self._oldest(Slot.IDLE)
        if head is None:  # an idle one may have begun a head unreported
            head, since = self._oldest(Slot.HEAD)
        return idle, head, since

    def _oldest(self, state: Slot) -> tuple[C | None, float]:
        """The first connection still in `state` of those filed under it, and since when."""
        waiting = self._waiting[state]
        while waiting:
            conn, since = next(iter(waiting.items()))
            if self.state_of(conn) is state:
                return conn, since
            self.entered(conn, self.state_of(conn))  # it changed state unreported
        return None, 0.0

    def _file(self, conn: C, address: str, state: Slot) -> None:
        self._held[conn] = (address, state)
        waiting = self._waiting.get(state)
        if waiting is not None:
            waiting[conn] = self.clock()
