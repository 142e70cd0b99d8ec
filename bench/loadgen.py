"""Running a load against 127.0.0.1 and reading its figures: wrk when present, else Python.

wrk (C, from Debian's package) measures every closed-loop GET; it is much cheaper per request
than any Python client, which matters on a 2-core machine where the load generator shares the
cores with the server. When wrk is absent (a fresh CI machine) the same loads run through
bench.clients, so the smoke test needs nothing but Python. Uploads, the slow lane of the
head-of-line test and the slow-header clients always run through bench.clients.

Each load runs in its own process; its CPU time (user + system, from wait4) is reported with
its figures, so a reader sees when the load generator, not the server, was the limit.
"""

from __future__ import annotations

import json
import math
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from bench.clients import DEFAULT_TIMEOUT_S, LOOPBACK
from bench.procs import Child, Supervisor, wait_rusage

HERE = os.path.dirname(os.path.abspath(__file__))
WRK_SCRIPT = os.path.join(HERE, "wrk_report.lua")
# wrk threads: one per core of this machine; more only adds context switches.
WRK_THREADS = 2
# A load process gets this long past its duration to report before it is killed.
REPORT_GRACE_S = 15.0
# How long a background client may take to get its connections going.
READY_TIMEOUT_S = 10.0
# How much of a failed load process's stderr the error quotes.
ERROR_TAIL_CHARS = 800


class LoadError(Exception):
    """A load generator failed to run or to report (a harness problem, not a server one)."""


@dataclass(frozen=True)
class LoadSpec:
    path: str
    connections: int
    duration: float
    close: bool = False
    method: str = "GET"
    body_bytes: int = 0
    timeout: float = DEFAULT_TIMEOUT_S
    tls: bool = False  # HTTPS (bench.tls)
    # A Connection: close load wrk may run: the servers it is run against close as asked, so
    # wrk does reconnect per request, at a fraction of the Python client's CPU per connect.
    close_by_wrk: bool = False


@dataclass
class LoadResult:
    tool: str
    requests: int
    ok: int
    duration_s: float
    bytes: int
    latency_ms: dict[str, float]
    errors: dict[str, int]
    cpu_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        """Successful (2xx) responses per second: errors never count as throughput."""
        return self.ok / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "requests": self.requests,
            "ok": self.ok,
            "rps": round(self.rps, 1),
            "duration_s": self.duration_s,
            "bytes": self.bytes,
            "latency_ms": self.latency_ms,
            "errors": self.errors,
            "loadgen_cpu_s": round(self.cpu_s, 3),
            **self.extra,
        }


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def choose_tool(preference: str) -> str:
    if preference == "auto":
        return "wrk" if wrk_available() else "python"
    if preference == "wrk" and not wrk_available():
        raise LoadError("--loadgen wrk asked for, but wrk is not installed (apt-get install wrk)")
    return preference


def _client_argv(port: int, connections: int, duration: float, mode: str) -> list[str]:
    return [
        sys.executable, "-m", "bench.clients", "--port", str(port),
        "--connections", str(connections), "--duration", f"{duration:g}", mode,
    ]  # fmt: skip


def fetch_argv(spec: LoadSpec, port: int) -> list[str]:
    argv = _client_argv(port, spec.connections, spec.duration, "fetch")
    argv += ["--path", spec.path, "--method", spec.method, "--timeout", f"{spec.timeout:g}"]
    if spec.body_bytes:
        argv += ["--body-bytes", str(spec.body_bytes)]
    if spec.close:
        argv.append("--close")
    if spec.tls:
        argv.append("--tls")
    return argv


def slowloris_argv(port: int, connections: int, duration: float, interval: float) -> list[str]:
    argv = _client_argv(port, connections, duration, "slowloris")
    return [*argv, "--interval", f"{interval:g}"]


def _wrk_runs(spec: LoadSpec) -> bool:
    """wrk takes GET loads: keep-alive ones, and over TLS Connection: close ones too (every TLS
    profile honours it, so wrk does make a new connection, and a handshake, per request; a
    Python client would spend more CPU on the handshakes than the servers do)."""
    return (
        spec.method == "GET"
        and not spec.body_bytes
        and (not spec.close or spec.tls or spec.close_by_wrk)
    )


def wrk_argv(spec: LoadSpec, port: int) -> list[str]:
    if not _wrk_runs(spec):
        raise LoadError("wrk runs only keep-alive GET loads here; the rest go to bench.clients")
    argv = [
        "wrk", "-t", str(min(WRK_THREADS, spec.connections)), "-c", str(spec.connections),
        "-d", f"{_wrk_seconds(spec.duration)}s", "--timeout", f"{spec.timeout:g}s",
        "-s", WRK_SCRIPT,
    ]  # fmt: skip
    if spec.close:
        argv += ["-H", "Connection: close"]
    scheme = "https" if spec.tls else "http"
    return [*argv, f"{scheme}://{LOOPBACK}:{port}{spec.path}"]


def _wrk_seconds(duration: float) -> int:
    """wrk takes whole seconds only; a shorter load is rounded up, never down to nothing."""
    return max(1, math.ceil(duration))


def run_load(sup: Supervisor, spec: LoadSpec, port: int, tool: str) -> LoadResult:
    """Runs one load in the foreground and returns its figures."""
    # Connection: close loads go through the Python client, which really closes after each
    # response; wrk reuses a connection whenever the server answers keep-alive (uWSGI does,
    # whatever the request asked for).
    use_wrk = tool == "wrk" and _wrk_runs(spec)
    duration = _wrk_seconds(spec.duration) if use_wrk else spec.duration
    argv = wrk_argv(spec, port) if use_wrk else fetch_argv(spec, port)
    child = start(sup, "wrk" if use_wrk else "pyclient", argv)
    report, cpu_s = finish(sup, child, duration)
    return to_result(report, "wrk" if use_wrk else "python", cpu_s)


def start(sup: Supervisor, name: str, argv: list[str]) -> Child:
    # stderr to an unnamed temporary file: quoted if the process fails, gone when it is closed.
    errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed by Supervisor.stop
    return sup.spawn(name, argv, cwd=os.path.dirname(HERE), stdout=subprocess.PIPE, stderr=errors)


def wait_ready(child: Child) -> None:
    """Waits for a background client's READY line (its connections are under way)."""
    stdout = child.popen.stdout
    assert stdout is not None
    readable, _, _ = select.select([stdout], [], [], READY_TIMEOUT_S)
    if not readable or stdout.readline().strip() != b"READY":
        raise LoadError(f"{child.name} did not get its connections going: {stderr_tail(child)}")


def finish(sup: Supervisor, child: Child, duration: float) -> tuple[dict[str, Any], float]:
    """Waits for a load process to end by itself; returns its JSON report and its CPU time."""
    try:
        status, cpu_s = wait_rusage(child, time.monotonic() + duration + REPORT_GRACE_S)
        stdout = child.popen.stdout
        output = stdout.read().decode(errors="replace") if stdout is not None else ""
        reports = [line for line in output.splitlines() if line.startswith("{")]
        if status != 0 or not reports:
            raise LoadError(f"{child.name} exited with {status}, no report: {stderr_tail(child)}")
    finally:
        sup.stop(child)
    report: dict[str, Any] = json.loads(reports[-1])
    return report, cpu_s


def stderr_tail(child: Child) -> str:
    """The end of what a load process wrote to stderr (read before the process is stopped)."""
    if child.stderr is None or child.stderr.closed:
        return "(no stderr)"
    child.stderr.seek(0)
    text: str = child.stderr.read().decode(errors="replace").strip()
    return text[-ERROR_TAIL_CHARS:] or "(empty stderr)"


def to_result(report: dict[str, Any], tool: str, cpu_s: float) -> LoadResult:
    errors = report["errors"]
    requests = int(report["requests"])
    return LoadResult(
        tool=tool,
        requests=requests,
        ok=int(report.get("ok", requests - errors["status"])),
        duration_s=float(report["duration_s"]),
        bytes=int(report["bytes"]),
        latency_ms=report["latency_ms"],
        errors=errors,
        cpu_s=cpu_s,
    )
