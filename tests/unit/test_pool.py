"""Liveness checks and the pool's decisions, on a fake clock: no processes, no signals sent."""

from __future__ import annotations

import signal
import time

import pytest

from maitred import exits, frontset
from maitred.children import Child, Exit, FrontChild, WorkerChild
from maitred.config import Config
from maitred.pool import Pool
from maitred.processes import Processes
from maitred.worker.main import APP_LOAD_ERROR


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


# --- the pool's decisions, with a fake spawner ---


class FakeSpawner:
    """maitred.pool.Spawner without processes: pids count up, signals are written down."""

    def __init__(self) -> None:
        self.next_pid = 100
        self.spawned: list[WorkerChild] = []
        self.sent: list[tuple[int, int]] = []

    def spawn_worker(self, pool: Pool, worker_id: int) -> WorkerChild:
        self.next_pid += 1
        now = time.monotonic()  # the fake clock's (a dataclass default would not see it)
        child = WorkerChild(
            pid=self.next_pid, worker_id=worker_id, pool=pool.name, started=now, last_seen=now
        )
        self.spawned.append(child)
        return child

    def kill(self, child: Child, signum: signal.Signals) -> None:
        self.sent.append((child.pid, signum))


def started_pool(workers: int = 3) -> tuple[Pool, FakeSpawner]:
    spawner = FakeSpawner()
    keeper = Pool("main", Config(workers=workers), spawner)
    keeper.start()
    assert keeper.ready(spawner.spawned[0])
    for child in spawner.spawned[1:]:
        keeper.ready(child)
    return keeper, spawner


def exit_of(keeper: Pool, child: WorkerChild, code: int, stopping: bool = False) -> Exit:
    """What the master does on a worker's exit: classify it, tell the pool."""
    situation = exits.Situation(
        stopping=stopping,
        serving_generations=frozenset({0}),
        app_imported=keeper.app_imported,
        wanted=keeper.wanted,
    )
    why = exits.classify(child, code, situation)
    keeper.exited(child, code, why)
    return why


def test_the_start_is_staged_behind_the_first_import(clock: Clock) -> None:
    spawner = FakeSpawner()
    keeper = Pool("main", Config(workers=3), spawner)
    keeper.start()
    assert [c.worker_id for c in spawner.spawned] == [1]
    assert keeper.ready(spawner.spawned[0])  # the first READY: the app imports
    assert [c.worker_id for c in spawner.spawned] == [1, 2, 3]
    assert not keeper.ready(spawner.spawned[1])  # said once


def test_an_app_that_cannot_import_is_not_restarted(clock: Clock) -> None:
    spawner = FakeSpawner()
    keeper = Pool("main", Config(workers=3), spawner)
    keeper.start()
    assert exit_of(keeper, spawner.spawned[0], APP_LOAD_ERROR) is Exit.FAILED_IMPORT
    clock.now += 60.0
    keeper.check(clock.now)
    assert len(spawner.spawned) == 1 and keeper.next_start() is None


def test_a_replacement_retires_the_old_worker_only_once_ready(clock: Clock) -> None:
    keeper, spawner = started_pool()
    old = spawner.spawned[0]
    keeper.replace(old, "recycling")
    new = spawner.spawned[-1]
    assert new.worker_id == old.worker_id and spawner.sent == []  # make before break
    keeper.ready(new)
    assert spawner.sent == [(old.pid, signal.SIGTERM)]
    assert exit_of(keeper, old, 0) is Exit.RECYCLE
    clock.now += 60.0
    keeper.check(clock.now)
    assert spawner.spawned[-1] is new  # nothing restarted


def test_a_replacement_that_cannot_import_leaves_the_old_worker_serving(clock: Clock) -> None:
    keeper, spawner = started_pool()
    old = spawner.spawned[0]
    keeper.reload(None)
    new = next(c for c in spawner.spawned if c.replaces is old)
    assert exit_of(keeper, new, APP_LOAD_ERROR) is Exit.FAILED_REPLACEMENT
    assert old.replaced_by is None and spawner.sent == []
    clock.now += 60.0
    keeper.check(clock.now)
    assert keeper.next_start() is None
    keeper.replace(old, "recycling")  # it can be replaced again later
    assert spawner.spawned[-1].replaces is old


def test_a_crash_loop_backs_off(clock: Clock) -> None:
    keeper, spawner = started_pool(workers=1)
    delays = []
    for _ in range(4):
        exit_of(keeper, spawner.spawned[-1], -signal.SIGSEGV)  # right after its start
        when = keeper.next_start()
        assert when is not None
        delays.append(when - clock.now)
        clock.now = when
        keeper.check(clock.now)
    assert delays[0] == 0.0 and delays[1] < delays[2] < delays[3]
    assert [c.worker_id for c in spawner.spawned] == [1] * 5


def test_ttou_stops_the_highest_worker_down_to_one_per_front(clock: Clock) -> None:
    keeper, spawner = started_pool(workers=2)
    keeper.scale(-1, "SIGTTOU")
    assert spawner.sent == [(spawner.spawned[1].pid, signal.SIGTERM)]
    assert exit_of(keeper, spawner.spawned[1], 0) is Exit.SCALE
    keeper.scale(-1, "SIGTTOU")  # the one front keeps its worker
    assert len(spawner.sent) == 1 and keeper.wanted == 1
    keeper.scale(1, "SIGTTIN")
    assert spawner.spawned[-1].worker_id == 2


def test_a_stop_classifies_every_exit_as_a_stop(clock: Clock) -> None:
    keeper, spawner = started_pool()
    assert exit_of(keeper, spawner.spawned[0], APP_LOAD_ERROR, stopping=True) is Exit.STOP
    clock.now += 60.0
    keeper.check(clock.now)
    assert keeper.next_start() is None and len(spawner.spawned) == 3


def test_a_worker_killed_for_its_silence_is_restarted(clock: Clock) -> None:
    spawner = FakeSpawner()
    keeper = Pool("main", Config(workers=1, timeout=5.0, graceful_timeout=5.0), spawner)
    keeper.start()
    keeper.ready(spawner.spawned[0])
    for _ in range(12):
        clock.now += 1.0
        keeper.check(clock.now)
    assert spawner.sent == [(spawner.spawned[0].pid, signal.SIGKILL)]  # once
    assert exit_of(keeper, spawner.spawned[0], -signal.SIGKILL) is Exit.TIMEOUT
    keeper.check(clock.now)
    assert [c.worker_id for c in spawner.spawned] == [1, 1]
