"""Slow readers of large responses hold neither app threads nor the front's memory.

Each slow client sets a small receive buffer and reads nothing at first, so the kernel takes
little of its response and the rest must wait in the front: in the transport's buffer up to
--response-buffer-size, then in a spool file (front/respspool.py). Half the responses carry a
Content-Length (sent from the spool with sendfile), half are chunked (framed pieces).

The 8 MiB responses assume the kernel's socket buffers take well under that of a response its
client does not read: here about 4 MiB (net.ipv4.tcp_wmem allows 4 MiB of send buffer).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import parse_qs

import download
import pytest

from harness import Server, ServerFactory
from integration.test_access_log import log_lines
from rawhttp import RawConnection, Response, fetch, request_bytes
from slowclients import front_pid, open_files_in, rss_mib

MIB = 1 << 20
SLOW_CLIENTS = 8  # as many as the app's threads: -w 2 --threads 4
BODY_MIB = 8
RECV_BUFFER = 64 * 1024  # the kernel takes little of a response the client does not read
# A fresh request must not wait for a slow client: answered at once, far below --send-timeout.
FRESH_WITHIN = 5.0
# Without a spool, the fresh request would wait for a thread until the send timeout (30 s).
HELD_FOR_AT_LEAST = 1.5
# Each slow client holds its transport's buffer (1 MiB) in the front, not its 8 MiB response.
RSS_GROWTH_LIMIT = 3 * SLOW_CLIENTS  # MiB, against SLOW_CLIENTS * BODY_MIB = 64 MiB unspooled
WAIT = 20.0  # generous bound on things that take well under a second
POLL = 0.02


def wait_until(predicate: object, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"still not {what} after {WAIT} s"
        time.sleep(POLL)


@contextmanager
def slow_clients(
    server: Server, marks: Path, count: int, mib: int = BODY_MIB
) -> Iterator[list[tuple[RawConnection, Response]]]:
    """`count` connections that asked for a download of `mib` MiB (every other one chunked)
    and read only its head. The app writes marks/N when it is done with request N."""
    with ExitStack() as stack:
        conns = []
        for n in range(count):
            conn = stack.enter_context(RawConnection(server.port, WAIT, recv_buffer=RECV_BUFFER))
            chunked = "&chunked" if n % 2 else ""
            conn.send(request_bytes("GET", f"/?mib={mib}&record={marks / str(n)}{chunked}"))
            conns.append(conn)
        heads = [conn.read_head() for conn in conns]  # each request has a thread
        assert [head.status for head in heads] == [200] * count
        yield list(zip(conns, heads, strict=True))


def start(servers: ServerFactory, tmp_path: Path, *args: str) -> tuple[Server, Path, Path]:
    """The download app served with `args`; its spool directory and the apps' marks."""
    spool, marks = tmp_path / "spool", tmp_path / "marks"
    spool.mkdir()
    marks.mkdir()
    server = servers.start("download:application", "--body-temp-dir", str(spool), *args)
    return server, spool, marks


def finished_apps(marks: Path) -> int:
    return sum(1 for p in marks.iterdir() if not p.name.endswith(".tmp"))


def test_slow_readers_hold_no_app_thread_and_little_memory(
    servers: ServerFactory, tmp_path: Path
) -> None:
    server, spool, marks = start(servers, tmp_path, "-w", "2", "--threads", "4")
    pid = front_pid(server)
    assert fetch(server.port, "GET", "/?mib=1").status == 200  # warm: both workers, buffers
    rss_before = rss_mib(pid)
    with slow_clients(server, marks, SLOW_CLIENTS) as conns:
        started = time.monotonic()
        assert fetch(server.port, "GET", "/?mib=0", timeout=FRESH_WITHIN).status == 200
        fresh = time.monotonic() - started
        wait_until(lambda: finished_apps(marks) == SLOW_CLIENTS, "every app done")
        growth = rss_mib(pid) - rss_before
        spooling = open_files_in(pid, spool)
        print(
            f"fresh request {fresh * 1000:.0f} ms with {SLOW_CLIENTS} slow readers; app threads "
            f"held: {SLOW_CLIENTS - finished_apps(marks)}; front RSS +{growth:.1f} MiB; "
            f"spool files open: {spooling}"
        )
        assert growth < RSS_GROWTH_LIMIT
        assert spooling == SLOW_CLIENTS
        assert list(spool.iterdir()) == []  # the files have no names
        expected = download.expected(BODY_MIB * MIB)
        for n, (conn, response) in enumerate(conns):
            assert response.is_chunked == bool(n % 2)
            conn.read_body(response)
            assert response.complete and response.body == expected, n
            assert conn.request("GET", "/?mib=1").body == expected[:MIB]  # kept alive
    wait_until(lambda: open_files_in(pid, spool) == 0, "every spool file closed")


def test_without_a_spool_slow_readers_hold_the_app_threads(
    servers: ServerFactory, tmp_path: Path
) -> None:
    server, spool, marks = start(
        servers, tmp_path, "-w", "2", "--threads", "4", "--response-spool-size", "0"
    )
    pid = front_pid(server)
    with slow_clients(server, marks, SLOW_CLIENTS):
        # Every thread waits for credit: a fresh request waits for one.
        with pytest.raises(TimeoutError):
            fetch(server.port, "GET", "/?mib=0", timeout=HELD_FOR_AT_LEAST)
        assert finished_apps(marks) == 0
        assert open_files_in(pid, spool) == 0
    # The clients left: their threads are free.
    assert fetch(server.port, "GET", "/?mib=0", timeout=WAIT).status == 200


SEND_TIMEOUT = 1.0
# Larger than what the kernel's socket buffers may take of a response a client does not read
# (4 MiB of send buffer here; some systems allow 16 MiB).
LARGE_MIB = 32


def test_a_spooled_response_ends_with_its_client_and_logs_the_bytes_sent(
    servers: ServerFactory, tmp_path: Path
) -> None:
    access = tmp_path / "access.log"
    server, spool, marks = start(
        servers,
        tmp_path,
        *("-w", "1", "--threads", "3", "--send-timeout", str(SEND_TIMEOUT)),
        *("--access-logfile", str(access), "--access-log-format", "json"),
    )
    pid = front_pid(server)
    full = LARGE_MIB * MIB
    clients = slow_clients(server, marks, 3, LARGE_MIB)
    with clients as [(stalls, _), (reads, response), (leaves, _)]:
        wait_until(lambda: finished_apps(marks) == 3, "every app done")
        assert open_files_in(pid, spool) == 3
        leaves.close()
        wait_until(lambda: open_files_in(pid, spool) == 2, "the spool of the leaver closed")
        reads.read_body(response)  # chunked: the body bytes are counted without the framing
        assert response.complete and len(response.body) == full
        # The client that reads nothing is dropped after the send timeout; its spool goes too.
        wait_until(lambda: open_files_in(pid, spool) == 0, "every spool file closed")
        received = 0
        with contextlib.suppress(ConnectionResetError):
            while data := stalls.read_some():
                received += len(data)
        assert received < full
    logged = sorted(
        (int(Path(parse_qs(r["query"])["record"][0]).name), r["status"], r["body_bytes"])
        for r in map(json.loads, log_lines(access, 3))
    )
    assert [(n, status) for n, status, _ in logged] == [(0, 200), (1, 200), (2, 200)]
    assert logged[1][2] == full
    print(f"bytes logged (stalled, read, left): {[size for _, _, size in logged]}")
    for n in (0, 2):  # the transport and the kernel took part of it, the spool kept the rest
        assert 0 < logged[n][2] < full, logged
