"""The states of a client connection and of each exchange on it, and the moves between them.

Theory of operation
-------------------
What may happen next to a request or a connection is decided here, in two small tables, not by
flags scattered over the methods that act on them. Each *event* is a :class:`Move`: a table
from the states it may happen in to the state it leads to. Taking it is one dict lookup and an
attribute assignment (``exchange.state = START[exchange.state]``); an event in a state that has
no row raises :class:`IllegalMove`, naming both, so a bug shows where it happens instead of
writing a second response head or cancelling a request twice.

An **exchange** (one request and its response, front/exchange.py) goes, on the usual path::

    RECEIVING --complete--> PIPELINED --route--> ROUTED --start--> RUNNING --head--> RESPONDING
     hold | ^ continue                             |                                   | app_end
          v |                                      +--head (static file)--> SENDING <--+
         HELD

and leaves for DONE by ``finish`` (from ROUTED, RUNNING, RESPONDING, SENDING: answered, by the
worker, the static files or the front's own error), by ``cancel`` (the client left; a state a
worker thread holds, RUNNING or RESPONDING, goes to CANCELLED first and ``finish`` follows with
the worker's last frame), by ``refuse`` (RECEIVING or HELD: the front's own error answered it
before its body was in, and its connection closes), or by ``drop`` (a request never answered
nor logged: the connection closes before its turn).

* ``RECEIVING``: its head is parsed (front/connection.py, ``_head_complete``); its body is
  arriving into memory or a spool file. It is the connection's ``reading`` exchange.
* ``HELD``: the same, but the client waits for ``100 Continue`` before sending its body, and the
  front sends it only once the earlier response is out, so it is not sending yet.
* ``PIPELINED``: the whole request is in; it waits in the connection's pipeline for its turn
  (responses leave in request order).
* ``ROUTED``: its turn came: the router sent it to the dispatcher's queue (front/dispatcher.py)
  or to the front's own static files, which answer it at once.
* ``RUNNING``: a worker thread runs it; no response head yet.
* ``RESPONDING``: the response head is written; the worker still writes the body.
* ``SENDING``: the head is written and the front alone sends the rest: a static file, a file a
  worker handed over, or a spooled body whose worker has ended.
* ``CANCELLED``: the client left while a worker thread held it; the worker was told and its
  last frame ends the exchange.
* ``DONE``: answered (or cancelled) and logged; late frames from its worker change nothing.

A **connection** (front/connection.py) is::

    NEW --head_in--> BUSY --settled--> IDLE --head_in--> BUSY ...
         stop_reading |    \
                      v     +--linger--+
                   CLOSING --linger--> LINGERING

and from any state ``close`` leads to CLOSED. NEW and IDLE stop reading too (a slow head
answered 408), and ``stop_reading`` is a no-op once the connection does not read.

* ``NEW``: accepted, no request yet (waiting for or reading the first head).
* ``IDLE``: kept alive between requests, after at least one response.
* ``BUSY``: a request being received, queued, run or answered, or pipelined behind another.
* ``CLOSING``: it reads no more requests (``Connection: close``, a bad request, a timeout);
  it closes once the answers it owes are out (``pending_error``: the bad request's own last).
* ``LINGERING``: its last answer is out and its write side shut; what the client still sends
  is read and thrown away (front/linger.py) until it closes.
* ``CLOSED``: the client left or the front closed it; nothing more is read or written.

Its connection slot (front/slots.py) follows from it: :data:`SLOT_OF`.

Owned by the event loop thread.
"""

from __future__ import annotations

import enum
from typing import TypeVar

from maitred.front.slots import Slot


class ExchangeState(enum.Enum):
    # Members hash by identity: Enum's own __hash__ is a Python call, and a move is a dict
    # lookup on the hot path.
    __hash__ = object.__hash__

    RECEIVING = "receiving"
    HELD = "held for 100 Continue"
    PIPELINED = "pipelined"
    ROUTED = "routed"
    RUNNING = "running"
    RESPONDING = "responding"
    SENDING = "sending"
    CANCELLED = "cancelled"
    DONE = "done"


class ConnState(enum.Enum):
    __hash__ = object.__hash__

    NEW = "new"
    IDLE = "idle"
    BUSY = "busy"
    CLOSING = "closing"
    LINGERING = "lingering"
    CLOSED = "closed"


# The members as module names, for the hot path: in CPython 3.11 reading an Enum member as a
# class attribute (ExchangeState.DONE) costs about 150 ns, a global a few.
RECEIVING, HELD, PIPELINED, ROUTED, RUNNING, RESPONDING, SENDING, CANCELLED, DONE = ExchangeState
NEW, IDLE, BUSY, CLOSING, LINGERING, CLOSED = ConnState


class IllegalMove(RuntimeError):
    """An event happened in a state that does not allow it: a bug in the front."""


S = TypeVar("S", bound=enum.Enum)


class Move(dict[S, S]):
    """One event: from each state it may happen in, the state it leads to."""

    def __init__(self, name: str, moves: dict[S, S]) -> None:
        super().__init__(moves)
        self.name = name

    def __missing__(self, state: S) -> S:
        raise IllegalMove(f"{self.name} is not allowed in state {state.name}")


# --- an exchange ---
HOLD = Move("hold for 100 Continue", {RECEIVING: HELD})
CONTINUE = Move("100 Continue", {HELD: RECEIVING})
COMPLETE = Move("request complete", {RECEIVING: PIPELINED, HELD: PIPELINED})
ROUTE = Move("route", {PIPELINED: ROUTED})
START = Move("start on a thread", {ROUTED: RUNNING})
HEAD = Move("response head", {RUNNING: RESPONDING, ROUTED: SENDING})
APP_END = Move("app ended, the front sends the rest", {RESPONDING: SENDING})
FINISH = Move(
    "finish",
    {s: DONE for s in (ROUTED, RUNNING, RESPONDING, SENDING, CANCELLED)},
)
CANCEL = Move(
    "cancel",
    {
        RECEIVING: DONE,
        HELD: DONE,
        PIPELINED: DONE,
        ROUTED: DONE,
        SENDING: DONE,
        # A worker thread holds these: they end with its last frame.
        RUNNING: CANCELLED,
        RESPONDING: CANCELLED,
    },
)
DROP = Move("drop unanswered", {RECEIVING: DONE, HELD: DONE, PIPELINED: DONE})
# Answered by the front before its body was read (a rule refused it, the body is too large,
# too slow): its connection closes.
REFUSE = Move("refused while arriving", {RECEIVING: DONE, HELD: DONE})

# Nothing is written for an exchange in these: it was answered (timed out) or its client left.
GONE = frozenset((CANCELLED, DONE))
# The response head is out: a failure from here on can only cut the response short.
HEAD_SENT = frozenset((RESPONDING, SENDING))

# --- a connection ---
HEAD_IN = Move("request head", {NEW: BUSY, IDLE: BUSY, BUSY: BUSY})
SETTLED = Move("nothing in progress", {BUSY: IDLE})
# Legal everywhere: a connection that does not read any more stays as it is.
STOP_READING = Move(
    "stop reading",
    {NEW: CLOSING, IDLE: CLOSING, BUSY: CLOSING} | {s: s for s in (CLOSING, LINGERING, CLOSED)},
)
LINGER = Move("linger", {BUSY: LINGERING, CLOSING: LINGERING})
CLOSE = Move("close", {s: CLOSED for s in ConnState})

# States in which requests are read from the client.
READS = frozenset((NEW, IDLE, BUSY))
# Waiting for a request: the keep-alive timeout runs.
WAITING = frozenset((NEW, IDLE))
# The slot each state holds (an IDLE connection part-way through a head is HEAD).
SLOT_OF = {s: Slot.IN_USE for s in ConnState} | {NEW: Slot.HEAD, IDLE: Slot.IDLE}
