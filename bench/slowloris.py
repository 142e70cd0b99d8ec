"""Throughput under a slowloris attack: ``python -m bench.slowloris`` (needs wrk).

Starts maitred (hello-world app, default settings), measures /hello with wrk, then again while
N slowloris connections stay open (each sends its head one byte per tick and is replaced as soon
as the server closes it, as the attack tool does), and prints both rates, their ratio, how the
server ended the slow connections (status, seconds after their first byte) and the front's RSS.

    python -m bench.slowloris                   # 300 connections, 10 s per measurement
    python -m bench.slowloris --connections 1000 --duration 20 --header-timeout 5
"""

from __future__ import annotations

import argparse
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ROOT / "tests" / "apps"
LISTENING = re.compile(rb"Listening at: http://127\.0\.0\.1:(\d+)")
REQUESTS_PER_SEC = re.compile(r"Requests/sec:\s+([\d.]+)")
HEAD = b"GET / HTTP/1.1\r\nHost: slow\r\nX-Padding: " + b"a" * 1_000_000
START_TIMEOUT = 15.0


@dataclass
class Attack:
    """Keeps `count` slowloris connections open, one byte per `tick` each, in a thread."""

    port: int
    count: int
    tick: float
    ended_after: list[float] = field(default_factory=list)
    answers: dict[bytes, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _open(self, selector: selectors.BaseSelector) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port))
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, [time.monotonic(), 0, b""])

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        for _ in range(self.count):
            self._open(selector)
        while not self._stop.is_set():
            for key in list(selector.get_map().values()):
                state = key.data
                try:
                    key.fileobj.send(HEAD[state[1] : state[1] + 1])  # type: ignore[union-attr]
                    state[1] += 1
                except OSError:
                    self._ended(selector, key)
            until = time.monotonic() + self.tick
            while (left := until - time.monotonic()) > 0:
                for key, _ in selector.select(left):
                    self._read(selector, key)
        for key in list(selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        selector.close()

    def _read(self, selector: selectors.BaseSelector, key: selectors.SelectorKey) -> None:
        try:
            data = key.fileobj.recv(65536)  # type: ignore[union-attr]
        except OSError:
            data = b""
        if data:
            key.data[2] += data
        else:
            self._ended(selector, key)

    def _ended(self, selector: selectors.BaseSelector, key: selectors.SelectorKey) -> None:
        started, _, answer = key.data
        self.ended_after.append(time.monotonic() - started)
        status = answer[:12] or b"(nothing)"
        self.answers[status] = self.answers.get(status, 0) + 1
        selector.unregister(key.fileobj)
        key.fileobj.close()  # type: ignore[union-attr]
        if not self._stop.is_set():
            self._open(selector)


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], int]:
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}:{APPS}")
    cmd = [sys.executable, "-m", "maitred", "-b", "127.0.0.1:0", "-w", str(args.workers)]
    cmd += ["--header-timeout", str(args.header_timeout), "hello:application"]
    proc = subprocess.Popen(cmd, cwd=APPS, env=env, stderr=subprocess.PIPE, start_new_session=True)
    assert proc.stderr is not None
    deadline = time.monotonic() + START_TIMEOUT
    output = b""
    while time.monotonic() < deadline:
        output += proc.stderr.readline()
        if match := LISTENING.search(output):
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep it drained
            return proc, int(match.group(1))
    proc.kill()
    raise SystemExit(f"maitred did not start:\n{output.decode()}")


def wrk(port: int, args: argparse.Namespace) -> float:
    url = f"http://127.0.0.1:{port}/"
    out = subprocess.run(
        ["wrk", "-t", "2", "-c", str(args.clients), "-d", f"{args.duration}s", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = REQUESTS_PER_SEC.search(out)
    if match is None:
        raise SystemExit(f"cannot read wrk's output:\n{out}")
    return float(match.group(1))


def front_rss_mib(master: int) -> float:
    for pid in subprocess.run(
        ["pgrep", "-s", str(master)], capture_output=True, text=True
    ).stdout.split():
        status = Path(f"/proc/{pid}/status").read_text()
        if "maitred: front" in Path(f"/proc/{pid}/cmdline").read_text():
            return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.slowloris", description=__doc__)
    parser.add_argument("--connections", type=int, default=300)
    parser.add_argument("--tick", type=float, default=0.2, help="seconds between bytes")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--clients", type=int, default=50, help="wrk connections")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--header-timeout", type=float, default=10.0)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed")
    proc, port = start_server(args)
    try:
        wrk(port, argparse.Namespace(**{**vars(args), "duration": 2}))  # warm up
        before = wrk(port, args)
        attack = Attack(port, args.connections, args.tick)
        attack.start()
        time.sleep(1.0)  # every slow connection has started its head
        during = wrk(port, args)
        rss = front_rss_mib(proc.pid)
        attack.stop()
        after = wrk(port, args)  # a second baseline: this machine's noise shows in the spread
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    ended = sorted(attack.ended_after)
    baseline = (before + after) / 2
    print(f"/hello without slowloris: {before:.0f} before, {after:.0f} after requests/s")
    print(f"/hello with {args.connections} slowloris connections: {during:.0f} requests/s")
    print(f"ratio to the mean baseline: {during / baseline:.1%}")
    if ended:
        print(
            f"slow connections ended by the server: {len(ended)}, after "
            f"{ended[0]:.2f}-{ended[-1]:.2f} s (median {ended[len(ended) // 2]:.2f} s); "
            f"answers: {attack.answers}"
        )
    print(f"front RSS during the attack: {rss:.1f} MiB")


if __name__ == "__main__":
    main()
