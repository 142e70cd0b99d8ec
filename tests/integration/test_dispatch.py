"""Non-greedy dispatch: a request goes to a thread that is free now, in whichever worker.

The server runs 2 workers x 2 threads = 4 slots. Sleeping requests occupy slots; each creates a
mark file when it starts running, so the test knows which slots are busy without guessing. The
slow app reports its pid and CLOCK_MONOTONIC start/end times, which this process can compare
with its own ``time.monotonic()``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness import Server, ServerFactory, wait_until
from rawhttp import fetch

WORKERS, THREADS = 2, 2
SLOTS = WORKERS * THREADS
# A request that finds a free thread is answered in milliseconds; a second leaves a wide margin
# for a loaded machine while staying far below the sleeps that would delay a misrouted request.
MARK_TIMEOUT = 1.0
WARM_UP_TIMEOUT = 20.0
POLL_INTERVAL = 0.005


@dataclass
class Done:
    report: dict[str, Any]
    at: float  # when the client had the whole response, time.monotonic()


@pytest.fixture(scope="module")
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2 * SLOTS) as executor:
        yield executor


def get(server: Server, seconds: float, mark: Path | None = None) -> Done:
    path = f"/?s={seconds}" + (f"&mark={mark}" if mark else "")
    response = fetch(server.port, "GET", path, timeout=15.0)
    assert response.status == 200, response
    return Done(json.loads(response.body), time.monotonic())


def start_sleepers(
    server: Server, pool: ThreadPoolExecutor, seconds: list[float], marks_dir: Path
) -> list[Future[Done]]:
    """Start one sleeping request per entry; return once each one is running in a thread."""
    marks = [marks_dir / f"sleeper-{i}" for i in range(len(seconds))]
    futures = [pool.submit(get, server, s, m) for s, m in zip(seconds, marks, strict=True)]
    wait_until(
        lambda: all(m.exists() for m in marks),
        MARK_TIMEOUT,
        f"all {len(marks)} requests running on {SLOTS} free slots",
        POLL_INTERVAL,
    )
    assert not any(f.done() for f in futures), "a sleeper ended before all had started"
    return futures


@pytest.fixture(scope="module")
def server(module_servers: ServerFactory, pool: ThreadPoolExecutor) -> Server:
    """A server whose 4 slots have all been seen busy at once (every worker is up)."""
    server = module_servers.start("slow:application", "-w", str(WORKERS), "--threads", str(THREADS))
    deadline = time.monotonic() + WARM_UP_TIMEOUT
    while True:
        futures = [pool.submit(get, server, 0.3) for _ in range(SLOTS)]
        reports = [f.result().report for f in futures]
        # All four ran at the same time: the latest start precedes the earliest end.
        if max(r["started"] for r in reports) < min(r["ended"] for r in reports):
            assert len({r["pid"] for r in reports}) == WORKERS
            return server
        assert time.monotonic() < deadline, "the 4 slots were never all busy at once"


def test_free_thread_serves_at_once_while_three_are_busy(
    server: Server, pool: ThreadPoolExecutor, tmp_path: Path
) -> None:
    sleepers = start_sleepers(server, pool, [2.0, 2.0, 2.0], tmp_path)
    sent = time.monotonic()
    fast = get(server, 0)
    assert fast.at - sent < 0.5, f"fast request took {fast.at - sent:.2f} s with a slot free"
    assert not any(f.done() for f in sleepers), "the fast request waited for a sleeper"
    for f in sleepers:
        f.result()


def test_queued_request_goes_to_the_first_thread_that_frees(
    server: Server, pool: ThreadPoolExecutor, tmp_path: Path
) -> None:
    # The second slot frees 2 s after the first: a queued request that waited for it (or for
    # a later one) is told apart by a bound of half that gap, wide enough for a loaded machine.
    seconds = [1.0, 3.0, 4.0, 4.0]
    sleepers = start_sleepers(server, pool, seconds, tmp_path)
    queued = get(server, 0).report
    first, second = sleepers[0].result(), sleepers[1].result()
    for f in sleepers[2:]:
        f.result()

    assert queued["started"] >= first.report["ended"] - 0.01, "no slot was free yet"
    waited = queued["started"] - first.report["ended"]
    gap = second.report["ended"] - first.report["ended"]
    assert waited < gap / 2, f"queued request started {waited:.2f} s after the first slot freed"
    assert queued["ended"] < second.report["ended"], "it waited for a later slot"
    assert queued["pid"] == first.report["pid"], (
        "the queued request must run in the worker whose thread freed first"
    )
