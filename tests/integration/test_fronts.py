"""Several fronts (--fronts): each serves the addresses with workers of its own.

Which front a test connection landed on is read from /proc: the kernel's table of TCP sockets
gives the inode of the server's end, and one front holds that socket. Which worker answered
(slow.py reports its pid) shows whose workers a front uses. Processes are found and signalled
by pid, from the server's own process tree.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

import hygiene
import procs
from harness import ServerFactory, run_cli, wait_until
from load import Load
from rawhttp import RawConnection, request_bytes, server_end

WAIT = 15.0
FRONTS = {"maitred: front 1", "maitred: front 2"}
# Connections sorted by front sit idle until every front has its share; finding who holds one
# reads /proc, slow on a loaded machine. The default --keepalive (5 s) would close the first
# ones silently meanwhile, as it should: these tests keep them open longer.
HELD_OPEN = ("--keepalive", "120")


def fronts_of(master: int) -> dict[str, int]:
    """Process title -> pid of the master's fronts."""
    return {title: pid for pid, title in procs.children_titled(master, "maitred: front").items()}


def wait_for_fronts(master: int, titles: set[str]) -> dict[str, int]:
    wait_until(lambda: set(fronts_of(master)) == titles, WAIT, f"fronts {sorted(titles)}")
    return fronts_of(master)


def front_holding(conn: RawConnection, server_port: int, fronts: dict[str, int]) -> str:
    """The title of the front that accepted this connection."""
    holder: list[str] = []

    def accepted() -> bool:
        end = server_end(server_port, conn.local_port)
        if end is not None and end.inode:
            link = f"socket:[{end.inode}]"
            holder.extend(
                title
                for title, pid in fronts.items()
                if link in (hygiene.fd_table(pid) or {}).values()
            )
        return bool(holder)

    wait_until(accepted, WAIT, "a front to accept the connection")
    return holder[0]


def connections_by_front(
    port: int, fronts: dict[str, int], each: int
) -> dict[str, list[RawConnection]]:
    """New connections, sorted by the front that accepted them, until every front has `each`."""
    found: dict[str, list[RawConnection]] = {title: [] for title in fronts}
    spare = []
    for _ in range(64):
        if all(len(conns) >= each for conns in found.values()):
            break
        conn = RawConnection(port)
        title = front_holding(conn, port, fronts)
        (found[title] if len(found[title]) < each else spare).append(conn)
    for conn in spare:
        conn.close()
    assert all(len(conns) == each for conns in found.values()), "connections all went one way"
    return found


def worker_pids(conns: list[RawConnection], seconds: float) -> set[int]:
    """Which worker processes answered slow requests sent at once on these connections."""
    for conn in conns:
        conn.send(request_bytes("GET", f"/?s={seconds}"))
    pids = set()
    for conn in conns:
        response = conn.read_response()
        assert response.status == 200, response
        pids.add(json.loads(response.body)["pid"])
    return pids


def test_each_front_dispatches_to_its_own_workers(servers: ServerFactory) -> None:
    server = servers.start(
        "slow:application", "--fronts", "2", "-w", "4", "--threads", "1", *HELD_OPEN
    )
    fronts = wait_for_fronts(server.pid, FRONTS)
    by_front = connections_by_front(server.port, fronts, 2)
    deadline = time.monotonic() + WAIT
    while True:  # until all four workers are up: two requests at once then need two workers
        pids = {title: worker_pids(conns, 0.3) for title, conns in by_front.items()}
        if all(len(p) == 2 for p in pids.values()) or time.monotonic() > deadline:
            break
    first, second = pids["maitred: front 1"], pids["maitred: front 2"]
    # Workers 1 and 3 belong to front 1, 2 and 4 to front 2: two threads each, never shared.
    assert len(first) == len(second) == 2
    assert not first & second
    assert first | second == set(procs.children_titled(server.pid, "maitred: worker"))
    for conns in by_front.values():
        for conn in conns:
            conn.close()


@pytest.mark.expect_errors(r"front 2 \(pid \d+\) exited with signal 9; restarting it")
def test_a_killed_front_is_replaced_under_its_number(servers: ServerFactory) -> None:
    server = servers.start("hello:application", "--fronts", "2", "-w", "2", "--threads", "2")
    titles = FRONTS
    fronts = wait_for_fronts(server.pid, titles)
    os.kill(fronts["maitred: front 2"], signal.SIGKILL)
    wait_until(
        lambda: (
            fronts_of(server.pid).get("maitred: front 2") not in (None, fronts["maitred: front 2"])
        ),
        WAIT,
        "front 2 replaced",
    )
    assert fronts_of(server.pid)["maitred: front 1"] == fronts["maitred: front 1"]
    assert server.wait_for_log(r"front 2 \(pid \d+\) exited with signal 9; restarting it")
    with Load(server.port, "/", clients=4, duration=1.0) as load:
        load.finish()
    assert load.results and load.failures() == [], load.outcomes


def test_fronts_finish_their_requests_on_term(servers: ServerFactory, tmp_path: Path) -> None:
    server = servers.start(
        "slow:application", "--fronts", "2", "-w", "2", "--threads", "1", *HELD_OPEN
    )
    fronts = wait_for_fronts(server.pid, FRONTS)
    conns = [conns[0] for conns in connections_by_front(server.port, fronts, 1).values()]
    marks = [tmp_path / f"running-{i}" for i in range(len(conns))]
    for conn, mark in zip(conns, marks, strict=True):
        conn.send(request_bytes("GET", f"/?s=1&mark={mark}"))
    wait_until(lambda: all(m.exists() for m in marks), WAIT, "both requests running")
    os.kill(server.pid, signal.SIGTERM)
    pids = set()
    for conn in conns:
        response = conn.read_response()
        assert response.status == 200
        pids.add(json.loads(response.body)["pid"])
        conn.close()
    assert len(pids) == 2
    server.spawned.proc.wait(timeout=WAIT)
    assert server.spawned.proc.returncode == 0


def test_workers_stay_until_the_last_front_is_done(servers: ServerFactory, tmp_path: Path) -> None:
    server = servers.start(
        "slow:application", "--fronts", "2", "-w", "2", "--threads", "1", *HELD_OPEN
    )
    fronts = wait_for_fronts(server.pid, FRONTS)
    by_front = connections_by_front(server.port, fronts, 2)
    for conn in by_front["maitred: front 1"]:
        conn.close()  # front 1 is idle: it stops at once on TERM
    busy = by_front["maitred: front 2"]
    running = tmp_path / "running"
    busy[0].send(request_bytes("GET", f"/?s=0.5&mark={running}"))
    wait_until(running.exists, WAIT, "front 2's one thread running the first request")
    busy[1].send(request_bytes("GET", "/?s=0.5"))
    wait_until(busy[1].read_by_server, WAIT, "the second request read: it waits in the queue")
    os.kill(server.pid, signal.SIGTERM)
    statuses = [conn.read_response().status for conn in busy]
    for conn in busy:
        conn.close()
    # Front 2's worker was not stopped when front 1 exited: the queued request still ran.
    assert statuses == [200, 200]
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
    wait_until(
        lambda: len(procs.children_titled(master, "maitred: worker")) == count,
        WAIT,
        f"{count} workers",
    )


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


def test_a_reload_keeps_the_number_of_fronts(servers: ServerFactory, tmp_path: Path) -> None:
    config = tmp_path / "maitred.toml"
    config.write_text("fronts = 2\nworkers = 2\n")
    server = servers.start("hello:application", "-c", str(config))
    fronts = wait_for_fronts(server.pid, FRONTS)
    config.write_text("fronts = 1\nworkers = 3\n")
    os.kill(server.pid, signal.SIGHUP)
    assert server.wait_for_log(r"reload: fronts change on a restart .* keeping the running values")
    workers_count(server.pid, 3)  # the rest of the new settings apply
    assert fronts_of(server.pid) == fronts
