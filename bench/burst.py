"""The "burst" scenario: a quiet server, a 10 s burst, quiet again; what a pool that follows the
load buys (memory at rest) and what it costs (latency while it grows).

For each profile: start the server, let it settle, read the PSS of its process tree (idle), run
a burst of BURST_CONNECTIONS keep-alive clients on /slow?ms=BURST_MS for BURST_S seconds (p50
and p99 of that load), then leave it idle REST_S seconds and read the PSS again (at rest, once
a scaling pool has shrunk back). Every profile has at most 16 request slots (4 x 4), as in the
main suite; the scaling ones start with 1 x 4 and may grow to 4 x 4.

    python -m bench.burst                       # every profile whose server is installed
    python -m bench.burst --only maitred-scaling,maitred-4x4 --out /tmp/burst
    python -m bench.burst --rounds 8            # the ratios below, median and spread

A burst's p99 on this shared 2-core machine moves by a factor of ten between runs (85 to 800 ms
for the same fixed 4x4), so one run compares nothing. With --rounds N every profile runs N
times, the order alternating from round to round (bench.rounds), and each round gives the
ratios the goals are stated in, within that round: burst p99 over the fixed 4x4's, PSS at
rest over the fixed 1x4's. The report gives their median and their range.

uWSGI runs from bench/.venvs/uwsgi (made by the main suite, or by hand: a venv with
uwsgi==2.0.31); without it, its profile is reported as skipped. Loads go to 127.0.0.1 only and
are bounded in time (wrk -d, or the suite's Python client); every process is stopped by pid.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from bench import loadgen, machine, rounds, servers
from bench.loadgen import LoadSpec
from bench.memory import tree_memory
from bench.procs import Supervisor
from bench.profiles import APP, LISTENING, THREADS, WORKERS, Profile

BURST_CONNECTIONS = 32
BURST_MS = 20  # the endpoint's time: a request that waits on a database
BURST_S = 10.0
SETTLE_S = 5.0  # idle before the first reading: the start's imports and allocations are done
SCALE_DOWN_AFTER = 10  # the scaling profiles' delay before retiring a surplus worker
REST_S = 25.0  # idle after the burst before the second reading: the delay, and the drain
# The profiles whose size follows the load; a fixed pool's memory at rest is read after
# SETTLE_S, as it has nothing to give back.
SCALING = frozenset({"maitred-scaling", "maitred-scaling-preload", "uwsgi-cheaper"})
P99_BASE, PSS_BASE = "maitred-4x4", "maitred-1x4"  # what the goals compare with
P99_GOAL, PSS_GOAL = 1.3, 1.2
HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)

_MAITRED = ("{python}", "-m", "maitred", "--bind", "{bind}", "--threads", str(THREADS))
_UWSGI = (
    "{venv}/bin/uwsgi", "--http11-socket", "{bind}", "--master", "--threads", str(THREADS),
    "--module", APP, "--listen", "1024", "--die-on-term", "--need-app", "--disable-logging",
)  # fmt: skip

PROFILES: tuple[Profile, ...] = (
    Profile("maitred-1x4", f"maitred fixed 1x{THREADS}", (*_MAITRED, "-w", "1", APP),
            package="maitred", port_from_log=LISTENING),
    Profile("maitred-4x4", f"maitred fixed {WORKERS}x{THREADS}",
            (*_MAITRED, "-w", str(WORKERS), APP), package="maitred", port_from_log=LISTENING),
    Profile("maitred-scaling", f"maitred 1..{WORKERS} x{THREADS}, --scale-down-after "
            f"{SCALE_DOWN_AFTER}",
            (*_MAITRED, "-w", "1", "--max-workers", str(WORKERS), "--scale-down-after",
             str(SCALE_DOWN_AFTER), APP), package="maitred", port_from_log=LISTENING),
    # The same pool with the app imported once, in the master: a new worker costs a fork.
    Profile("maitred-scaling-preload", f"maitred 1..{WORKERS} x{THREADS}, --preload",
            (*_MAITRED, "-w", "1", "--max-workers", str(WORKERS), "--scale-down-after",
             str(SCALE_DOWN_AFTER), "--preload", APP), package="maitred",
            port_from_log=LISTENING),
    # uWSGI's cheaper subsystem, busyness algorithm: 1 worker at start and at least, 4 at most;
    # it checks every --cheaper-overload seconds and retires a worker after
    # --cheaper-busyness-multiplier checks under --cheaper-busyness-min percent busy.
    Profile("uwsgi-cheaper", f"uWSGI cheaper busyness 1..{WORKERS} x{THREADS}",
            (*_UWSGI, "--processes", str(WORKERS), "--cheaper-algo", "busyness", "--cheaper",
             "1", "--cheaper-initial", "1", "--cheaper-step", "1", "--cheaper-overload", "1",
             "--cheaper-busyness-multiplier", str(SCALE_DOWN_AFTER), "--cheaper-busyness-min",
             "20", "--cheaper-busyness-max", "70", "--cheaper-busyness-backlog-alert", "4"),
            venv="uwsgi", package="uwsgi"),
)  # fmt: skip


@dataclass
class BurstResult:
    profile: str
    title: str
    status: str
    idle_pss_mib: float = 0.0
    rest_pss_mib: float = 0.0
    rest_processes: int = 0
    burst: dict[str, Any] | None = None
    message: str = ""
    load_average: float = 0.0  # the machine's, at the burst's start: how shared it was

    @property
    def p99(self) -> float | None:
        return float(self.burst["latency_ms"]["p99"]) if self.ok and self.burst else None

    @property
    def rest_pss(self) -> float | None:
        return self.rest_pss_mib if self.ok else None

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.burst is not None


def _mib(kib: int) -> float:
    return round(kib / 1024, 1)


def run_profile(
    sup: Supervisor, profile: Profile, env: servers.ServerEnv, tool: str
) -> BurstResult:
    result = BurstResult(profile.name, profile.title, "ok")
    venv = os.path.join(HERE, ".venvs", profile.venv) if profile.venv else None
    if venv is not None and not os.path.exists(os.path.join(venv, "bin", profile.venv)):
        result.status, result.message = "skipped", f"{venv} has no {profile.venv}"
        return result
    try:
        running = servers.start_profile(sup, profile, env, venv, "/hello")
    except servers.ServerFailed as exc:
        result.status, result.message = "failed", str(exc)
        return result
    try:
        time.sleep(SETTLE_S)
        result.idle_pss_mib = _mib(tree_memory(running.roots()).pss_kib)
        spec = LoadSpec(f"/slow?ms={BURST_MS}", BURST_CONNECTIONS, BURST_S)
        result.load_average = round(os.getloadavg()[0], 2)
        result.burst = loadgen.run_load(sup, spec, running.port, tool).as_dict()
        time.sleep(REST_S if profile.name in SCALING else SETTLE_S)
        running.check_alive()
        rest = tree_memory(running.roots())
        result.rest_pss_mib, result.rest_processes = _mib(rest.pss_kib), rest.processes
    except (servers.ServerFailed, loadgen.LoadError) as exc:
        result.status, result.message = "failed", str(exc)
    finally:
        for child in running.children:
            sup.stop(child)
    return result


def table(results: list[BurstResult]) -> str:
    """One round's figures, a row per profile."""
    lines = [
        "| profile | idle PSS | burst req/s | burst p50 | burst p99 | errors | PSS at rest "
        "(processes) | load average |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if not r.ok or r.burst is None:
            lines.append(f"| {r.title} | {r.status}: {r.message[:80]} | | | | | | |")
            continue
        lat = r.burst["latency_ms"]
        errors = sum(r.burst["errors"].values())
        lines.append(
            f"| {r.title} | {r.idle_pss_mib} MiB | {r.burst['rps']:,.0f} | {lat['p50']:.1f} ms "
            f"| {lat['p99']:.1f} ms | {errors} | {r.rest_pss_mib} MiB ({r.rest_processes}) "
            f"| {r.load_average} |"
        )
    return "\n".join(lines) + "\n"


def _spread(summary: rounds.RatioSummary | None, goal: float) -> str:
    if summary is None:
        return "-"
    meets = "meets" if summary.high <= goal else "fails" if summary.low > goal else "mixed"
    return f"{summary.median:.2f} ({summary.low:.2f}-{summary.high:.2f}; {meets} {goal:g}x)"


def summary(by_round: list[list[BurstResult]]) -> str:
    """Per profile over the rounds: its p99 and PSS at rest, and the same-round ratios the goals
    are stated in (median, lowest-highest, and whether every round met the goal)."""
    lines = [
        f"{len(by_round)} rounds, the order alternating. Ratios are within each round: burst "
        f"p99 over {P99_BASE}'s, PSS at rest over {PSS_BASE}'s.",
        "",
        "| profile | burst p99, median (range) | p99 ratio | PSS at rest, median | "
        "PSS ratio | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    named = {r.profile: r for r in by_round[0]}
    p99_base = [next(r.p99 for r in rnd if r.profile == P99_BASE) for rnd in by_round]
    pss_base = [next(r.rest_pss for r in rnd if r.profile == PSS_BASE) for rnd in by_round]
    for name, first in named.items():
        runs = [next(r for r in rnd if r.profile == name) for rnd in by_round]
        p99s = [r.p99 for r in runs if r.p99 is not None]
        if not p99s:
            lines.append(f"| {first.title} | {first.status}: {first.message[:60]} | | | | |")
            continue
        p99_ratio = rounds.summarize(rounds.paired_ratios([r.p99 for r in runs], p99_base))
        pss_ratio = rounds.summarize(rounds.paired_ratios([r.rest_pss for r in runs], pss_base))
        rest = rounds.median([r.rest_pss_mib for r in runs if r.ok])
        errors = sum(sum(r.burst["errors"].values()) for r in runs if r.ok and r.burst)
        lines.append(
            f"| {first.title} | {rounds.median(p99s):.0f} ms ({min(p99s):.0f}-{max(p99s):.0f}) "
            f"| {_spread(p99_ratio, P99_GOAL)} | {rest:.1f} MiB | "
            f"{_spread(pss_ratio, PSS_GOAL)} | {errors} |"
        )
    return "\n".join(lines) + "\n"


def report(by_round: list[list[BurstResult]]) -> str:
    head = (
        f"Burst: {BURST_CONNECTIONS} keep-alive clients on /slow?ms={BURST_MS} for "
        f"{BURST_S:g} s, between {SETTLE_S:g} s idle and {REST_S:g} s idle (fixed pools: "
        f"{SETTLE_S:g} s).\n\n"
    )
    parts = [head, summary(by_round)] if len(by_round) > 1 else [head]
    for number, results in enumerate(by_round, 1):
        title = f"\n## round {number}\n\n" if len(by_round) > 1 else ""
        parts.append(title + table(results))
    return "".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.burst", description=__doc__)
    parser.add_argument("--only", default="", help="comma-separated profile names")
    parser.add_argument("--out", default="", help="directory for burst.md and burst.json")
    parser.add_argument("--loadgen", default="auto", choices=("auto", "wrk", "python"))
    parser.add_argument("--rounds", type=int, default=1, help="rounds, in alternating order")
    args = parser.parse_args(argv)
    chosen = {p.name: p for p in PROFILES if not args.only or p.name in args.only.split(",")}
    if args.rounds < 1 or not chosen:
        parser.error("--rounds must be at least 1, and --only name a profile")
    out = args.out or tempfile.mkdtemp(prefix="maitred-burst-")
    os.makedirs(out, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="work-", dir=out)
    files = os.path.join(workdir, "files")
    machine.prepare_files(files)
    app_env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([os.path.join(REPO_ROOT, "src"), REPO_ROOT]),
        "PYTHONUNBUFFERED": "1",
        "BENCH_FILES_DIR": files,
    }
    env = servers.ServerEnv(workdir, files, REPO_ROOT, app_env)
    tool = loadgen.choose_tool(args.loadgen)
    by_round = []
    with Supervisor() as sup:
        for order in rounds.round_orders(list(chosen), args.rounds):
            ran = {name: run_profile(sup, chosen[name], env, tool) for name in order}
            by_round.append([ran[name] for name in chosen])  # rows in the profiles' order
    text = report(by_round)
    with open(os.path.join(out, "burst.md"), "w") as fh:
        fh.write(text)
    with open(os.path.join(out, "burst.json"), "w") as fh:
        json.dump([[r.__dict__ for r in rnd] for rnd in by_round], fh, indent=1)
    sys.stdout.write(text + f"\n(written to {out}; the servers' logs to {workdir})\n")
    failed = any(r.status == "failed" for rnd in by_round for r in rnd)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
