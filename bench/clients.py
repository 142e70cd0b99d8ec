"""Python load clients, run as ``python -m bench.clients MODE ...`` in a process of their own.

  fetch      N connections, each sending requests back to back (closed loop) for a fixed time:
             keep-alive or Connection: close, GET or POST with a body. It measures the slow
             lane of the head-of-line test, the uploads, and everything when wrk is absent.
  slowloris  N connections that send their request head one byte at a time, holding a server's
             connection slots for as long as the server lets them.

Each run prints ``READY`` once its connections are under way (so the harness can start the
measured load after it), then one JSON line with its figures. Every run is bounded twice: by its
duration and by a maximum request or connection count. Only 127.0.0.1 is accepted as a target.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import ssl
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from bench.http1 import ProtocolError, build_request, read_response

LOOPBACK = "127.0.0.1"
# A request outstanding this long counts as a timeout (wrk's --timeout is set the same).
DEFAULT_TIMEOUT_S = 5.0
# Upper bound on the requests one fetch run may send, whatever its duration.
DEFAULT_MAX_REQUESTS = 5_000_000
# After a failed connect, wait this long before trying again, so a dead server is not spun on.
RETRY_PAUSE_S = 0.01
# Upload bodies are sent in slices of this size so one client never holds a 1 MiB copy per write.
SEND_SLICE = 64 * 1024
# slowloris: a fresh connection may be opened this many times per slot in one run, at most.
MAX_RECONNECTS_PER_SLOT = 100
# slowloris: headers padding the request, so it takes longer to send than any run lasts.
SLOW_PAD_HEADERS = 200
# What a connection the server closed or broke can raise. RuntimeError: uvloop's answer to a
# write on a transport the peer already closed.
CONNECTION_ERRORS = (
    OSError,
    EOFError,
    asyncio.IncompleteReadError,
    ProtocolError,
    ValueError,
    RuntimeError,
)


@dataclass
class FetchStats:
    latencies: list[float] = field(default_factory=list)
    ok: int = 0
    bytes: int = 0
    errors: dict[str, int] = field(
        default_factory=lambda: {"connect": 0, "read": 0, "write": 0, "timeout": 0, "status": 0}
    )


@dataclass(frozen=True)
class FetchPlan:
    port: int
    path: str
    connections: int
    duration: float
    close: bool
    method: str
    body_bytes: int
    timeout: float
    max_requests: int
    tls: bool = False


def _tls_context(plan: FetchPlan) -> ssl.SSLContext | None:
    """Loopback only and the run's own self-signed certificate (bench.tls): nothing to verify."""
    if not plan.tls:
        return None
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def latency_summary(latencies_s: list[float]) -> dict[str, float]:
    ordered = sorted(latencies_s)
    mean = sum(ordered) / len(ordered) if ordered else 0.0
    summary = {f"p{label}": percentile(ordered, q) for label, q in PERCENTILES.items()}
    summary.update(max=ordered[-1] if ordered else 0.0, mean=mean)
    return {key: round(value * 1000, 3) for key, value in summary.items()}


PERCENTILES = {"50": 0.50, "90": 0.90, "99": 0.99, "99.9": 0.999}


class _Budget:
    """Shared count of requests left; one event loop thread, so no lock is needed."""

    def __init__(self, limit: int) -> None:
        self.left = limit

    def take(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        return True


async def _send_body(writer: asyncio.StreamWriter, body: bytes) -> None:
    view = memoryview(body)
    for start in range(0, len(view), SEND_SLICE):
        writer.write(view[start : start + SEND_SLICE])
        await writer.drain()


async def _fetch_conn(
    plan: FetchPlan, stats: FetchStats, budget: _Budget, started: asyncio.Event, deadline: float
) -> None:
    request = build_request(
        plan.method, plan.path, LOOPBACK, close=plan.close, body_bytes=plan.body_bytes
    )
    body = b"b" * plan.body_bytes
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    while time.monotonic() < deadline and budget.take():
        t0 = time.monotonic()
        stage = "connect"
        try:
            if conn is None:
                conn = await asyncio.wait_for(
                    asyncio.open_connection(LOOPBACK, plan.port, ssl=_tls_context(plan)),
                    plan.timeout,
                )
            reader, writer = conn
            stage = "write"
            writer.write(request)
            if body:
                await asyncio.wait_for(_send_body(writer, body), plan.timeout)
            started.set()
            stage = "read"
            response = await asyncio.wait_for(read_response(reader), plan.timeout)
        except (TimeoutError, asyncio.TimeoutError):
            stats.errors["timeout"] += 1
            await _drop(conn)
            conn = None
            continue
        except CONNECTION_ERRORS:
            stats.errors[stage] += 1
            await _drop(conn)
            conn = None
            await asyncio.sleep(RETRY_PAUSE_S if stage == "connect" else 0)
            continue
        stats.latencies.append(time.monotonic() - t0)
        stats.bytes += response.body_bytes
        if 200 <= response.status < 300:
            stats.ok += 1
        else:
            stats.errors["status"] += 1
        if plan.close or not response.keep_alive:
            await _drop(conn)
            conn = None
    await _drop(conn)


async def _drop(
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None,
) -> None:
    if conn is not None:
        conn[1].close()
        with contextlib.suppress(Exception):
            await conn[1].wait_closed()


async def _announce_when(events: list[asyncio.Event], limit: float) -> None:
    with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), limit)
    print("READY", flush=True)


async def fetch(plan: FetchPlan) -> dict[str, Any]:
    stats, budget = FetchStats(), _Budget(plan.max_requests)
    started = [asyncio.Event() for _ in range(plan.connections)]
    t0 = time.monotonic()
    deadline = t0 + plan.duration
    announce = asyncio.create_task(_announce_when(started, plan.duration))
    await asyncio.gather(*(_fetch_conn(plan, stats, budget, ev, deadline) for ev in started))
    announce.cancel()
    elapsed = time.monotonic() - t0
    return {
        "requests": len(stats.latencies),
        "ok": stats.ok,
        "duration_s": round(elapsed, 3),
        "bytes": stats.bytes,
        "latency_ms": latency_summary(stats.latencies),
        "errors": stats.errors,
    }


@dataclass
class SlowStats:
    connects: int = 0
    connect_errors: int = 0
    closed_by_server: int = 0
    answered: int = 0
    bytes_sent: int = 0


def slow_request() -> bytes:
    pad = "".join(f"X-Pad-{i}: {'z' * 8}\r\n" for i in range(SLOW_PAD_HEADERS))
    return f"GET /hello HTTP/1.1\r\nHost: {LOOPBACK}\r\n{pad}\r\n".encode("ascii")


async def _slow_conn(
    port: int, interval: float, deadline: float, stats: SlowStats, connected: asyncio.Event
) -> None:
    request = slow_request()
    for _ in range(MAX_RECONNECTS_PER_SLOT):
        if time.monotonic() >= deadline:
            return
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(LOOPBACK, port), max(0.1, deadline - time.monotonic())
            )
        except (OSError, TimeoutError, asyncio.TimeoutError):
            stats.connect_errors += 1
            await asyncio.sleep(RETRY_PAUSE_S)
            continue
        stats.connects += 1
        connected.set()
        try:
            await _dribble(reader, writer, request, interval, deadline, stats)
        finally:
            writer.close()


async def _dribble(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    request: bytes,
    interval: float,
    deadline: float,
    stats: SlowStats,
) -> None:
    try:
        for i in range(len(request)):
            if time.monotonic() >= deadline:
                return
            if reader.at_eof() or writer.is_closing():
                stats.closed_by_server += 1
                return
            writer.write(request[i : i + 1])
            await writer.drain()
            stats.bytes_sent += 1
            await asyncio.sleep(interval)
        left = max(0.1, deadline - time.monotonic())
        await asyncio.wait_for(read_response(reader), left)
        stats.answered += 1
    except CONNECTION_ERRORS:
        stats.closed_by_server += 1
    except (TimeoutError, asyncio.TimeoutError):
        pass  # still waiting for an answer when the run ended: the slot was held to the end


async def slowloris(
    port: int, connections: int, interval: float, duration: float
) -> dict[str, Any]:
    stats = SlowStats()
    connected = [asyncio.Event() for _ in range(connections)]
    t0 = time.monotonic()
    deadline = t0 + duration
    announce = asyncio.create_task(_announce_when(connected, min(duration, 5.0)))
    await asyncio.gather(*(_slow_conn(port, interval, deadline, stats, ev) for ev in connected))
    announce.cancel()
    return {"duration_s": round(time.monotonic() - t0, 3), **stats.__dict__}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.clients", description=__doc__)
    parser.add_argument("--host", default=LOOPBACK, choices=[LOOPBACK])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, required=True)
    parser.add_argument("--duration", type=float, required=True)
    modes = parser.add_subparsers(dest="mode", required=True)
    fetch_args = modes.add_parser("fetch")
    fetch_args.add_argument("--path", default="/hello")
    fetch_args.add_argument("--close", action="store_true")
    fetch_args.add_argument("--method", default="GET", choices=["GET", "POST"])
    fetch_args.add_argument("--body-bytes", type=int, default=0)
    fetch_args.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S)
    fetch_args.add_argument("--max-requests", type=int, default=DEFAULT_MAX_REQUESTS)
    fetch_args.add_argument("--tls", action="store_true", help="HTTPS (no verification)")
    slow_args = modes.add_parser("slowloris")
    slow_args.add_argument("--interval", type=float, default=0.2)
    return parser


def _run(coro: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    try:
        import uvloop  # the clients must not be slower than the servers they measure
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.mode == "fetch":
        plan = FetchPlan(
            args.port, args.path, args.connections, args.duration, args.close,
            args.method, args.body_bytes, args.timeout, args.max_requests, args.tls,
        )  # fmt: skip
        result = _run(fetch(plan))
    else:
        result = _run(slowloris(args.port, args.connections, args.interval, args.duration))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
