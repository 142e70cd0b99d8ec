"""The lingering close's bounds (front/linger.py), with a fake loop and transport."""

from __future__ import annotations

from typing import Any, cast

from maitred.front.linger import Linger

SECONDS = 5.0
BUDGET = 100


class FakeTimer:
    def __init__(self, delay: float, callback: Any) -> None:
        self.delay = delay
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    def __init__(self) -> None:
        self.timers: list[FakeTimer] = []

    def call_later(self, delay: float, callback: Any) -> FakeTimer:
        timer = FakeTimer(delay, callback)
        self.timers.append(timer)
        return timer


class FakeTransport:
    def __init__(self) -> None:
        self.events: list[str] = []

    def write_eof(self) -> None:
        self.events.append("eof")

    def close(self) -> None:
        self.events.append("close")


def linger() -> tuple[Linger, FakeLoop, FakeTransport]:
    loop, transport = FakeLoop(), FakeTransport()
    return Linger(cast(Any, loop), cast(Any, transport), SECONDS, BUDGET), loop, transport


def test_the_write_side_is_shut_at_once_and_the_time_bound_closes() -> None:
    _, loop, transport = linger()
    assert transport.events == ["eof"]
    (timer,) = loop.timers
    assert timer.delay == SECONDS
    timer.callback()
    assert transport.events == ["eof", "close"]


def test_bytes_up_to_the_budget_are_discarded_past_it_the_connection_closes() -> None:
    lingering, loop, transport = linger()
    lingering.discard(BUDGET)
    assert transport.events == ["eof"]
    lingering.discard(1)
    assert transport.events == ["eof", "close"]
    assert loop.timers[0].cancelled


def test_a_connection_gone_stops_the_timer() -> None:
    lingering, loop, transport = linger()
    lingering.stop()
    assert loop.timers[0].cancelled and transport.events == ["eof"]
