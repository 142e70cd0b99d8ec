"""The peer tuple of a new connection: what its listener says once, what each connection asks."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from test_dispatcher import FakeTransport, Setup

from maitred.front.main import UNIX_END, Front, server_end


class CountingTransport(FakeTransport):
    """A plain transport that records what was asked of it."""

    def __init__(self, local: tuple[str, int]) -> None:
        super().__init__()
        self.local = local
        self.asked: list[str] = []

    def get_extra_info(self, name: str) -> Any:
        self.asked.append(name)
        if name == "peername":
            return ("127.0.0.1", 40000)
        return self.local if name == "sockname" else None


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()


def test_a_listener_on_one_address_answers_for_its_connections(listener: socket.socket) -> None:
    setup = Setup()
    setup.front.server_ends = {listener: server_end(listener)}
    port = listener.getsockname()[1]
    conn = setup.front.new_connection(listener)
    transport = CountingTransport(("127.0.0.1", port))
    conn.connection_made(transport)  # type: ignore[arg-type]
    assert conn.peer == ("127.0.0.1", "40000", "127.0.0.1", str(port), "http")  # type: ignore[attr-defined]
    assert transport.asked == ["peername"]  # no getsockname per connection


def test_a_wildcard_listener_asks_each_connection_its_own_address() -> None:
    with socket.socket() as wildcard:
        wildcard.bind(("0.0.0.0", 0))  # bound only, never listens
        assert server_end(wildcard) is None
    transport = CountingTransport(("10.1.2.3", 8000))
    peer = Front.peer_info(transport, None)  # type: ignore[arg-type]
    assert peer == ("127.0.0.1", "40000", "10.1.2.3", "8000", "http")
    assert "sockname" in transport.asked


def test_a_unix_listener_asks_nothing(tmp_path: Any) -> None:
    with socket.socket(socket.AF_UNIX) as unix:
        unix.bind(str(tmp_path / "s"))
        assert server_end(unix) is UNIX_END
    transport = CountingTransport(("", 0))
    assert Front.peer_info(transport, UNIX_END) == ("", "", "localhost", "", "http")  # type: ignore[arg-type]
    assert transport.asked == []
