"""Misbehaving and measuring clients for the front-protection tests, and front process probes.

* :class:`Slowloris` holds many connections, each sending a request head one byte per tick,
  and records when and how the server ends each one.
* :func:`open_idle` leaves many connections idle in keep-alive, each after one request;
  :func:`descriptors_for` lets this process hold that many.
* :func:`throughput` counts keep-alive requests answered per second on one connection.
* :func:`front_pid`, :func:`rss_mib`, :func:`open_fds`, :func:`open_files_in`: the front
  process of a server, as /proc shows it; :func:`wait_empty` for a spool directory.
"""

from __future__ import annotations

import os
import resource
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import procs
from harness import Server
from rawhttp import RawConnection, request_bytes, server_ends
from waiting import poll, wait_until

FRONT_NAME = "maitred: front"
HEAD_TRICKLE = b"GET / HTTP/1.1\r\nHost: slow\r\nX-Padding: " + b"a" * 100_000
SEND_TIMEOUT = 0.5  # a connect or send on loopback is instant; this only bounds a broken run
IDLE_BATCH = 500  # connections opened at once: well inside the listen backlog
FD_SPARE = 1000  # descriptors beyond the connections: the server's pipes, pytest, imports


def front_pid(server: Server, timeout: float = 5.0) -> int:
    """The pid of the server's front, once it runs (it starts just after the master listens)."""

    def fronts() -> list[int]:
        return [p.pid for p in procs.descendants_and_session(server.pid) if p.name == FRONT_NAME]

    wait_until(lambda: len(fronts()) == 1, timeout, "one front process")
    return fronts()[0]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def open_files_in(pid: int, directory: Path) -> int:
    """Descriptors `pid` holds on files of `directory`, unlinked ones included."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed since the listing (the listing's own descriptor, for one)
        count += target.startswith(f"{directory}/")
    return count


def wait_empty(directory: Path, timeout: float = 2.0) -> list[Path]:
    """What is left in `directory` once it is empty or `timeout` passed.

    The front removes a spooled body right after writing the response, so a fast client can
    look before the unlink (of a large file, a few milliseconds) is done.
    """
    return poll(lambda: list(directory.iterdir()), lambda left: not left, timeout)


def throughput(port: int, seconds: float, path: str = "/") -> float:
    """Requests per second answered on one keep-alive connection over `seconds`."""
    done = 0
    with RawConnection(port) as conn:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert conn.request("GET", path).status == 200
            done += 1
    return done / seconds


@contextmanager
def descriptors_for(connections: int) -> Iterator[None]:
    """Raise this process's open-file limit for `connections` sockets (skip the test when the
    hard limit is too low), and restore it afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = connections + FD_SPARE
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"the open-file hard limit ({hard}) is too low for this test")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, needed), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def open_idle(port: int, count: int) -> list[socket.socket]:
    """`count` connections, each having made one request and now idle in keep-alive."""
    request = request_bytes("GET", "/")
    socks: list[socket.socket] = []
    while len(socks) < count:
        batch = [
            socket.create_connection(("127.0.0.1", port), 10.0)
            for _ in range(min(IDLE_BATCH, count - len(socks)))
        ]
        for sock in batch:
            sock.sendall(request)
        for sock in batch:
            assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
        socks += batch
    return socks


@dataclass
class Ended:
    after: float  # seconds from the connection's first byte to the end of its stream
    answer: bytes  # what the server sent before closing


@dataclass
class Slowloris:
    """`count` connections trickling a head, one byte each per `tick`, in a background thread."""

    port: int
    count: int
    tick: float = 0.2
    ended: dict[int, Ended] = field(default_factory=dict)
    sent: int = 0  # bytes each connection has sent
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Slowloris:
        self.socks = [
            socket.create_connection(("127.0.0.1", self.port), SEND_TIMEOUT)
            for _ in range(self.count)
        ]
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for sock in self.socks:
            sock.close()

    def all_read_by_server(self) -> bool:
        """True once the server has accepted every connection and read what each sent."""
        ends = server_ends(self.port, [sock.getsockname()[1] for sock in self.socks])
        return len(ends) == self.count and all(e.inode and not e.unread for e in ends.values())

    def wait_all_ended(self, timeout: float) -> bool:
        return poll(lambda: len(self.ended) == self.count, timeout=timeout)

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        answers: dict[int, bytes] = {}
        for i, sock in enumerate(self.socks):
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, i)
            answers[i] = b""
        while not self._stop.is_set() and len(self.ended) < self.count:
            for i, sock in enumerate(self.socks):
                if i not in self.ended:
                    try:
                        sock.send(HEAD_TRICKLE[self.sent : self.sent + 1])
                    except OSError:
                        self._end(selector, i, answers[i])
            self.sent += 1
            until = time.monotonic() + self.tick
            while (left := until - time.monotonic()) > 0:
                for key, _ in selector.select(left):
                    self._read(selector, key.data, answers)
        selector.close()

    def _read(self, selector: selectors.BaseSelector, i: int, answers: dict[int, bytes]) -> None:
        try:
            data = self.socks[i].recv(65536)
        except OSError:
            data = b""
        if data:
            answers[i] += data
        else:
            self._end(selector, i, answers[i])

    def _end(self, selector: selectors.BaseSelector, i: int, answer: bytes) -> None:
        if i not in self.ended:
            self.ended[i] = Ended(time.monotonic() - self.started, answer)
            selector.unregister(self.socks[i])
