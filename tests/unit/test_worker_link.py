"""A worker's reader thread against a fake front on a real Unix socket: what ends the link."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from maitred import heap, link
from maitred.config import Config
from maitred.worker.channel import FrontConnection
from maitred.worker.main import LINK_PROTOCOL_ERROR, Worker

TIMEOUT = 30.0  # generous: the machine is shared


class FakeFront:
    """The link listener a worker connects to; each accepted link is checked for a HELLO."""

    def __init__(self, path: Path) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(4)
        self.listener.settimeout(TIMEOUT)

    def accept(self) -> socket.socket:
        conn, _ = self.listener.accept()
        conn.settimeout(TIMEOUT)
        [(kind, _, _)] = link.FrameBuffer().feed(conn.recv(4096))
        assert kind == link.Kind.HELLO
        return conn


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Worker, FakeFront, threading.Thread]]:
    path = tmp_path / "link.sock"
    front = FakeFront(path)
    worker = Worker(Config(), 1, str(path), None, -1, 0)
    reader = threading.Thread(target=worker._read, daemon=True)
    reader.start()
    yield worker, front, reader
    worker.draining = True
    front.listener.close()
    reader.join(TIMEOUT)


def test_a_worker_stops_when_the_front_breaks_the_protocol(
    setup: tuple[Worker, FakeFront, threading.Thread], caplog: pytest.LogCaptureFixture
) -> None:
    worker, front, reader = setup
    conn = front.accept()
    conn.sendall(link.encode_hello(0, 1, 1, 1))  # a message only a worker sends
    reader.join(TIMEOUT)
    assert not reader.is_alive(), "the worker reconnected instead of stopping"
    assert worker.retire.is_set() and worker.exit_status == LINK_PROTOCOL_ERROR
    [record] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "the front broke the link protocol, stopping: unexpected HELLO" in record.getMessage()
    conn.close()


def test_a_worker_reconnects_when_the_front_closes_the_link(
    setup: tuple[Worker, FakeFront, threading.Thread],
) -> None:
    worker, front, _ = setup
    first = front.accept()
    first.sendall(link.encode_window(1, 100)[:-2])  # closed inside a frame: a front that died
    first.close()
    second = front.accept()
    assert not worker.retire.is_set() and worker.exit_status == 0
    second.close()


def test_a_worker_trims_its_heap_once_its_requests_are_over(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    trims: list[int] = []
    monkeypatch.setattr(heap, "trim", lambda: trims.append(1) or True)
    worker = Worker(Config(), 1, str(tmp_path / "link.sock"), None, -1, 0)
    ours, theirs = socket.socketpair()
    worker.front = front = FrontConnection(ours)
    worker._watch()
    assert trims == []  # nothing read from the link yet
    worker._on_request(1, link.Request(
        b"GET", b"/", "1.1", [(b"Host", b"h")], b"", False,
        "1.2.3.4", "1", "127.0.0.1", "80", "http", 0.0, "", "",
    ))  # fmt: skip
    worker._watch()
    assert trims == []  # a request in flight
    front.channels.clear()  # its thread finished it
    worker._watch()
    worker._watch()
    assert trims == [1]
    ours.close()
    theirs.close()
