"""The scaling decision over recorded load traces, on a simulated pool and a simulated clock.

A trace gives, second by second, how many requests want a thread at once (the demand). The
simulated pool serves min(demand, threads); the rest queue, and the front's report says the
oldest of them waited a second. A worker the decision starts is READY half a tick later.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest

from maitred import scaling
from maitred.scaling import Action, Bounds, Memory, Size, decide
from maitred.status import LoadReport

THREADS = 4
DELAY = 30.0  # --scale-down-after


def report(busy: float, threads: int, queued: int = 0, wait: float = 0.0) -> LoadReport:
    return LoadReport("main", queued, wait, busy, busy, threads, 1.0)


@dataclass
class Simulation:
    bounds: Bounds
    serving: int
    starting: int = 0
    joined: float = scaling.NEVER
    memory: Memory = field(default_factory=Memory)
    now: float = 0.0
    sizes: list[int] = field(default_factory=list)  # the serving size after each tick
    changes: list[tuple[float, Action, int]] = field(default_factory=list)

    def run(self, demand: Iterable[float]) -> Simulation:
        for wanted in demand:
            self.tick(wanted)
        return self

    def tick(self, wanted: float) -> None:
        self.now += 1.0
        if self.starting:  # a worker is READY half a tick after it was started
            self.serving += self.starting
            self.starting, self.joined = 0, self.now - 0.5
        threads = self.serving * THREADS
        queued = max(0, round(wanted - threads))
        load = report(min(wanted, threads), threads, queued, 1.0 if queued else 0.0)
        size = Size(self.serving, self.starting, self.joined)
        self.memory, decision = decide(self.bounds, size, load, self.memory, self.now)
        if decision.action is Action.GROW:
            self.starting += decision.count
        elif decision.action is Action.SHRINK:
            self.serving -= decision.count
        if decision.action is not Action.HOLD:
            self.changes.append((self.now, decision.action, self.serving + self.starting))
        assert self.bounds.least <= self.serving + self.starting <= self.bounds.most
        self.sizes.append(self.serving)


def pool(least: int = 1, most: int = 4, serving: int = 1) -> Simulation:
    return Simulation(Bounds(least, most, DELAY, THREADS), serving)


def test_a_step_grows_straight_to_what_the_queue_needs_then_holds() -> None:
    sim = pool().run([0.0] * 10 + [14.0] * 120)
    assert sim.sizes[-1] == 4
    assert sim.sizes.index(4) == 11  # 14 requests at once want 4 workers: all start at once
    assert [size for _, _, size in sim.changes] == [4]  # and no flapping on the plateau


def test_a_spike_grows_then_shrinks_one_at_a_time_after_the_delay() -> None:
    sim = pool().run([2.0] * 10 + [30.0] * 3 + [2.0] * 120)
    grown = max(sim.sizes)
    assert grown >= 2
    assert sim.sizes[-1] == 1
    shrinks = [when for when, action, _ in sim.changes if action is Action.SHRINK]
    assert len(shrinks) == grown - 1  # one worker at a time
    assert shrinks[0] - 13 >= DELAY  # only after --scale-down-after without pressure


def test_a_sawtooth_does_not_thrash() -> None:
    wave = [14.0] * 20 + [1.0] * 40  # shorter lows than twice the delay
    sim = pool().run(wave * 20)  # 20 minutes
    assert len(sim.changes) <= 8, sim.changes
    # The penalty stretched the delay past the lows: the last waves change nothing.
    assert all(when < 10 * 60 for when, _, _ in sim.changes), sim.changes


def test_a_slow_ramp_grows_step_by_step_and_never_shrinks_on_the_way() -> None:
    ramp = [i / 20 for i in range(300)]  # 0 to 15 requests at once over five minutes
    sim = pool().run(ramp)
    assert sim.sizes[-1] == 4
    assert all(action is Action.GROW for _, action, _ in sim.changes)
    assert sim.sizes == sorted(sim.sizes)


def test_an_idle_night_changes_nothing_at_the_minimum() -> None:
    sim = pool(least=2, serving=2).run([0.0] * 8 * 3600)
    assert sim.changes == []


def test_an_idle_night_after_a_busy_day_goes_back_to_the_minimum_once() -> None:
    sim = pool(least=1, serving=4).run([0.0] * 8 * 3600)
    assert [size for _, _, size in sim.changes] == [3, 2, 1]
    assert sim.changes[0][0] >= DELAY


def test_with_no_queue_to_count_the_step_doubles_while_the_pressure_lasts() -> None:
    bounds = Bounds(1, 40, DELAY, THREADS)
    memory, serving, steps = Memory(), 1, []
    for second in range(1, 30):  # every thread busy, nothing queued: how many more is unknown
        full = report(serving * THREADS, serving * THREADS)
        size = Size(serving, 0, second - scaling.SETTLE - 0.5)
        memory, decision = decide(bounds, size, full, memory, float(second))
        if decision.action is Action.GROW:
            steps.append(decision.count)
            serving += decision.count
    assert steps[:5] == [1, 2, 4, scaling.MAX_STEP, scaling.MAX_STEP]


def test_a_deep_queue_starts_what_it_needs_at_most_max_step_at_once() -> None:
    sim = pool(most=40).run([1000.0] * 30)
    sizes = [1, *(size for _, _, size in sim.changes)]
    steps = [after - before for before, after in itertools.pairwise(sizes)]
    assert sizes[-1] == 40
    assert set(steps[:-1]) == {scaling.MAX_STEP}  # no fork storm, however deep the queue
    # No more than the queue shows: 4 busy and 6 queued want 3 workers, 1 serves.
    bounds = Bounds(1, 40, DELAY, THREADS)
    _, decision = decide(bounds, Size(1, 0), report(4, 4, 6, 0.2), Memory(), 10.0)
    assert (decision.action, decision.count) == (Action.GROW, 2)
    _, decision = decide(bounds, Size(1, 2), report(4, 4, 6, 0.2), Memory(), 10.0)
    assert decision.action is Action.HOLD  # they are on their way: they count already
    # A queue that deepened while they start: only the rest it shows, MAX_STEP starting at most.
    _, decision = decide(bounds, Size(1, 2), report(4, 4, 10, 0.2), Memory(), 10.0)
    assert (decision.action, decision.count) == (Action.GROW, 1)
    _, decision = decide(bounds, Size(1, 3), report(4, 4, 60, 0.2), Memory(), 10.0)
    assert (decision.action, decision.count) == (Action.GROW, scaling.MAX_STEP - 3)


def test_a_report_that_shows_requests_waiting_is_pressure() -> None:
    assert scaling.pressure(report(4, 4, 6, scaling.QUEUE_WAIT), THREADS)
    # A burst is served by too few threads until the pool sees it: 60 ms of wait is enough.
    assert scaling.pressure(report(3, 4, 6, 0.06), THREADS)
    assert scaling.pressure(report(4, 4), THREADS)  # all busy, nothing queued: utilisation
    assert not scaling.pressure(report(1, 4, 1, scaling.QUEUE_WAIT / 2), THREADS)
    # A worker's threads of requests queued behind busy threads: no need to wait 50 ms.
    assert scaling.pressure(report(3, 4, THREADS, 0.0), THREADS)
    assert not scaling.pressure(report(3, 8, THREADS - 1, 0.0), THREADS)


def test_nothing_more_starts_while_a_new_worker_is_not_ready() -> None:
    bounds = Bounds(1, 8, DELAY, THREADS)
    busy = report(4, 4, queued=10, wait=2.0)
    memory, first = decide(bounds, Size(1, 0), busy, Memory(), 10.0)
    assert first.action is Action.GROW
    for now in (11.0, 12.0, 13.0):  # still importing (or warming up): it does not serve yet
        memory, decision = decide(bounds, Size(1, first.count), busy, memory, now)
        assert decision.action is Action.HOLD
    # Busy with no queue to count: the doubling step waits for them, and a second after.
    memory, decision = decide(bounds, Size(1, 1), report(4, 4), memory, 14.0)
    assert decision.action is Action.HOLD
    memory, decision = decide(bounds, Size(2, 0, 14.5), report(8, 8), memory, 15.0)
    assert decision.action is Action.HOLD


def test_a_growth_while_the_pool_settles_doubles_the_step_too() -> None:
    # A queue a worker deep a moment after the first worker joined: one more at once...
    bounds = Bounds(1, 4, DELAY, THREADS)
    memory, first = decide(bounds, Size(1, 0, 9.8), report(4, 4, THREADS), Memory(), 10.0)
    assert (first.action, first.count) == (Action.GROW, 1)
    # ...and when the two stay full, the pressure has lasted: two more, not one.
    memory, second = decide(bounds, Size(2, 0, 10.5), report(8, 8), memory, 12.0)
    assert (second.action, second.count) == (Action.GROW, 2)


def test_a_regret_lengthens_the_shrink_delay() -> None:
    bounds = Bounds(1, 4, DELAY, THREADS)
    idle = report(0, 8)
    memory = Memory()
    now = 0.0
    while True:  # 2 workers, idle: one goes after the delay
        now += 1.0
        memory, decision = decide(bounds, Size(2, 0), idle, memory, now)
        if decision.action is Action.SHRINK:
            break
    assert now >= DELAY
    now += 5.0  # needed again soon after
    memory, decision = decide(bounds, Size(1, 0), report(4, 4, 3, 0.5), memory, now)
    assert decision.action is Action.GROW
    assert memory.penalty == DELAY
    start = now
    while True:
        now += 1.0
        memory, decision = decide(bounds, Size(2, 0), idle, memory, now)
        if decision.action is Action.SHRINK:
            break
    assert now - start >= 2 * DELAY


def test_a_busy_pool_never_shrinks_below_what_its_peak_needs() -> None:
    bounds = Bounds(1, 4, DELAY, THREADS)
    memory = Memory()
    for second in range(1, 200):  # 6 of 16 threads busy at peak: 3 workers keep it under 50%
        memory, decision = decide(bounds, Size(4, 0), report(3, 16), memory, float(second))
        load = LoadReport("main", 0, 0.0, 3.0, 6.0, 16, 1.0)
        memory, decision = decide(bounds, Size(3, 0), load, memory, second + 0.5)
        assert decision.action is Action.HOLD


@pytest.mark.parametrize(
    ("count", "used", "workers", "limit", "fits"),
    [
        (4, 100, 1, 0, 4),  # no limit
        (4, 100, 1, 250, 1),  # 100 each: one more fits under 250
        (4, 100, 1, 150, 0),
        (2, 0, 1, 150, 2),  # memory not read: nothing to go by
    ],
)
def test_growth_stops_at_the_pools_memory_limit(
    count: int, used: int, workers: int, limit: int, fits: int
) -> None:
    assert scaling.fit_memory(count, used, workers, limit) == fits


def test_the_fronts_reports_add_up() -> None:
    one = LoadReport("main", 2, 0.3, 3.5, 4.0, 8, 1.0, ((10, 4),))
    two = LoadReport("main", 0, 0.0, 1.0, 2.0, 8, 1.0, ((11, 0), (12, 1)))
    both = scaling.combine("main", [one, two])
    assert both == LoadReport("main", 2, 0.3, 4.5, 6.0, 16, 1.0, ((10, 4), (11, 0), (12, 1)))
    assert scaling.combine("main", []) is None


def test_the_log_line_says_why() -> None:
    _, decision = decide(
        Bounds(1, 4, DELAY, THREADS), Size(2, 0), report(8, 8, 3, 0.84), Memory(), 100.0
    )
    assert decision.reason == "oldest queued 840 ms (3 waiting), 100% busy over 1 s"
    early = LoadReport("main", 28, 0.101, 4.0, 4, 4, 0.23)  # told at once, not after 1 s
    _, decision = decide(Bounds(1, 4, DELAY, THREADS), Size(1, 0), early, Memory(), 100.0)
    assert decision.reason == "oldest queued 101 ms (28 waiting), 100% busy over 0.2 s"


def test_the_tail_of_a_burst_does_not_hold_the_pool_up_once_it_is_older_than_the_delay() -> None:
    bounds = Bounds(1, 4, DELAY, THREADS)
    memory, serving = Memory(), 4
    loads = [LoadReport("main", 0, 0.0, 3.0, 6.0, 16, 1.0)]  # the last second of a burst
    loads += [LoadReport("main", 0, 0.0, 1.0, 1.0, 16, 1.0)] * 120  # one long request runs
    for second, load in enumerate(loads, 1):
        memory, decision = decide(bounds, Size(serving, 0), load, memory, float(second))
        serving -= decision.count if decision.action is Action.SHRINK else 0
    assert serving == 1


def test_a_burst_that_deepens_while_workers_start_gets_what_it_shows_never_a_storm() -> None:
    # Reports every 50 ms as 32 clients' requests arrive on 1x4; a worker is READY 200 ms
    # after it was started. The pool may start more while the first ones start, as the queue
    # deepens, but never more than it shows, nor more than MAX_STEP starting at once.
    bounds = Bounds(1, 16, DELAY, THREADS)
    memory, serving, starting = Memory(), 1, []
    for tick, held in enumerate([8, 12, 20, 32, 32, 32, 32, 32, 32, 32, 32, 32]):
        now = 10.0 + tick * 0.05
        serving += sum(1 for at in starting if now - at >= 0.2)
        starting = [at for at in starting if now - at < 0.2]
        busy = min(serving * THREADS, held)
        queued = held - busy
        load = LoadReport("main", queued, 0.0, busy, busy, serving * THREADS, 0.05)
        size = Size(serving, len(starting), 10.0 if serving > 1 else scaling.NEVER)
        memory, decision = decide(bounds, size, load, memory, now)
        assert decision.action is not Action.SHRINK
        if decision.action is Action.GROW:
            starting += [now] * decision.count
        assert len(starting) <= scaling.MAX_STEP
        assert serving + len(starting) <= max(-(-held // THREADS), serving)
    assert serving + len(starting) == 8  # 32 clients on 4 threads each, not one more
