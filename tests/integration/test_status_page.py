"""/status in a real browser (headless Chromium): the worker table, a chart that updates, a
slow request in the in-flight table while it runs."""

from __future__ import annotations

import socket
from pathlib import Path

from selenium.webdriver.remote.webdriver import WebDriver

from browser import chromium
from harness import ServerFactory, wait_until
from procs import children_titled
from rawhttp import request_bytes
from statsclient import STATS, stats_port

SLOW = 8  # seconds the slow request runs: seen on the page, then gone


# The page redraws its tables every second: each read happens in one script, in the page,
# so no element goes stale between finding it and reading it.
def _pids(driver: WebDriver) -> set[int]:
    pids = driver.execute_script(
        "return [...document.querySelectorAll("
        "'#app-main table.workers tbody tr[data-pid]')].map(tr => Number(tr.dataset.pid))"
    )
    return set(pids)


def _points(driver: WebDriver, chart: str) -> int:
    points = driver.execute_script(
        "const c = document.querySelector(`#app-main canvas[data-chart='${arguments[0]}']`);"
        "return c ? Number(c.dataset.points) : 0",
        chart,
    )
    return int(points)


def _in_flight(driver: WebDriver) -> list[str]:
    """The in-flight table's rows, as their text."""
    rows: list[str] = driver.execute_script(
        "return [...document.querySelectorAll("
        "'#app-main table.inflight tbody tr[data-phase]')].map(tr => tr.textContent)"
    )
    return rows


def test_the_page_shows_workers_charts_and_a_slow_request(
    servers: ServerFactory, tmp_path: Path
) -> None:
    server = servers.start("slow:application", "-w", "2", *STATS)
    port = stats_port(server)
    workers = set(children_titled(server.pid, "maitred: worker"))
    with chromium() as driver:
        driver.get(f"http://127.0.0.1:{port}/status")
        wait_until(lambda: _pids(driver) == workers, timeout=30, what="the worker table")
        for chart in ("rps", "latency", "queue", "slots"):
            wait_until(lambda c=chart: _points(driver, c) > 0, timeout=30, what=f"{chart} drawn")
        points = _points(driver, "rps")
        wait_until(lambda: _points(driver, "rps") > points, timeout=30, what="the chart updating")
        mark = tmp_path / "running"
        path = f"/?s={SLOW}&mark={mark}"
        with socket.create_connection(("127.0.0.1", server.port)) as client:
            client.sendall(request_bytes("GET", path))
            wait_until(mark.exists, what="the slow request running")
            wait_until(
                lambda: any(path in row and "in app" in row for row in _in_flight(driver)),
                timeout=30,
                what="the slow request in the in-flight table",
            )
            client.settimeout(SLOW + 30)
            assert client.recv(100).startswith(b"HTTP/1.1 200")
        wait_until(lambda: not _in_flight(driver), timeout=30, what="the request gone from it")
