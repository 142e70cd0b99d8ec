"""/status in a real browser (headless Chromium): the worker table, a chart that updates, a
slow request in the in-flight table while it runs."""

from __future__ import annotations

import socket
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from browser import chromium
from harness import ServerFactory, wait_until
from procs import children_titled
from rawhttp import request_bytes
from statsclient import STATS, stats_port

SLOW = 8  # seconds the slow request runs: seen on the page, then gone


def _pids(driver: WebDriver) -> set[int]:
    rows = driver.find_elements(By.CSS_SELECTOR, "#app-main table.workers tbody tr[data-pid]")
    return {int(row.get_attribute("data-pid") or 0) for row in rows}


def _points(driver: WebDriver, chart: str) -> int:
    canvas = driver.find_element(By.CSS_SELECTOR, f'#app-main canvas[data-chart="{chart}"]')
    return int(canvas.get_attribute("data-points") or 0)


def _in_flight(driver: WebDriver) -> list[str]:
    """The in-flight table's rows, as their text."""
    rows = driver.find_elements(By.CSS_SELECTOR, "#app-main table.inflight tbody tr[data-phase]")
    return [row.text for row in rows]


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
