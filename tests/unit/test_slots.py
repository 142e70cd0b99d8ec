"""Connection slots (front/slots.py): who gives a slot up to a new client, as pure logic with
fake connections and a fake clock; and how a client connection names its state."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, cast

import pytest

from maitred.front.connection import ClientConnection
from maitred.front.slots import HEAD_GRACE, Slot, Slots, Verdict
from maitred.front.states import ConnState

IDLE, HEAD, IN_USE = Slot.IDLE, Slot.HEAD, Slot.IN_USE
HERE, THERE = "192.0.2.1", "192.0.2.2"


@dataclass(eq=False)  # hashable by identity, like a real connection
class Conn:
    name: str
    state: Slot = HEAD  # a new connection waits for its first head
    looked_at: int = 0  # how often its state was asked for

    def slot(self) -> Slot:
        self.looked_at += 1
        return self.state


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def new_slots(limit: int, per_address: int = 0) -> tuple[Slots[Conn], Clock]:
    clock = Clock()
    return Slots(limit, per_address, Conn.slot, clock), clock


def fill(slots: Slots[Conn], clock: Clock, *states: Slot) -> list[Conn]:
    """Connections admitted one per second, each then moved to its state (and reported)."""
    conns = []
    for i, state in enumerate(states):
        conn = Conn(f"c{i}")
        assert slots.admit(conn, HERE) == (Verdict.ADMITTED, None)
        conn.state = state
        slots.update(conn)
        conns.append(conn)
        clock.now += 1.0
    return conns


def test_below_the_limit_nobody_is_closed() -> None:
    slots, _ = new_slots(3)
    fill(slots, Clock(), IDLE, IDLE)
    assert slots.admit(Conn("new"), HERE) == (Verdict.ADMITTED, None)
    assert len(slots) == 3


def test_when_full_the_connection_idle_longest_gives_its_slot_up() -> None:
    slots, clock = new_slots(3)
    a, b, c = fill(slots, clock, IDLE, IDLE, IDLE)
    # a serves another request and goes idle again: b has now been idle the longest.
    a.state = IN_USE
    slots.update(a)
    a.state = IDLE
    slots.update(a)
    newcomer = Conn("new")
    assert slots.admit(newcomer, HERE) == (Verdict.ADMITTED, b)
    assert b not in slots and newcomer in slots and len(slots) == 3
    assert slots.admit(Conn("next"), HERE)[1] is c


def test_a_connection_idle_again_waits_behind_those_idle_before_though_never_refiled() -> None:
    """Connections tell the slots when they go idle, not when they go in use: one that served
    a request unreported and says it entered IDLE again is idle from then."""
    slots, clock = new_slots(3)
    a, b, _ = fill(slots, clock, IDLE, IDLE, IDLE)
    a.state = IN_USE  # not reported
    a.state = IDLE
    slots.entered(a, IDLE)
    assert slots.admit(Conn("new"), HERE) == (Verdict.ADMITTED, b)


def test_idle_connections_go_before_heads_even_older_ones() -> None:
    slots, clock = new_slots(3)
    head, idle, _ = fill(slots, clock, HEAD, IDLE, IN_USE)
    clock.now += HEAD_GRACE
    assert slots.admit(Conn("new"), HERE) == (Verdict.ADMITTED, idle)
    assert slots.admit(Conn("next"), HERE) == (Verdict.ADMITTED, head)


def test_a_slow_head_gives_its_slot_up_only_after_the_grace() -> None:
    slots, clock = new_slots(2)
    older, younger = fill(slots, Clock(), HEAD, HEAD)  # both began their heads at 100.0
    clock.now = 100.0 + HEAD_GRACE / 2
    assert slots.admit(Conn("early"), HERE) == (Verdict.FULL, None)
    assert slots.room_at() == 100.0 + HEAD_GRACE  # when the gate should look again
    clock.now = 100.0 + HEAD_GRACE
    assert slots.admit(Conn("new"), HERE) == (Verdict.ADMITTED, older)
    assert younger in slots


def test_a_kept_alive_connection_sending_its_next_head_is_a_head_from_then() -> None:
    slots, clock = new_slots(2)
    conn, _ = fill(slots, clock, IDLE, IN_USE)
    conn.state = HEAD
    slots.update(conn)
    assert slots.room_at() == clock.now + HEAD_GRACE  # its head began now, not when it connected


def test_connections_in_use_never_give_their_slot_up() -> None:
    """A body being uploaded, a request queued or running, a response being written."""
    slots, clock = new_slots(2)
    fill(slots, clock, IN_USE, IN_USE)
    clock.now += 3600
    assert slots.admit(Conn("new"), HERE) == (Verdict.FULL, None)
    assert slots.room_at() is None and len(slots) == 2


def test_a_state_change_nobody_reported_is_noticed_before_closing() -> None:
    """A timeout answers a slow head and lingers: the connection is in use, not a victim."""
    slots, clock = new_slots(2)
    lingering, idle = fill(slots, clock, HEAD, HEAD)
    clock.now += HEAD_GRACE
    lingering.state = IN_USE  # not reported
    idle.state = IDLE  # not reported either
    assert slots.admit(Conn("new"), HERE) == (Verdict.ADMITTED, idle)
    assert lingering in slots
    assert slots.admit(Conn("next"), HERE) == (Verdict.FULL, None)


def test_release_frees_the_slot_once() -> None:
    slots, clock = new_slots(2, per_address=2)
    a, _ = fill(slots, clock, IDLE, IN_USE)
    slots.release(a)
    slots.release(a)  # closed to make room, then its connection_lost: no double count
    assert len(slots) == 1 and slots.held_by(HERE) == 1
    assert slots.room_at() is None


def test_one_address_may_hold_only_its_share() -> None:
    slots, clock = new_slots(10, per_address=2)
    first, _ = fill(slots, clock, IDLE, IDLE)
    assert slots.admit(Conn("third"), HERE) == (Verdict.ADDRESS_FULL, None)
    assert len(slots) == 2, "nobody's connection is closed for a refused one"
    assert slots.admit(Conn("elsewhere"), THERE) == (Verdict.ADMITTED, None)
    slots.release(first)
    assert slots.admit(Conn("again"), HERE) == (Verdict.ADMITTED, None)


def test_the_address_limit_is_checked_before_anyone_is_closed() -> None:
    slots, clock = new_slots(2, per_address=2)
    fill(slots, clock, IDLE, IDLE)
    assert slots.admit(Conn("new"), HERE) == (Verdict.ADDRESS_FULL, None)
    assert len(slots) == 2


def test_no_address_limit_by_default_nor_for_unix_peers() -> None:
    slots, _ = new_slots(100)
    assert all(slots.admit(Conn(str(i)), HERE)[0] is Verdict.ADMITTED for i in range(50))
    assert slots.held_by(HERE) == 0  # not even counted
    unix, _ = new_slots(100, per_address=1)
    assert all(unix.admit(Conn(str(i)), "")[0] is Verdict.ADMITTED for i in range(50))


def test_admitting_at_the_limit_does_not_scan_the_connections() -> None:
    slots, clock = new_slots(1000)
    busy = fill(slots, clock, *[IN_USE] * 999)
    idle = fill(slots, clock, IDLE)[0]
    for conn in busy:
        conn.looked_at = 0
    for i in range(100):
        verdict, evicted = slots.admit(Conn(f"new{i}"), HERE)
        assert verdict is Verdict.ADMITTED and evicted is not None
        evicted.state = IN_USE  # closed: it stays out of the way
        if i == 0:
            assert evicted is idle
        clock.now += HEAD_GRACE
    assert sum(conn.looked_at for conn in busy) == 0


def client(**state: Any) -> Slot:
    """ClientConnection.slot of a connection in the given state: what it holds or has done
    (closing, active, reading, pipeline, served) named as its ConnState (front/states.py)."""
    if state.get("closing"):
        named = ConnState.CLOSING
    elif state.get("active") or state.get("reading") or state.get("pipeline"):
        named = ConnState.BUSY
    else:
        named = ConnState.IDLE if state.get("served") else ConnState.NEW
    conn = SimpleNamespace(state=named, parser=SimpleNamespace(in_head=state.get("in_head", False)))
    return ClientConnection.slot(cast(ClientConnection, conn))


@pytest.mark.parametrize(
    ("state", "slot"),
    [
        ({}, HEAD),  # connected, sent nothing yet
        ({"in_head": True}, HEAD),  # sending its first head
        ({"served": 1}, IDLE),  # kept alive between requests
        ({"served": 1, "in_head": True}, HEAD),  # sending its next head
        ({"served": 1, "reading": object()}, IN_USE),  # uploading a body
        ({"active": object()}, IN_USE),  # queued, running, or its response being written
        ({"served": 1, "pipeline": deque([object()])}, IN_USE),
        ({"served": 1, "closing": True}, IN_USE),  # lingering after an answer, or closing
    ],
)
def test_a_client_connection_names_its_state(state: dict[str, Any], slot: Slot) -> None:
    assert client(**state) is slot
