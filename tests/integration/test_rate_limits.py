"""Rate and connection limits per location (nginx's limit_req and limit_conn), in the front:
a burst of 100 requests gets about burst + 1 answers from the app and 429 for the rest, across
fronts too, while the app's threads stay free for others; limit-conn counts requests in flight.

Every request to the app marks a file (tests/apps/slow.py's ``mark``), so the app's own count is
what the test reads, not the front's.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from harness import APPS_DIR, ServerFactory, wait_until
from rawhttp import RawConnection, request_bytes

CONFIG = f"""
chdir = "{APPS_DIR}"
pythonpath = ["{APPS_DIR}"]
app = "slow"
threads = 2
[[locations]]
path = "/login/"
rate = "5r/s"
burst = 10
[[locations]]
path = "/busy/"
limit-conn = 2
limit-status = 503
"""
BURST = 100
ADMITTED = 11  # the first request and the burst of 10
# Requests that arrive once the bucket has drained a little more: sending 100 connections'
# requests takes a few hundred ms on a loaded machine, and each 200 ms frees one place.
DRIFT = 3
# An answer that waits for no thread comes well within this on a loaded 2-core machine; one
# that waited behind the delayed burst would take its two seconds.
PROMPT = 1.5
ANSWER_TIMEOUT = 30.0
SPREAD = 1.5  # seconds: ten requests at 5r/s start over 2 s, less what drifted in late
HOLD = 8  # seconds the limit-conn test's requests sleep in the app


def start(servers: ServerFactory, tmp_path: Path, *args: str) -> int:
    config = tmp_path / "maitred.toml"
    config.write_text(CONFIG)
    return servers.start(None, "-c", str(config), *args).port


def marks(directory: Path) -> int:
    return len(list(directory.iterdir()))


def send_all(port: int, paths: list[str], source: str = "") -> list[RawConnection]:
    """Open a connection per path and send each its request, before reading any answer."""
    conns = [RawConnection(port, timeout=ANSWER_TIMEOUT, source=source) for _ in paths]
    for conn, path in zip(conns, paths, strict=True):
        conn.send(request_bytes("GET", path))
    return conns


@pytest.mark.parametrize("fronts", [1, 2])
def test_a_burst_gets_its_share_and_429s_while_others_are_served(
    servers: ServerFactory, tmp_path: Path, fronts: int
) -> None:
    port = start(servers, tmp_path, "--fronts", str(fronts), "--workers", str(fronts))
    seen = tmp_path / "seen"
    seen.mkdir()
    conns = send_all(port, [f"/login/?mark={seen}/{n}" for n in range(BURST)])
    try:
        # Another client, another path, while the burst's admitted requests wait their turn
        # in the front: answered at once, for no thread is held by them.
        sent = time.monotonic()
        with RawConnection(port, source="127.0.0.2") as other:
            other.send(request_bytes("GET", "/other"))
            response = other.read_response()
        answered = time.monotonic()
        answers = [conn.read_response() for conn in conns]
    finally:
        for conn in conns:
            conn.close()
    assert response.status == 200
    assert answered - sent < PROMPT
    statuses = [answer.status for answer in answers]
    served = statuses.count(200)
    assert ADMITTED <= served <= ADMITTED + DRIFT, statuses
    assert statuses.count(429) == BURST - served
    assert marks(seen) == served  # the app saw those, and no more
    refused = next(answer for answer in answers if answer.status == 429)
    assert int(refused.header("Retry-After") or "0") >= 1
    # nginx's delay: the admitted ones reached the app one per 200 ms, over two seconds, and
    # the other client's request ran before the last of them.
    started = sorted(
        json.loads(answer.body)["started"] for answer in answers if answer.status == 200
    )
    assert started[-1] - started[0] >= SPREAD
    assert json.loads(response.body)["started"] < started[-1]


def test_limit_conn_counts_requests_in_flight(servers: ServerFactory, tmp_path: Path) -> None:
    port = start(servers, tmp_path, "--threads", "4")
    running = tmp_path / "running"
    running.mkdir()
    held = send_all(port, [f"/busy/?s={HOLD}&mark={running}/{n}" for n in range(2)])
    try:
        wait_until(lambda: marks(running) == 2, timeout=10)
        with RawConnection(port) as third:
            third.send(request_bytes("GET", f"/busy/?mark={running}/third"))
            response = third.read_response()
            assert response.status == 503
            assert response.header("Retry-After") == "1"
        with RawConnection(port) as elsewhere:  # another location: not counted
            elsewhere.send(request_bytes("GET", "/other"))
            assert elsewhere.read_response().status == 200
    finally:
        for conn in held:
            conn.close()
    # Their client left, but each still holds an app thread until the app returns: counted
    # until then, and released then.
    assert status_of(port, "/busy/") == 503
    wait_until(lambda: status_of(port, "/busy/") == 200, timeout=HOLD * 3)


def status_of(port: int, path: str) -> int:
    with RawConnection(port) as conn:
        conn.send(request_bytes("GET", path))
        return conn.read_response().status
