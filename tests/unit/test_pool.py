"""The pool's liveness checks, on a fake clock: no processes, no signals sent."""

from __future__ import annotations

import signal
import time

import pytest

from maitred import pool
from maitred.children import Child
from maitred.config import Config


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


def front_pool(clock: Clock, front_timeout: float) -> tuple[pool.Pool, Child]:
    front = Child(11, "front", last_seen=clock.now)
    keeper = pool.Pool(
        Config(front_timeout=front_timeout), {11: front}, lambda n: None, lambda n: front
    )
    return keeper, front


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
