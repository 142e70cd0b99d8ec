"""Several fronts (--fronts): each serves the shared listeners with workers of its own.

A front is held still with SIGSTOP so that every new connection goes to the other one; which
worker answered (slow.py reports its pid) shows whose workers a front uses. Processes are
found and signalled by pid, from the server's own process tree.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import procs
from harness import ServerFactory, run_cli
from load import Load
from rawhttp import RawConnection, request_bytes

WAIT = 15.0


def fronts_of(master: int) -> dict[str, int]:
    """Process title -> pid of the master's fronts."""
    return {title: pid for pid, title in procs.children_titled(master, "maitred: front").items()}


def wait_for_fronts(master: int, titles: set[str]) -> dict[str, int]:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        found = fronts_of(master)
        if set(found) == titles:
            return found
        time.sleep(0.05)
    raise AssertionError(f"fronts {sorted(titles)} never appeared: {fronts_of(master)}")


@contextmanager
def stopped(pid: int) -> Iterator[None]:
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def worker_pids(port: int, count: int) -> set[int]:
    """Which worker processes answered `count` slow requests sent at once."""
    conns = [RawConnection(port) for _ in range(count)]
    for conn in conns:
        conn.send(request_bytes("GET", "/?s=0.3", headers=[("Connection", "close")]))
    pids = set()
    for conn in conns:
        response = conn.read_response()
        assert response.status == 200, response
        pids.add(json.loads(response.body)["pid"])
        conn.close()
    return pids


def pids_of_a_busy_front(port: int, threads: int) -> set[int]:
    """The workers a front runs `threads` requests on at once (some may be starting still)."""
    deadline = time.monotonic() + WAIT
    while True:
        pids = worker_pids(port, threads)
        if len(pids) == threads or time.monotonic() > deadline:
            return pids


def test_each_front_serves_alone_with_its_own_workers(servers: ServerFactory) -> None:
    server = servers.start("slow:application", "--fronts", "2", "-w", "4", "--threads", "1")
    fronts = wait_for_fronts(server.pid, {"maitred: front 1", "maitred: front 2"})
    with stopped(fronts["maitred: front 1"]):
        second = pids_of_a_busy_front(server.port, 2)
    with stopped(fronts["maitred: front 2"]):
        first = pids_of_a_busy_front(server.port, 2)
    # Workers 1 and 3 belong to front 1, 2 and 4 to front 2: two threads each, never shared.
    assert len(first) == len(second) == 2
    assert not first & second
    assert first | second == set(procs.children_titled(server.pid, "maitred: worker"))


def test_a_killed_front_is_replaced_under_its_number(servers: ServerFactory) -> None:
    server = servers.start("hello:application", "--fronts", "2", "-w", "2", "--threads", "2")
    titles = {"maitred: front 1", "maitred: front 2"}
    fronts = wait_for_fronts(server.pid, titles)
    os.kill(fronts["maitred: front 2"], signal.SIGKILL)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        now = fronts_of(server.pid)
        if set(now) == titles and now["maitred: front 2"] != fronts["maitred: front 2"]:
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"front 2 was not replaced: {fronts_of(server.pid)}")
    assert now["maitred: front 1"] == fronts["maitred: front 1"]
    assert server.wait_for_log(r"front 2 \(pid \d+\) exited with signal 9; restarting it")
    with Load(server.port, "/", clients=4, duration=1.0) as load:
        load.finish()
    assert load.results and load.failures() == [], load.outcomes


def test_fronts_finish_their_requests_on_term(servers: ServerFactory, tmp_path: Path) -> None:
    server = servers.start("slow:application", "--fronts", "2", "-w", "2", "--threads", "1")
    fronts = wait_for_fronts(server.pid, {"maitred: front 1", "maitred: front 2"})
    conns = []
    for number in (1, 2):
        mark = tmp_path / f"running-{number}"
        other = fronts[f"maitred: front {3 - number}"]
        with stopped(other):  # this request goes to front `number`
            conn = RawConnection(server.port)
            conn.send(request_bytes("GET", f"/?s=1&mark={mark}"))
            deadline = time.monotonic() + WAIT
            while not mark.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            assert mark.exists(), f"the request on front {number} never started"
        conns.append(conn)
    pids = set()
    os.kill(server.pid, signal.SIGTERM)
    for conn in conns:
        response = conn.read_response()
        assert response.status == 200
        pids.add(json.loads(response.body)["pid"])
        conn.close()
    assert len(pids) == 2  # one worker of each front ran one
    server.spawned.proc.wait(timeout=WAIT)
    assert server.spawned.proc.returncode == 0


def test_fronts_cannot_outnumber_workers() -> None:
    result = run_cli(["--fronts", "3", "--workers", "2", "hello:application"])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "maitred: error: fronts (3) must not exceed workers (2): "
        "each front needs a worker of its own"
    ]


def test_every_front_keeps_a_worker_on_ttou(servers: ServerFactory) -> None:
    server = servers.start("hello:application", "--fronts", "2", "-w", "3")
    workers_count(server.pid, 3)
    os.kill(server.pid, signal.SIGTTOU)
    assert server.wait_for_log(r"SIGTTOU: 2 workers; stopping worker 3")
    os.kill(server.pid, signal.SIGTTOU)
    assert server.wait_for_log(r"SIGTTOU: already at the fewest workers \(2\)")
    workers_count(server.pid, 2)


def workers_count(master: int, count: int) -> None:
    deadline = time.monotonic() + WAIT
    while len(procs.children_titled(master, "maitred: worker")) != count:
        assert time.monotonic() < deadline, f"never {count} workers"
        time.sleep(0.05)


def test_fronts_share_a_json_access_log_on_stdout_line_by_line(servers: ServerFactory) -> None:
    server = servers.start(
        "hello:application",
        "--fronts", "2", "-w", "2",
        "--access-logfile", "-", "--access-log-format", "json",
    )  # fmt: skip
    long_path = "/" + "x" * 900  # a line is under PIPE_BUF, two lines are over it
    with Load(server.port, long_path, clients=6, duration=1.5) as load:
        load.finish()
    served = len(load.results)
    assert served and load.failures() == [], load.outcomes
    server.stop()
    lines = server.spawned.stdout.text.splitlines()
    assert len(lines) == served
    assert all(json.loads(line)["path"] == long_path for line in lines)
