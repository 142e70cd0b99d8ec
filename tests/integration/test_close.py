"""The server calls close() on the app's iterable however the response ends (PEP 3333)."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import quote

import closing
import pytest

from harness import Server, ServerFactory
from rawhttp import RawConnection, request_bytes

# close() follows the last byte within milliseconds; after a client disconnect the server
# notices on its next read or write, and the app yields every closing.TICK seconds.
CLOSE_TIMEOUT = 5.0
POLL_INTERVAL = 0.01


@pytest.fixture(scope="module")
def server(module_servers: ServerFactory) -> Server:
    return module_servers.start("closing:application", "-w", "1", "--threads", "4")


def path_for(record: Path, mode: str) -> str:
    return f"/?mode={mode}&record={quote(str(record))}"


def wait_closed(record: Path) -> list[str]:
    """The events recorded by the app, once "close" is among them (or at the timeout)."""
    deadline = time.monotonic() + CLOSE_TIMEOUT
    while True:
        events = record.read_text().split() if record.exists() else []
        if "close" in events or time.monotonic() >= deadline:
            return events
        time.sleep(POLL_INTERVAL)


def test_close_after_normal_completion(server: Server, tmp_path: Path) -> None:
    record = tmp_path / "record"
    with RawConnection(server.port) as conn:
        response = conn.request("GET", path_for(record, "normal"))
    assert response.body == b"".join(closing.NORMAL_CHUNKS)
    assert wait_closed(record) == ["iter", "exhausted", "close"]


def test_close_after_head_request(server: Server, tmp_path: Path) -> None:
    record = tmp_path / "record"
    with RawConnection(server.port) as conn:
        response = conn.request("HEAD", path_for(record, "normal"))
    assert response.status == 200
    assert "close" in wait_closed(record)


@pytest.mark.expect_errors(r"error handling GET /\?mode=raise(.|\n)*RuntimeError: boom-mid-stream")
def test_close_when_app_raises_mid_stream(server: Server, tmp_path: Path) -> None:
    record = tmp_path / "record"
    with RawConnection(server.port) as conn:
        response = conn.request("GET", path_for(record, "raise"))
    assert not response.complete
    assert wait_closed(record) == ["iter", "close"]
    assert server.wait_for_log("boom-mid-stream"), server.stderr


def test_close_when_client_disconnects_mid_stream(server: Server, tmp_path: Path) -> None:
    record = tmp_path / "record"
    with RawConnection(server.port, timeout=5.0) as conn:
        conn.send(request_bytes("GET", path_for(record, "endless")))
        assert conn.read_head().status == 200
        assert conn.read_chunk(), "no body chunk arrived"
    events = wait_closed(record)
    assert "close" in events, f"close() not called within {CLOSE_TIMEOUT} s of the disconnect"
    assert "exhausted" not in events
