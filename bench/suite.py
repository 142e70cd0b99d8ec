"""Running the selected scenarios against each selected profile, one profile at a time.

For each profile: make sure it is installed, start it, warm every route it will serve, read its
idle memory, then run the scenarios while a sampler records its peak memory, and stop it, also
when something fails. A profile that cannot be installed or started, or whose server dies,
becomes a result saying so; a later profile still runs.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

from bench import cpu, loadgen
from bench.envs import InstallError, ensure_venv, package_version
from bench.loadgen import LoadError, LoadSpec
from bench.memory import PeakSampler, roles_memory, tree_memory
from bench.procs import Supervisor
from bench.profiles import SLOTS, Profile
from bench.scenarios import Scenario, Target, Timing
from bench.servers import Running, ServerEnv, ServerFailed, start_profile

# Profile states, in the order a profile goes through them.
OK = "ok"
NOT_INSTALLED = "not installed"
FAILED_TO_START = "failed to start"
DIED = "server died"
SKIPPED = "skipped"
# Idle memory is read this long after the warm-up's last response: at rest, not within the
# same second, so a server that gives memory back once idle is measured as it idles.
IDLE_SETTLE = 3.0


@dataclass(frozen=True)
class RunPlan:
    scenarios: tuple[Scenario, ...]
    timing: Timing
    tool: str
    allow_install: bool


@dataclass
class ProfileResult:
    profile: Profile
    status: str = OK
    message: str = ""
    version: str = ""
    command: str = ""
    static_prefix: str = ""
    memory: dict[str, Any] = field(default_factory=dict)
    scenarios: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.profile.name,
            "title": self.profile.title,
            "status": self.status,
            "message": self.message,
            "version": self.version,
            "command": self.command,
            "static_prefix": self.static_prefix,
            "memory": self.memory,
            "scenarios": self.scenarios,
        }


def run_profile(sup: Supervisor, profile: Profile, plan: RunPlan, env: ServerEnv) -> ProfileResult:
    result = ProfileResult(profile)
    scenarios = [s for s in plan.scenarios if profile.runs(s.name)]
    if not scenarios:
        return _failed(result, SKIPPED, "none of the selected scenarios applies")
    try:
        venv = ensure_venv(sup, profile.venv, plan.allow_install) if profile.venv else None
    except InstallError as exc:
        return _failed(result, NOT_INSTALLED, str(exc))
    python = f"{venv}/bin/python" if venv else sys.executable
    if profile.package:
        result.version = package_version(python, profile.package)
    ready_path = scenarios[0].spec.path if scenarios else "/hello"
    try:
        running = start_profile(sup, profile, env, venv, ready_path)
    except ServerFailed as exc:
        return _failed(result, FAILED_TO_START, str(exc))
    try:
        result.command = " ".join(running.argv)
        result.static_prefix = running.static_prefix
        _measure(sup, running, scenarios, plan, result)
    finally:
        for child in reversed(running.children):
            sup.stop(child)
    return result


def _failed(result: ProfileResult, status: str, message: str) -> ProfileResult:
    result.status, result.message = status, message
    print(f"  {result.profile.name}: {status}: {message}", flush=True)
    return result


def _measure(
    sup: Supervisor,
    running: Running,
    scenarios: list[Scenario],
    plan: RunPlan,
    result: ProfileResult,
) -> None:
    target = Target(
        sup, running.port, running.static_prefix, plan.tool, plan.timing, running.profile.tls
    )
    try:
        _warm_up(target, scenarios)
        time.sleep(IDLE_SETTLE)
        result.memory["idle"] = tree_memory(running.roots()).as_dict()
        result.memory["idle_roles"] = roles_memory(running.roots())
        with PeakSampler(running.roots) as sampler:
            for scenario in scenarios:
                _run_one(scenario, target, running, result)
                time.sleep(plan.timing.settle)
        result.memory["peak"] = sampler.peak.as_dict()
    except ServerFailed as exc:
        _failed(result, DIED, str(exc))
    except LoadError as exc:
        _failed(result, FAILED_TO_START, f"warm-up failed: {exc}")


def _run_one(scenario: Scenario, target: Target, running: Running, result: ProfileResult) -> None:
    start = cpu.mark(running.roots())
    try:
        outcome = scenario.run(scenario, target).as_dict()
    except LoadError as exc:
        outcome = {"error": str(exc)}
    end = cpu.mark(running.roots())
    outcome["wall_s"] = round(end.wall - start.wall, 1)
    if "error" not in outcome:
        outcome.update(cpu.shares(start, end, outcome["loadgen_cpu_s"]))
    result.scenarios[scenario.name] = outcome
    print(f"  {running.profile.name:<18} {scenario.name:<14} {_brief(outcome)}", flush=True)
    running.check_alive()


def _brief(outcome: dict[str, Any]) -> str:
    """One progress line: the headline figures and where the CPU went."""
    if "error" in outcome:
        return f"ERROR {outcome['error']}"
    m, latency = outcome["measured"], outcome["measured"]["latency_ms"]
    other = outcome["other_cpu_pct"] + outcome["steal_cpu_pct"]
    return (
        f"{m['rps']:>9.1f} req/s  p50 {latency['p50']:>8.2f} ms  p99 {latency['p99']:>8.2f} ms"
        f"  errors {sum(m['errors'].values())}  cpu% server {outcome['server_cpu_pct']:.0f}"
        f" loadgen {outcome['loadgen_cpu_pct']:.0f} kernel {outcome['kernel_cpu_pct']:.0f}"
        f" other {other:.0f}"
    )


def _warm_up(target: Target, scenarios: list[Scenario]) -> None:
    """Touches every route a profile will serve, with every slot busy, before measuring.

    Pre-fork servers import the app in each worker and Django loads lazily; without this the
    first scenario would pay for that start-up.
    """
    paths = dict.fromkeys(s.path(target.static_prefix) for s in scenarios if s.spec.method == "GET")
    for path in paths:
        spec = LoadSpec(path, SLOTS, target.timing.warmup, tls=target.tls)
        # The Python client: wrk cannot run for less than a second, and nothing here is measured.
        loadgen.run_load(target.sup, spec, target.port, "python")
