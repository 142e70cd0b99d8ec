"""How many workers a pool needs: one pure decision per tick of the master, from the load.

Theory of operation
-------------------
The front sees every waiting request and every busy thread, and reports them to the master
about once a second per pool (maitred.status.LoadReport, summed over the fronts). On each new
report the pool (maitred.pool) hands this function its bounds, its size, that load, what it
remembers from earlier decisions (:class:`Memory`) and the time; it gets back the new memory
and a :class:`Decision`. No clock is read here and nothing is done: the pool forks and retires.

Grow, when requests wait: the queue holds a worker's threads of requests (requests queue
only when every thread is busy, so a worker more would be busy at once), or its oldest
request waited QUEUE_WAIT (50 ms), or BUSY_HIGH (90%) of the threads were busy on average
over the window. The front reports at once when the queue reaches that depth, again each
time it doubles, and when the wait crosses QUEUE_WAIT (maitred.front.load); the pool decides
on such a report at once. It then starts what the queue shows it lacks: the workers that
would run every request the front holds (the busy threads and the queued requests) at once,
less those serving and those starting. This count is Little's law read off the front: in
a closed loop of clients (a burst of keep-alive clients) the requests held are the offered
load, which the rate served cannot show while the pool is short. It starts at least `step`
(1, then 2, then 4 while the pressure lasts, for a pool that is busy with no queue to
count), at most MAX_STEP starting at once (no fork storm), never past the maximum.
While workers are starting, and for SETTLE (1 s: a whole report window) after the last one
joined (READY: imported and warmed up), only what a deeper queue shows on top of them
starts, never the doubling step: a burst still arriving when the first workers were forked
gets the rest as the queue deepens, not a second later, and a pool busy with no queue waits
to see the load they take off before adding more.

Shrink, when the pool has more than the load needs: a worker fewer would still have left the
busiest sample of the last --scale-down-after seconds at most SPARE (50%) of the remaining
threads busy, with nothing queued, and that has held at every decision for that long; then one
worker is retired (drained, never killed: the pool picks an idle one), and one more per
SHRINK_EVERY while it still holds, down to the minimum. The gap between 90% to grow and 50%
to shrink is the hysteresis that keeps a steady load from flapping.

A worker retired and then needed again within --scale-down-after was retired too soon: each
such regret adds --scale-down-after to the delay (the penalty, up to MAX_PENALTY times the
delay), and it halves at a retirement when PENALTY_FORGET delays passed without one. So a
load that comes and goes in waves stops the pool from shrinking between them, as uWSGI's
busyness penalty does.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass

from maitred.config import Config
from maitred.status import LoadReport

# Seconds a queued request waited: the pool lacks threads. A burst runs on the threads the
# pool has until it reaches this wait and the new workers start, and that stretch is its
# slowest: at 50 ms rather than 100 ms, a burst's p99 fell from 149 to 90 ms (medians of six
# alternating rounds of bench.burst, docs/scaling.md).
QUEUE_WAIT = 0.05
BUSY_HIGH = 0.9  # busy share of the threads over the window: the pool is full
SPARE = 0.5  # busiest share of the remaining threads a worker fewer may leave
# Most workers started at once, whatever the queue asks: each new worker imports the app on the
# cores that serve the load (without --preload), so a deep queue on a large pool forks a few
# at a time, each batch seen to help before the next. The doubling step grows up to it.
MAX_STEP = 4
SETTLE = 1.0  # seconds after a worker joined before more start: a report window with it
SHRINK_EVERY = 1.0  # seconds between two retirements while the pool stays too large
MAX_PENALTY = 8  # the longest penalty, in --scale-down-after
PENALTY_FORGET = 10  # --scale-down-after periods without regret that halve the penalty
REPORT_STALE = 3.0  # seconds after which a front's last report no longer counts
NEVER = -math.inf


class Action(enum.Enum):
    HOLD = "hold"
    GROW = "scale up"
    SHRINK = "scale down"


@dataclass(frozen=True)
class Bounds:
    """A pool's scaling settings."""

    least: int
    most: int
    delay: float  # --scale-down-after
    threads: int  # per worker

    @classmethod
    def of(cls, cfg: Config) -> Bounds:
        return cls(
            cfg.min_workers or cfg.workers,
            cfg.max_workers or cfg.workers,
            cfg.scale_down_after,
            cfg.threads,
        )

    @property
    def scaling(self) -> bool:
        """Whether the pool may change size by itself."""
        return self.most > self.least


@dataclass(frozen=True)
class Size:
    serving: int  # READY workers that take requests
    starting: int  # workers forked to add capacity, not READY yet
    joined: float = NEVER  # when the last worker became READY


@dataclass(frozen=True)
class Memory:
    """What the decision remembers from one tick to the next."""

    step: int = 1  # workers the next growth starts
    surplus_since: float | None = None  # start of the current over-provisioned stretch
    # The busiest samples of the last delay, for a sliding maximum: (time, busy threads), the
    # busy figures decreasing (an older sample under a newer one can no longer be the maximum).
    peaks: tuple[tuple[float, float], ...] = ()
    last_shrink: float = NEVER
    penalty: float = 0.0  # seconds added to the delay
    last_regret: float = NEVER  # when a retired worker was last needed again soon


@dataclass(frozen=True)
class Decision:
    action: Action
    count: int = 0  # workers to start or retire
    reason: str = ""


HOLD = Decision(Action.HOLD)


def decide(
    bounds: Bounds, size: Size, load: LoadReport | None, memory: Memory, now: float
) -> tuple[Memory, Decision]:
    """The pool's next move, and what to remember for the tick after."""
    if load is None:
        return memory, HOLD
    why = pressure(load, bounds.threads)
    if why:
        return _grow(bounds, size, lacking(load, bounds.threads, size), memory, now, why)
    memory = dataclasses.replace(memory, step=1)
    return _shrink(bounds, size, load, memory, now)


def queue_lacks(oldest_wait: float, queued: int, threads: int) -> bool:
    """Whether the queue shows the pool lacks threads: its oldest request waited QUEUE_WAIT,
    or it holds a whole worker's `threads` of requests (they queue only when every thread is
    busy: a worker more would be busy at once). The front reports on it at once."""
    return oldest_wait >= QUEUE_WAIT or (threads > 0 and queued >= threads)


def pressure(load: LoadReport, threads: int) -> str:
    """Why requests wait, or "" when they do not; `threads` per worker."""
    share = load.busy / load.threads if load.threads else 0.0
    if queue_lacks(load.oldest_wait, load.queued, threads) or share >= BUSY_HIGH:
        return (
            f"oldest queued {load.oldest_wait * 1000:.0f} ms ({load.queued} waiting), "
            f"{share:.0%} busy over {round(load.window, 1):g} s"
        )
    return ""


def lacking(load: LoadReport, threads: int, size: Size) -> int:
    """Workers the pool lacks to run at once every request the front holds: the threads busy
    at the busiest sample and the requests queued, `threads` to a worker."""
    held = load.most_busy + load.queued
    return max(0, math.ceil(held / threads) - size.serving - size.starting)


def _grow(
    bounds: Bounds, size: Size, lacks: int, memory: Memory, now: float, pressure: str
) -> tuple[Memory, Decision]:
    memory = dataclasses.replace(memory, surplus_since=None, peaks=())
    room = bounds.most - size.serving - size.starting
    if room <= 0:
        return memory, HOLD
    if size.starting or now - size.joined < SETTLE:
        # Only what the queue shows on top of the workers on their way (`lacks` counts them),
        # and never more than MAX_STEP starting at once: a burst that is still arriving when
        # the first workers are forked gets the rest as it deepens, not a second later.
        count = min(lacks, MAX_STEP - size.starting, room)
        if count <= 0:
            return memory, HOLD
        # A growth is a growth: the pressure lasted, and the doubling step says so next time.
        memory = dataclasses.replace(memory, step=min(memory.step * 2, MAX_STEP))
        return memory, Decision(Action.GROW, count, pressure)
    if now - memory.last_shrink < bounds.delay:
        # A worker retired moments ago was needed after all: wait longer next time.
        penalty = min(memory.penalty + bounds.delay, MAX_PENALTY * bounds.delay)
        memory = dataclasses.replace(memory, penalty=penalty, last_regret=now, last_shrink=NEVER)
    count = min(max(memory.step, lacks), MAX_STEP, room)
    memory = dataclasses.replace(memory, step=min(memory.step * 2, MAX_STEP))
    return memory, Decision(Action.GROW, count, pressure)


def needed(busy: float, threads: int) -> int:
    """Workers that would have kept `busy` threads at SPARE of their threads or below."""
    return math.ceil(busy / (threads * SPARE)) if busy > 0 else 0


def _peaks(
    memory: Memory, busy: float, now: float, since: float
) -> tuple[tuple[float, float], ...]:
    """The sliding maximum's samples from `since` on, with (now, busy) added."""
    kept = [(when, b) for when, b in memory.peaks if when >= since and b > busy]
    return (*kept, (now, busy))


def _shrink(
    bounds: Bounds, size: Size, load: LoadReport, memory: Memory, now: float
) -> tuple[Memory, Decision]:
    floor = max(bounds.least, needed(load.most_busy, bounds.threads))
    if size.starting or load.queued or size.serving <= floor:
        return dataclasses.replace(memory, surplus_since=None, peaks=()), HOLD
    since = now if memory.surplus_since is None else memory.surplus_since
    wait = bounds.delay + memory.penalty
    peaks = _peaks(memory, load.most_busy, now, now - wait)
    memory = dataclasses.replace(memory, surplus_since=since, peaks=peaks)
    busiest = peaks[0][1]  # over the last `wait` seconds
    most = max(bounds.least, needed(busiest, bounds.threads))
    if now - since < wait or now - memory.last_shrink < SHRINK_EVERY or size.serving <= most:
        return memory, HOLD
    penalty = memory.penalty
    if penalty and now - memory.last_regret >= PENALTY_FORGET * bounds.delay:
        penalty /= 2
    memory = dataclasses.replace(memory, last_shrink=now, penalty=penalty)
    used = f"{busiest:.0f} of {size.serving * bounds.threads} threads"
    return memory, Decision(Action.SHRINK, 1, f"at most {used} busy for {wait:.0f} s")


def fit_memory(count: int, used: int, workers: int, limit: int) -> int:
    """How many of `count` new workers fit under the pool's memory `limit` (0: no limit),
    each taken to cost what the `workers` running use on average (`used` together)."""
    if not limit or not workers or not used:
        return count
    each = used / workers
    return max(0, min(count, int((limit - used) // each)))


def combine(name: str, reports: list[LoadReport]) -> LoadReport | None:
    """One pool's load over all its fronts (--fronts): each front queues and runs its own
    share, so the counts add up, and the longest wait is the longest of any front."""
    if not reports:
        return None
    return LoadReport(
        name,
        queued=sum(r.queued for r in reports),
        oldest_wait=max(r.oldest_wait for r in reports),
        busy=sum(r.busy for r in reports),
        most_busy=sum(r.most_busy for r in reports),
        threads=sum(r.threads for r in reports),
        window=max(r.window for r in reports),
        in_flight=tuple(w for r in reports for w in r.in_flight),
    )
