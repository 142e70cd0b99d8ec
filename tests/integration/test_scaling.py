"""The pool follows the load: it grows while requests wait and shrinks, by draining idle
workers, once the load is gone; --warmup serves a path before a new worker takes clients.

Loads are bounded and go to 127.0.0.1 only; every wait is on a condition, with room for a
busy machine.
"""

from __future__ import annotations

import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import procs
from harness import Server, ServerFactory, wait_until
from load import Load
from rawhttp import Response, fetch

GROW_TIMEOUT = 20.0  # seconds for 1 -> 4 workers under load (a few ticks on a calm machine)
SHRINK_TIMEOUT = 25.0  # --scale-down-after 3, one retirement per second after it, and slack
LONG = 20.0  # seconds of a request that outlasts the shrink, with slack


def workers_of(master: int) -> dict[int, str]:
    """pid -> process title of the master's worker processes."""
    return procs.children_titled(master, "maitred: worker")


def grown_to_four(servers: ServerFactory) -> Server:
    """A pool of 1..4 workers (--scale-down-after 3), grown to 4 by a load that then stops."""
    server = servers.start(
        "slow:application", "-w", "1", "--max-workers", "4", "--scale-down-after", "3"
    )
    with Load(server.port, "/?s=0.5", clients=8, duration=60.0, limit=2000) as load:
        # Each of the four has served: all are linked to the front, none still starting.
        wait_until(lambda: len(pids_serving(load)) == 4, GROW_TIMEOUT, "four workers serving")
    assert load.failures() == [], load.outcomes
    return server


def pids_serving(load: Load) -> set[int]:
    """The worker pids that answered the load's requests (tests/apps/slow.py says its pid)."""
    return {json.loads(body)["pid"] for status, body in list(load.results) if status == 200}


def test_the_pool_grows_under_load_and_shrinks_once_it_is_gone(servers: ServerFactory) -> None:
    server = servers.start(
        "slow:application", "-w", "1", "--max-workers", "4", "--scale-down-after", "3"
    )
    wait_until(lambda: len(workers_of(server.pid)) == 1, what="one worker")
    with Load(server.port, "/?s=0.5", clients=8, duration=60.0, limit=2000) as load:
        wait_until(
            lambda: len(workers_of(server.pid)) == 4, GROW_TIMEOUT, "four workers under load"
        )
        grown = len(load.results)
        load.wait_for(grown + 16)  # the four serve a while
    assert load.failures() == [], load.outcomes
    assert server.wait_for_log(
        r"scale up to \d: oldest queued \d+ ms \(\d+ waiting\), \d+% busy over [\d.]+ s"
    )
    # A trickle goes on while the pool drains its surplus workers: none of it is lost.
    with Load(server.port, "/?s=0.01", clients=1, duration=60.0, limit=5000) as trickle:
        wait_until(lambda: len(workers_of(server.pid)) == 1, SHRINK_TIMEOUT, "back to one worker")
        trickle.wait_for(len(trickle.results) + 20)  # and the one left serves it
    assert re.search(r"scale down to 1: .*retiring worker \d \(pid \d+, idle\)", server.stderr)
    assert trickle.failures() == [], trickle.outcomes


def test_a_worker_busy_with_a_long_request_is_not_the_one_retired(
    servers: ServerFactory, tmp_path: Path
) -> None:
    server = grown_to_four(servers)
    mark = tmp_path / "running"
    answers: list[Response] = []
    holder = threading.Thread(
        target=lambda: answers.append(
            fetch(server.port, "GET", f"/?s={LONG}&mark={mark}", timeout=LONG + 30)
        )
    )
    holder.start()
    wait_until(mark.exists, what="the long request running")
    wait_until(lambda: len(workers_of(server.pid)) == 1, SHRINK_TIMEOUT, "back to one worker")
    (survivor,) = workers_of(server.pid)
    holder.join(LONG + 30)
    assert [a.status for a in answers] == [200]
    assert json.loads(answers[0].body)["pid"] == survivor, "the busy worker was retired"


def test_a_retired_worker_finishes_the_request_it_holds(
    servers: ServerFactory, tmp_path: Path
) -> None:
    server = grown_to_four(servers)
    # One long request on each worker (each goes to the least busy): 4 of 16 threads busy,
    # which 2 workers carry at 50%, so the pool retires 2 workers that each hold one.
    marks = [tmp_path / f"running-{i}" for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        answers = [
            pool.submit(fetch, server.port, "GET", f"/?s={LONG}&mark={mark}", timeout=LONG + 30)
            for mark in marks
        ]
        wait_until(lambda: all(m.exists() for m in marks), what="the long requests running")
        assert server.wait_for_log(r"scale down to 2: ", SHRINK_TIMEOUT)
        held = re.findall(r"retiring worker \d \(pid \d+, 1 requests in flight\)", server.stderr)
        assert len(held) == 2, server.stderr
        done = [answer.result() for answer in answers]
    assert [a.status for a in done] == [200] * 4  # the retired ones drained, none was killed
    assert len({json.loads(a.body)["pid"] for a in done}) == 4


def test_with_two_fronts_the_pool_follows_their_summed_load(servers: ServerFactory) -> None:
    server = servers.start(
        "slow:application",
        *("-w", "2", "--fronts", "2", "--threads", "2", "--max-workers", "4"),
        *("--scale-down-after", "3"),
    )
    with Load(server.port, "/?s=0.5", clients=12, duration=60.0, limit=2000) as load:
        wait_until(
            lambda: len(workers_of(server.pid)) == 4, GROW_TIMEOUT, "four workers under load"
        )
    assert load.failures() == [], load.outcomes
    wait_until(lambda: len(workers_of(server.pid)) == 2, SHRINK_TIMEOUT, "back to two workers")
    titles = " ".join(workers_of(server.pid).values())
    ids = {int(worker_id) for worker_id in re.findall(r"worker (\d+)", titles)}
    assert {i % 2 for i in ids} == {0, 1}, f"a front was left without a worker: {ids}"
