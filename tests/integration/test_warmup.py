"""--warmup: a new worker serves a path to itself before its first client, so the lazy setup
of a framework is not paid by a client; a failing warm-up is logged and the worker joins.
And with --preload, a new worker costs a fork, not an import.

The app (tests/apps/lazy.py) spends LAZY_COST seconds on the first request of each process;
the access log's request_time says what each client waited. The Django project
(tests/apps/mysite) is lazy as Django is: its first request imports the URLconf (and the
admin's), compiles the template and opens the database, some tens of milliseconds against a
few for the requests after it; several new workers are compared, so one request slowed by
the shared machine does not decide.
"""

from __future__ import annotations

import os
import re
import signal
import statistics
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness import Server, ServerFactory, wait_until
from rawhttp import fetch

LAZY_COST = 1.0  # as tests/apps/lazy.py
FAST = LAZY_COST / 2  # a request that did not pay for the setup takes less than this


DJANGO_PAGE = "/guestbook/"  # a template and a query, under a URLconf that holds the admin's
DJANGO_LIVES = 4  # new workers per server: the one started, then one per HUP
DJANGO_REQUESTS = 5  # requests to each of them
COLD = 2.0  # a cold Django worker's first request takes more than this many typical ones


def times(server: Server, log: Path, count: int, path: str = "/") -> list[float]:
    """Send `count` requests one after the other; what the access log says each took."""
    before = len(log.read_text().splitlines()) if log.exists() else 0
    for _ in range(count):
        assert fetch(server.port, "GET", path).status == 200
    wait_until(lambda: len(log.read_text().splitlines()) >= before + count, what="the log")
    return [float(line) for line in log.read_text().splitlines()[before : before + count]]


def lazy_server(servers: ServerFactory, log: Path, *extra: str) -> Server:
    return servers.start(
        "lazy:application",
        "-w",
        "1",
        "--threads",
        "1",
        "--access-logfile",
        str(log),
        "--access-log-format",
        "{request_time}",
        *extra,
    )


def test_without_warmup_the_first_client_pays_for_the_lazy_setup(
    servers: ServerFactory, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    first, *later = times(lazy_server(servers, log), log, 4)
    assert first >= LAZY_COST and max(later) < FAST, (first, later)


def test_with_warmup_the_first_client_is_as_fast_as_the_later_ones(
    servers: ServerFactory, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    server = lazy_server(servers, log, "--warmup", "/")
    assert re.search(r"worker 1: warm-up GET /: 200 in \d+ ms", server.stderr)
    first, *later = times(server, log, 4)
    assert first < FAST and max(later) < FAST, (first, later)
    # A reload's new worker warms up too before it takes over.
    old = server.stderr.count("warm-up GET /: 200")
    os.kill(server.pid, signal.SIGHUP)
    wait_until(lambda: server.stderr.count("warm-up GET /: 200") > old, what="a new warm-up")
    assert server.wait_for_log(r"worker 1 \(pid \d+\) retired")
    first, *later = times(server, log, 2)
    assert first < FAST, (first, later)


def django_times(
    servers: ServerFactory, tmp_path: Path, *extra: str
) -> tuple[list[float], list[float]]:
    """The first requests of DJANGO_LIVES new Django workers, and the requests after them
    (seconds, as the access log says)."""
    tmp_path.mkdir()
    log = tmp_path / "access.log"
    server = servers.start(
        "mysite.wsgi:application",
        *("-w", "1", "--threads", "1", "--access-logfile", str(log)),
        *("--access-log-format", "{request_time}", *extra),
        env={
            "MYSITE_DATA_DIR": str(tmp_path / "data"),
            "DJANGO_SETTINGS_MODULE": "mysite.settings",
        },
    )
    firsts: list[float] = []
    later: list[float] = []
    for life in range(DJANGO_LIVES):
        if life:  # a reload's new worker, once the old one is gone
            os.kill(server.pid, signal.SIGHUP)
            wait_until(lambda n=life: server.stderr.count("retired") == n, what="a new worker")
        first, *rest = times(server, log, DJANGO_REQUESTS, DJANGO_PAGE)
        firsts.append(first)
        later += rest
    return firsts, later


WARM_SLACK = 0.01  # seconds: a loaded machine's jitter, far under what a cold import costs


def test_with_warmup_a_cold_django_worker_answers_its_first_client_as_fast_as_later_ones(
    servers: ServerFactory, tmp_path: Path
) -> None:
    # A busy machine only adds time: the least of the first requests is what Django's setup
    # costs at the least, and a median of later ones is what a request usually takes.
    cold, later = django_times(servers, tmp_path / "cold")
    assert min(cold) > COLD * statistics.median(later), (cold, later)
    warm, later = django_times(servers, tmp_path / "warm", "--warmup", DJANGO_PAGE)
    # Within a few ms of a later request (2-5 ms here), where a cold one costs 60-110 ms.
    assert statistics.median(warm) <= 2 * max(later) + WARM_SLACK, (warm, later)
    assert min(warm) < min(cold) / 2, (warm, cold)


@pytest.mark.expect_errors(r"warm-up GET /raise raised:(.|\n)*RuntimeError: warm-up broke")
def test_a_failing_warmup_is_logged_and_the_worker_serves(
    servers: ServerFactory, tmp_path: Path
) -> None:
    server = lazy_server(
        servers, tmp_path / "access.log", "--warmup", "/fail", "--warmup", "/raise"
    )
    assert re.search(
        r"warm-up GET /fail failed: 500 in \d+ ms; serving all the same", server.stderr
    )
    assert "RuntimeError: warm-up broke" in server.stderr
    assert re.search(r"warm-up GET /raise failed: 500", server.stderr)
    assert fetch(server.port, "GET", "/").status == 200


def test_with_preload_a_new_worker_costs_a_fork_not_an_import(servers: ServerFactory) -> None:
    server = servers.start("lazy:application", "-w", "1", "--threads", "1", "--preload")
    os.kill(server.pid, signal.SIGTTIN)
    wait_until(lambda: "SIGTTIN: 2 workers" in server.stderr, what="a second worker")

    def pids_serving() -> set[str]:
        with ThreadPoolExecutor(2) as pool:  # one thread each: two at once take both workers
            answers = list(pool.map(lambda _: fetch(server.port, "GET", "/"), range(2)))
        return {a.body.split()[0].decode() for a in answers}

    wait_until(lambda: len(pids_serving()) == 2, what="both workers serving")
    assert re.findall(r"lazy: imported in pid (\d+)", server.stderr) == [str(server.pid)]
