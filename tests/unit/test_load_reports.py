"""A front's load reports: sampled from the dispatcher, and their frames on the status pipe."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import pytest

from maitred import status
from maitred.front.dispatcher import Dispatcher, WorkerConnection
from maitred.front.load import LoadMeter
from maitred.scaling import QUEUE_WAIT
from maitred.status import LoadReport, StatusReader

REPORT = LoadReport("main", 3, 0.84, 3.5, 4.0, 8, 1.0, ((101, 4), (102, 0)))


def test_a_report_comes_back_whole() -> None:
    assert StatusReader().feed(status.encode_load(REPORT)) == [REPORT]


def test_reports_and_short_messages_mixed_and_split_anywhere() -> None:
    other = REPORT._replace(pool="shop ✓", in_flight=())
    stream = b"".join(
        [
            status.encode(status.READY),
            status.encode_load(REPORT),
            status.encode(status.HEARTBEAT, 2.5),
            status.encode_load(other),
        ]
    )
    expected = [(status.READY, 0.0), REPORT, (status.HEARTBEAT, 2.5), other]
    for step in (1, 2, 3, 7, 9, 64, len(stream)):
        reader = StatusReader()
        got = [m for at in range(0, len(stream), step) for m in reader.feed(stream[at : at + step])]
        assert got == expected, step


def test_a_malformed_report_is_dropped_and_the_next_message_reads(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bad = status.LOAD_HEAD.pack(status.LOAD, 3) + b"\x09ab"  # a name longer than the payload
    got = StatusReader().feed(bad + status.encode(status.READY))
    assert got == [(status.READY, 0.0)]
    assert "malformed load report" in caplog.text


def test_the_largest_report_fits_one_atomic_pipe_write() -> None:
    workers = tuple((pid, pid % 3) for pid in range(1, 2000))
    big = REPORT._replace(pool="p" * 300, in_flight=workers)
    frame = status.encode_load(big)
    assert len(frame) <= status.PIPE_BUF
    (back,) = StatusReader().feed(frame)
    assert isinstance(back, LoadReport)
    assert back.pool == "p" * 255 and len(back.in_flight) == status.MAX_WORKERS
    assert all(held == 0 for _, held in back.in_flight[:100])  # the idle ones are kept


def worker(dispatcher: Dispatcher, pid: int, threads: int, busy: int) -> WorkerConnection:
    conn = WorkerConnection(dispatcher)
    conn.pid, conn.threads = pid, threads
    conn.exchanges = {rid: cast(Any, None) for rid in range(busy)}
    dispatcher.workers.append(conn)
    return conn


def test_the_meter_averages_busy_threads_and_keeps_the_longest_wait() -> None:
    dispatcher = Dispatcher(cast(asyncio.AbstractEventLoop, None))
    one = worker(dispatcher, 101, 4, 4)
    two = worker(dispatcher, 102, 4, 0)
    leaving = worker(dispatcher, 103, 4, 2)
    leaving.draining = True  # on its way out: neither its threads nor its requests count
    meter = LoadMeter("main", dispatcher, 10.0)
    dispatcher.queue.append(cast(Any, SimpleNamespace(complete=9.5)))
    meter.sample(10.1)  # 4 busy, a request queued for 0.6 s
    dispatcher.queue.clear()
    two.exchanges = {1: cast(Any, None), 2: cast(Any, None)}
    meter.sample(10.2)  # 6 busy, nothing queued
    report = meter.report(11.0)
    assert report == LoadReport("main", 0, pytest.approx(0.6), 5.0, 6, 8, 1.0, ((101, 4), (102, 2)))
    one.exchanges = {}
    # No sample since: the report takes one, of the moment.
    assert meter.report(12.0) == LoadReport("main", 0, 0.0, 2.0, 2, 8, 1.0, ((101, 0), (102, 2)))


def queued_since(dispatcher: Dispatcher, complete: float) -> None:
    dispatcher.queue.append(cast(Any, SimpleNamespace(complete=complete)))


def test_the_meter_asks_to_report_once_when_the_wait_crosses_the_threshold() -> None:
    dispatcher = Dispatcher(cast(asyncio.AbstractEventLoop, None))
    worker(dispatcher, 101, 4, 4)
    meter = LoadMeter("main", dispatcher, 10.0)
    assert meter.sample(10.1) is False  # nothing queued
    queued_since(dispatcher, 10.1)
    assert meter.crossing() == pytest.approx(10.1 + QUEUE_WAIT)
    assert meter.look(10.1 + QUEUE_WAIT / 2) is False  # waiting, not long yet
    crossed = 10.1 + QUEUE_WAIT + 0.001
    assert meter.look(crossed) is True  # the crossing: report now
    assert meter.report(crossed).oldest_wait == pytest.approx(QUEUE_WAIT + 0.001)
    # Said: while the wait lasts, reports come at their pace again.
    assert meter.crossing() is None
    assert meter.sample(10.5) is False
    assert meter.sample(10.6) is False
    meter.report(11.0)
    dispatcher.queue.clear()  # the pool grew: the wait is over...
    meter.report(12.0)
    queued_since(dispatcher, 12.5)  # ...and a new one is news again
    assert meter.crossing() == pytest.approx(12.5 + QUEUE_WAIT)
    assert meter.sample(12.5 + 2 * QUEUE_WAIT) is True


def test_a_crossing_told_just_after_a_report_counts_the_threads_busy_then() -> None:
    dispatcher = Dispatcher(cast(asyncio.AbstractEventLoop, None))
    worker(dispatcher, 101, 4, 4)
    meter = LoadMeter("main", dispatcher, 10.0)
    queued = 11.0 - QUEUE_WAIT / 2
    queued_since(dispatcher, queued)
    meter.sample(11.0)
    meter.report(11.0)  # the window's report; the crossing comes before the next sample
    crossed = queued + QUEUE_WAIT + 0.001
    assert meter.look(crossed) is True
    early = meter.report(crossed)
    assert (early.most_busy, early.busy, early.queued) == (4, 4.0, 1)


def test_a_timer_reports_at_the_crossing_and_wakes_once_per_head() -> None:
    told: list[float] = []
    wakes: list[float] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        dispatcher = Dispatcher(loop)
        worker(dispatcher, 101, 4, 4)
        meter = LoadMeter("main", dispatcher, loop.time())
        meter.tell = lambda m, now: told.append(m.report(now).oldest_wait)
        at_crossing = meter._at_crossing

        def woken() -> None:
            wakes.append(loop.time())
            at_crossing()

        meter._at_crossing = woken  # type: ignore[method-assign]
        first = cast(Any, SimpleNamespace(complete=loop.time(), state=None))
        dispatcher.submit(first)
        dispatcher.submit(cast(Any, SimpleNamespace(complete=loop.time() + 0.01, state=None)))
        await asyncio.sleep(QUEUE_WAIT / 2)
        dispatcher.queue.popleft()  # the head got a thread before its crossing
        await asyncio.sleep(5 * QUEUE_WAIT)  # no sample: only the timer can report
        assert len(told) == 1 and told[0] >= QUEUE_WAIT
        assert len(wakes) == 2  # at the first head's crossing, then at the second's
        assert meter.crossing() is None  # the report said so: no second timer

    asyncio.run(main())


def test_a_queue_as_deep_as_a_workers_threads_is_told_at_once_and_again_as_it_doubles() -> None:
    told: list[int] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        dispatcher = Dispatcher(loop)
        busy = worker(dispatcher, 101, 4, 0)
        meter = LoadMeter("main", dispatcher, loop.time())
        meter.sample(loop.time())  # idle, before the burst
        busy.exchanges = {rid: cast(Any, None) for rid in range(4)}  # now all busy: it queues

        def tell(m: LoadMeter, now: float) -> None:
            report = m.report(now)
            assert report.most_busy == 4  # of the moment: the pool counts them with the queue
            told.append(report.queued)

        meter.tell = tell

        async def arrive(count: int) -> None:
            for _ in range(count):  # in one turn of the loop, as a burst's requests come
                dispatcher.submit(cast(Any, SimpleNamespace(complete=loop.time())))
            for _ in range(3):
                await asyncio.sleep(0)

        await arrive(3)
        assert told == []  # fewer than a worker's threads, and no wait yet
        await arrive(2)
        assert told == [5]  # at once, with the requests of the same turn
        await arrive(4)
        assert told == [5]  # 9: not twice the 5 told
        await arrive(1)
        assert told == [5, 10]

    asyncio.run(main())
