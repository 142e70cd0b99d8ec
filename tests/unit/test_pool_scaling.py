"""The pool acts on the scaling decision: whom it starts, whom it retires, within what bounds.
A fake spawner and a fake clock: no processes, no signals sent."""

from __future__ import annotations

import logging
import signal

import pytest
from test_pool import Clock, FakeSpawner, exit_of

from maitred import pool as pool_module
from maitred.children import Exit
from maitred.config import Config
from maitred.pool import Pool
from maitred.status import LoadReport

FRONT = 7  # a front's pid: the source of the reports


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


def scaling_pool(clock: Clock, **settings: int) -> tuple[Pool, FakeSpawner]:
    spawner = FakeSpawner()
    cfg = Config(**{"workers": 1, "max_workers": 4, "scale_down_after": 3.0, **settings})
    keeper = Pool("main", cfg, spawner)
    keeper.start()
    for child in list(spawner.spawned):
        keeper.ready(child)
    return keeper, spawner


def tick(keeper: Pool, clock: Clock, report: LoadReport) -> None:
    """A second passes: a front reports, the master's loop checks the pool."""
    clock.now += 1.0
    keeper.load(FRONT, report, clock.now)
    keeper.check(clock.now)


def pressed(threads: int) -> LoadReport:
    return LoadReport("main", 5, 0.8, threads, threads, threads, 1.0)


def idle(keeper: Pool, busy: dict[int, int] | None = None) -> LoadReport:
    held = busy or {}
    flight = tuple((c.pid, held.get(c.pid, 0)) for c in keeper.workers if c.leaving is None)
    count = sum(held.values())
    return LoadReport("main", 0, 0.0, count, count, 4 * len(flight), 1.0, flight)


def grow_to_four(keeper: Pool, spawner: FakeSpawner, clock: Clock) -> None:
    for _ in range(20):
        tick(keeper, clock, pressed(4 * len(keeper.workers)))
        for child in spawner.spawned:
            if not child.ready:
                keeper.ready(child)
        if len(keeper.workers) == 4:
            return
    raise AssertionError("the pool did not grow to 4")


def test_the_worker_retired_is_an_idle_one_not_the_highest(clock: Clock) -> None:
    keeper, spawner = scaling_pool(clock)
    grow_to_four(keeper, spawner, clock)
    busiest = max(keeper.workers, key=lambda c: c.worker_id)
    for _ in range(30):
        tick(keeper, clock, idle(keeper, {busiest.pid: 1}))
    assert keeper.wanted == 1
    assert [c for c in keeper.workers if c.leaving is None] == [busiest]
    assert (busiest.pid, signal.SIGTERM) not in spawner.sent


def test_with_two_fronts_each_keeps_its_share(clock: Clock) -> None:
    keeper, spawner = scaling_pool(clock, workers=2, fronts=2, min_workers=2)
    grow_to_four(keeper, spawner, clock)
    by_id = {c.worker_id: c for c in keeper.workers}
    busy = {by_id[1].pid: 1, by_id[3].pid: 1}  # both of front 1: the idle ones are front 2's
    for _ in range(30):
        tick(keeper, clock, idle(keeper, busy))
    left = sorted(c.worker_id for c in keeper.workers if c.leaving is None)
    assert len(left) == 2 and {i % 2 for i in left} == {0, 1}, left  # one on each front


def test_a_gap_in_the_worker_ids_does_not_stop_a_restart(clock: Clock) -> None:
    keeper, spawner = scaling_pool(clock)
    grow_to_four(keeper, spawner, clock)
    by_id = {c.worker_id: c for c in keeper.workers}
    keeper.wanted = 3  # worker 2 was the idle one: it is retired, and ids 1, 3, 4 serve
    keeper.retire(by_id[2], Exit.SCALE)
    assert exit_of(keeper, by_id[2], 0) is Exit.SCALE
    count = len(spawner.spawned)
    exit_of(keeper, by_id[4], -9)  # worker 4 crashes: an id above the 3 wanted
    keeper.check(clock.now)
    assert len(spawner.spawned) == count + 1, "the crashed worker was not restarted"


def test_growth_stops_at_the_pool_memory_limit(
    clock: Clock, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(pool_module, "memory_of", lambda pid, metric: 100 << 20)
    caplog.set_level(logging.DEBUG, logger="maitred.error")
    keeper, spawner = scaling_pool(clock, max_pool_memory=250 << 20)
    for _ in range(10):
        tick(keeper, clock, pressed(4 * len(keeper.workers)))
        for child in spawner.spawned:
            if not child.ready:
                keeper.ready(child)
    assert len(keeper.workers) == 2
    assert "no scale up: oldest queued 800 ms" in caplog.text
    assert "rss 200 MiB of --max-pool-memory 250 MiB" in caplog.text
    refusals = [r for r in caplog.records if r.getMessage().startswith("no scale up")]
    assert [r.levelname for r in refusals[:2]] == ["WARNING", "DEBUG"]  # said once


def test_a_report_of_requests_waiting_is_decided_on_at_once(clock: Clock) -> None:
    keeper, spawner = scaling_pool(clock)
    tick(keeper, clock, idle(keeper))  # a decision: the next one is not due for a while
    clock.now += 0.1  # the front tells at once that requests began to wait
    keeper.load(FRONT, LoadReport("main", 28, 0.1, 4.0, 4, 4, 0.1), clock.now)
    keeper.check(clock.now)
    assert len(spawner.spawned) == 4  # and the queue asks for the maximum: 3 start at once
    assert keeper.wanted == 4
