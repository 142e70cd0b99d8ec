"""The workloads, as one table, and how each one runs against a running server.

Every load goes to 127.0.0.1, runs for a fixed time and is capped in count (bench.clients,
wrk's -d). A scenario returns a ScenarioResult: the measured load, for head-of-line the same
load without slow traffic (the baseline), the background clients' report, and the CPU time all
load processes used while the measured load ran.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from bench import loadgen
from bench.loadgen import LoadResult, LoadSpec
from bench.procs import Supervisor

# Connections of the closed-loop loads: well above the 16 slots, so every server queues.
CONNECTIONS = 50
# Head-of-line: clients parked on a slow route (like a slow database call), and a light fast
# lane that would fit in the slots left free if the server gave them out fairly.
HOL_SLOW_CLIENTS = 8
HOL_SLOW_MS = 300
HOL_FAST_CONNECTIONS = 8
# Slow clients: connections sending their request head a byte at a time.
SLOW_CLIENTS = 300
SLOW_BYTE_INTERVAL_S = 0.2
UPLOAD_CLIENTS = 20
UPLOAD_BYTES = 1024 * 1024
CPU_MS = 5
# Files the static scenarios fetch (written by the harness into the files directory).
STATIC_FILES = {"4k.bin": 4 * 1024, "1m.bin": 1024 * 1024}
STATIC_LABELS = {"4k.bin": "4 KiB", "1m.bin": "1 MiB"}
# Background clients start this long before the measured load and stop this long after it, so
# the whole measurement runs under their pressure.
BACKGROUND_LEAD_S = 1.0


@dataclass(frozen=True)
class Timing:
    duration: float  # each measured load
    warmup: float  # each warm-up load, per route, once per server
    settle: float  # pause between loads, so one load's connections are closed before the next


FULL = Timing(duration=10.0, warmup=1.0, settle=0.5)
QUICK = Timing(duration=1.0, warmup=0.2, settle=0.1)


@dataclass(frozen=True)
class Target:
    sup: Supervisor
    port: int
    static_prefix: str
    tool: str
    timing: Timing
    tls: bool = False  # the server serves HTTPS (a TLS profile)


@dataclass
class ScenarioResult:
    measured: LoadResult
    baseline: LoadResult | None = None
    background: dict[str, Any] = field(default_factory=dict)
    loadgen_cpu_s: float = 0.0  # every load process of the scenario, baseline included

    def as_dict(self) -> dict[str, Any]:
        return {
            "measured": self.measured.as_dict(),
            "baseline": self.baseline.as_dict() if self.baseline else None,
            "background": self.background,
            "loadgen_cpu_s": round(self.loadgen_cpu_s, 3),
        }


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    run: Callable[[Scenario, Target], ScenarioResult]
    spec: LoadSpec

    def path(self, target_static_prefix: str) -> str:
        return self.spec.path.replace("{static}", target_static_prefix)


def _spec(scenario: Scenario, target: Target) -> LoadSpec:
    return replace(
        scenario.spec,
        path=scenario.path(target.static_prefix),
        duration=target.timing.duration,
    )


def run_plain(scenario: Scenario, target: Target) -> ScenarioResult:
    result = loadgen.run_load(target.sup, _spec(scenario, target), target.port, target.tool)
    return ScenarioResult(result, loadgen_cpu_s=result.cpu_s)


def run_head_of_line(scenario: Scenario, target: Target) -> ScenarioResult:
    spec = _spec(scenario, target)
    baseline = loadgen.run_load(target.sup, spec, target.port, target.tool)
    slow = LoadSpec(
        f"/slow?ms={HOL_SLOW_MS}",
        HOL_SLOW_CLIENTS,
        spec.duration + 2 * BACKGROUND_LEAD_S,
        close=spec.close,
    )
    measured, report, cpu_s = _under_background(
        target, spec, loadgen.fetch_argv(slow, target.port), slow.duration
    )
    background = loadgen.to_result(report, "python", cpu_s).as_dict()
    return ScenarioResult(measured, baseline, background, baseline.cpu_s + measured.cpu_s + cpu_s)


def run_slow_clients(scenario: Scenario, target: Target) -> ScenarioResult:
    spec = _spec(scenario, target)
    duration = spec.duration + 2 * BACKGROUND_LEAD_S
    argv = loadgen.slowloris_argv(target.port, SLOW_CLIENTS, duration, SLOW_BYTE_INTERVAL_S)
    measured, report, cpu_s = _under_background(target, spec, argv, duration)
    return ScenarioResult(measured, None, report, measured.cpu_s + cpu_s)


def _under_background(
    target: Target, spec: LoadSpec, argv: list[str], duration: float
) -> tuple[LoadResult, dict[str, Any], float]:
    """Runs the measured load while background clients (argv) keep up their pressure."""
    background = loadgen.start(target.sup, "background", argv)
    try:
        loadgen.wait_ready(background)
        measured = loadgen.run_load(target.sup, spec, target.port, target.tool)
        report, cpu_s = loadgen.finish(target.sup, background, duration)
    finally:
        target.sup.stop(background)
    return measured, report, cpu_s


def run_upload(scenario: Scenario, target: Target) -> ScenarioResult:
    result = run_plain(scenario, target)
    result.measured.extra["mib_per_s"] = round(
        result.measured.ok * UPLOAD_BYTES / 2**20 / (result.measured.duration_s or 1.0), 1
    )
    return result


def _hol(close: bool) -> Scenario:
    mode = "Connection: close" if close else "keep-alive"
    return Scenario(
        f"hol-{'close' if close else 'keepalive'}",
        f"/hello p50/p99 with {HOL_SLOW_CLIENTS} clients on /slow?ms={HOL_SLOW_MS}, {mode}"
        f" ({HOL_FAST_CONNECTIONS} connections; baseline: no slow clients)",
        run_head_of_line,
        LoadSpec("/hello", HOL_FAST_CONNECTIONS, 0, close=close),
    )


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "hello",
        f"GET /hello, keep-alive, {CONNECTIONS} connections",
        run_plain,
        LoadSpec("/hello", CONNECTIONS, 0),
    ),
    Scenario(
        "hello-close",
        f"GET /hello with Connection: close (a new connection per request), {CONNECTIONS}"
        " connections",
        run_plain,
        LoadSpec("/hello", CONNECTIONS, 0, close=True, close_by_wrk=True),
    ),
    _hol(close=False),
    _hol(close=True),
    Scenario(
        "slow-clients",
        f"GET /hello ({CONNECTIONS} connections) while {SLOW_CLIENTS} clients send headers"
        f" a byte every {SLOW_BYTE_INTERVAL_S:g} s",
        run_slow_clients,
        LoadSpec("/hello", CONNECTIONS, 0),
    ),
    *(
        Scenario(
            f"static-{name.split('.')[0]}",
            f"GET a {STATIC_LABELS[name]} file, {CONNECTIONS} connections",
            run_plain,
            LoadSpec("{static}" + name, CONNECTIONS, 0),
        )
        for name in STATIC_FILES
    ),
    Scenario(
        "cpu",
        f"GET /cpu?ms={CPU_MS} (pure-Python work), {CONNECTIONS} connections",
        run_plain,
        LoadSpec(f"/cpu?ms={CPU_MS}", CONNECTIONS, 0),
    ),
    Scenario(
        "upload",
        f"POST 1 MiB to /echo, {UPLOAD_CLIENTS} clients",
        run_upload,
        LoadSpec("/echo", UPLOAD_CLIENTS, 0, method="POST", body_bytes=UPLOAD_BYTES),
    ),
    Scenario(
        "tls-hello",
        f"GET /hello over TLS, keep-alive, {CONNECTIONS} connections",
        run_plain,
        LoadSpec("/hello", CONNECTIONS, 0, tls=True),
    ),
    Scenario(
        "tls-close",
        f"GET /hello over TLS, a new connection (and handshake) per request, {CONNECTIONS}"
        " connections",
        run_plain,
        LoadSpec("/hello", CONNECTIONS, 0, close=True, tls=True),
    ),
    Scenario(
        "django",
        f"GET a Django view (template + sqlite query), {CONNECTIONS} connections",
        run_plain,
        LoadSpec("/django/", CONNECTIONS, 0),
    ),
    Scenario(
        "django-cached",
        "GET the same Django view marked `Cache-Control: s-maxage=60`: hits of the response cache"
        f" in front (maitred-cache, nginx-cache-gunicorn; the others run the view), {CONNECTIONS}"
        " connections",
        run_plain,
        LoadSpec("/django/cached/", CONNECTIONS, 0),
    ),
)

BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}
# Memory is not a load of its own: it is sampled while the loads above run.
MEMORY = "memory"
