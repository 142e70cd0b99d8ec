"""What the front absorbs so the app never sees it: idle connections, slow uploads, slow readers.

The issue's measurements, on loopback: 10,000 idle connections, a 1 GiB upload (about 8 s here;
it needs 1 GiB free in the temp directory), and a bounded slow reader: 8 MiB read at 2 MiB/s,
or with ``MAITRED_SLOW_TESTS=1`` the full 100 MiB at 1 MiB/s (100 s).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness import ServerFactory
from rawhttp import RawConnection, fetch, request_bytes
from slowclients import descriptors_for, front_pid, open_idle, rss_mib, wait_empty

SLOW = os.environ.get("MAITRED_SLOW_TESTS") == "1"
MIB = 1 << 20


class PeakRss:
    """Samples a process's RSS in a thread; `peak` is the largest value seen (MiB)."""

    INTERVAL = 0.02

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_mib(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.INTERVAL):
            self.peak = max(self.peak, rss_mib(self.pid))

    @contextmanager
    def watching(self) -> Iterator[PeakRss]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()


IDLE_CONNECTIONS = 10_000
IDLE_RSS_LIMIT = 200.0  # MiB


def test_ten_thousand_idle_connections_cost_little_and_block_nothing(
    servers: ServerFactory,
) -> None:
    server = servers.start(
        "hello:application", "--max-connections", str(IDLE_CONNECTIONS + 100), "--keepalive", "120"
    )
    socks: list[socket.socket] = []
    with descriptors_for(IDLE_CONNECTIONS):
        try:
            socks = open_idle(server.port, IDLE_CONNECTIONS)
            started = time.monotonic()
            for _ in range(100):
                assert fetch(server.port, "GET", "/").status == 200
            took = time.monotonic() - started
            rss = rss_mib(front_pid(server))
        finally:
            for sock in socks:
                sock.close()
    print(f"front RSS, {len(socks)} idle connections: {rss:.1f} MiB; 100 requests: {took:.2f} s")
    assert rss < IDLE_RSS_LIMIT
    assert took < 5.0


UPLOAD = 1 << 30
SLOW_START = 1.0  # seconds of trickling before the client sends at full speed
UPLOAD_RSS_LIMIT = 100.0  # MiB


def test_a_large_slow_upload_holds_no_thread_and_little_memory(
    servers: ServerFactory, tmp_path: Path
) -> None:
    server = servers.start(
        "echo:application", "-w", "1", "--threads", "1", "--body-temp-dir", str(tmp_path)
    )
    block = os.urandom(MIB)
    digest = hashlib.sha256()
    with PeakRss(front_pid(server)).watching() as rss, RawConnection(server.port, 60.0) as up:
        up.send(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % UPLOAD)
        trickle = block[: 64 * 1024]
        for i in range(0, len(trickle), 4096):
            up.send(trickle[i : i + 4096])
            time.sleep(SLOW_START / 16)  # the stimulus: a slow client
        digest.update(trickle)
        # The only app thread is free while the body arrives.
        assert fetch(server.port, "GET", "/", timeout=2.0).status == 200
        up.send(block[len(trickle) :])
        digest.update(block[len(trickle) :])
        for _ in range(UPLOAD // MIB - 1):
            up.send(block)
            digest.update(block)
        response = up.read_response()
    report = json.loads(response.body)
    assert (report["body_length"], report["body_sha256"]) == (UPLOAD, digest.hexdigest())
    assert report["environ"]["maitred.queue_time"] < 1.0
    print(f"front peak RSS during a {UPLOAD // MIB} MiB upload: {rss.peak:.1f} MiB")
    assert rss.peak < UPLOAD_RSS_LIMIT
    assert wait_empty(tmp_path) == []


DOWNLOAD_MIB, READ_RATE = (100, 1 * MIB) if SLOW else (8, 2 * MIB)
READ_BLOCK = 64 * 1024
THREAD_FREED_WITHIN = 1.0  # seconds after the app finished


def test_a_slow_reader_frees_the_app_thread_when_the_app_is_done(
    servers: ServerFactory, tmp_path: Path
) -> None:
    # --timeout 0: the lead's request timeout would cut a 100 s download (the app thread
    # writes until the last megabytes are in the front's buffer).
    server = servers.start("download:application", "-w", "1", "--threads", "1", "--timeout", "0")
    record = tmp_path / "app-done"
    received, freed_at, started = 0, 0.0, time.monotonic()
    with socket.socket() as sock, PeakRss(front_pid(server)).watching() as rss:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, READ_BLOCK)
        sock.settimeout(10.0)
        sock.connect(("127.0.0.1", server.port))
        path = f"/?mib={DOWNLOAD_MIB}&record={record}"
        sock.sendall(request_bytes("GET", path, [("Connection", "close")]))
        while data := sock.recv(READ_BLOCK):
            received += len(data)
            # The stimulus: a client that reads at READ_RATE.
            time.sleep(max(0.0, started + received / READ_RATE - time.monotonic()))
            if record.exists() and not freed_at:
                # The app is done: its thread must serve another request at once.
                assert fetch(server.port, "GET", "/?mib=0", timeout=5.0).status == 200
                freed_at = time.monotonic()
                app_done = float(record.read_text())
                still_to_read = DOWNLOAD_MIB * MIB - received
    assert received > DOWNLOAD_MIB * MIB  # the whole body, and its head
    assert freed_at, "the app never finished"
    print(
        f"app thread free {freed_at - app_done:.3f} s after the app finished, with "
        f"{still_to_read / MIB:.1f} MiB still to read; front peak RSS {rss.peak:.1f} MiB"
    )
    assert freed_at - app_done < THREAD_FREED_WITHIN
    assert still_to_read > MIB // 2, "the app only finished when the client had read it all"
