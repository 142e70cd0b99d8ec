"""Liveness checks, on a fake clock: no processes, no signals sent."""

from __future__ import annotations

import signal
import time

import pytest

from maitred import frontset
from maitred.children import Child, FrontChild
from maitred.processes import Processes


class Clock:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 1000.0
        monkeypatch.setattr(time, "monotonic", lambda: self.now)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    signals: list[tuple[int, int]] = []
    monkeypatch.setattr(Child, "send", lambda child, signum: signals.append((child.pid, signum)))
    return signals


class FrontWatch:
    """What the master's loop does about its fronts' liveness, once per turn."""

    def __init__(self, front_timeout: float, front: FrontChild) -> None:
        self.processes = Processes([], list)
        self.processes.children[front.pid] = front
        self.front_timeout = front_timeout

    def check(self) -> None:
        now = time.monotonic()
        self.processes.forgive_stall(now)
        fronts = [c for c in self.processes.children.values() if isinstance(c, FrontChild)]
        frontset.kill_silent(fronts, now, self.front_timeout)


def front_pool(clock: Clock, front_timeout: float) -> tuple[FrontWatch, FrontChild]:
    front = FrontChild(pid=11, last_seen=clock.now)
    return FrontWatch(front_timeout, front), front


def test_a_silent_front_is_killed_once(clock: Clock, sent: list[tuple[int, int]]) -> None:
    keeper, _ = front_pool(clock, 3.0)
    for _ in range(4):  # the master checks every second; the front says nothing
        clock.now += 1.0
        keeper.check()
    assert sent == [(11, signal.SIGKILL)]
    clock.now += 1.0
    keeper.check()
    assert sent == [(11, signal.SIGKILL)]  # said and done once: it is restarted when reaped


def test_a_front_that_beats_lives(clock: Clock, sent: list[tuple[int, int]]) -> None:
    keeper, front = front_pool(clock, 3.0)
    for _ in range(10):
        clock.now += 1.0
        front.last_seen = clock.now - 0.5  # a heartbeat came
        keeper.check()
    assert sent == []


def test_the_masters_own_pause_is_not_held_against_the_fronts(
    clock: Clock, sent: list[tuple[int, int]]
) -> None:
    keeper, front = front_pool(clock, 3.0)
    clock.now += 60.0  # the machine slept: nobody ran, the master neither
    keeper.check()
    assert sent == [] and front.last_seen == clock.now
    for _ in range(4):  # from now on the silence is the front's
        clock.now += 1.0
        keeper.check()
    assert sent == [(11, signal.SIGKILL)]


def test_front_timeout_zero_never_kills(clock: Clock, sent: list[tuple[int, int]]) -> None:
    keeper, _ = front_pool(clock, 0.0)
    for _ in range(30):
        clock.now += 1.0
        keeper.check()
    assert sent == []

