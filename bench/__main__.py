"""``python -m bench``: run the benchmark suite and write its report (see bench/README.md).

  python -m bench                  all profiles x all scenarios, about 15 minutes
  python -m bench --quick          maitred only, about 1 s per scenario: the CI smoke test
  python -m bench --only maitred,gunicorn-sync --scenarios hello,cpu

Exit status: 0 when the run completed and every profile that must pass did (in --quick, all the
selected ones; in a full run, maitred when selected); 1 otherwise; 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from bench import envs, loadgen, machine, scenarios
from bench.charts import write_charts
from bench.headline import headline_markdown
from bench.nginx import nginx_binary
from bench.procs import Supervisor
from bench.profiles import BY_NAME as PROFILES_BY_NAME
from bench.profiles import PROFILES, SLOTS
from bench.readme import update_readme
from bench.report import render_markdown
from bench.rounds import merge_rounds, round_orders
from bench.servers import ServerEnv
from bench.suite import OK, SKIPPED, ProfileResult, RunPlan, run_profile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
RESULTS_DIR = os.path.join(HERE, "results")
WORK_DIR = os.path.join(HERE, ".work")
MAITRED = "maitred"
# In a smoke test a measured load that is more than this share errors is a failure.
MAX_ERROR_SHARE = 0.01
# Rounds of a full run: the fewest that give a median and a spread beside it (each profile
# measured early, late, and early again).
FULL_ROUNDS = 3
# The headline table (bench/headline.py), beside results.md.
HEADLINE = "headline.md"
# Directories nginx's workers (an unprivileged user when we run as root) must traverse.
SHARED_DIR_MODE = 0o755


def _names(text: str, known: dict[str, Any], what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})")
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="~1 s per scenario, maitred only")
    parser.add_argument("--only", help="comma-separated profiles (default: all; quick: maitred)")
    parser.add_argument("--scenarios", help="comma-separated scenarios (default: all)")
    parser.add_argument("--duration", type=float, help="seconds per measured load")
    parser.add_argument(
        "--rounds",
        type=int,
        help=f"rounds per profile, in alternating order (default: {FULL_ROUNDS}; quick: 1)",
    )
    parser.add_argument(
        "--out", help="results directory (default: bench/results/DATE; --quick: a temp dir)"
    )
    parser.add_argument(
        "--loadgen",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="auto: wrk when installed, else the Python client",
    )
    parser.add_argument(
        "--no-install", action="store_true", help="never create virtualenvs or apt-get install"
    )
    parser.add_argument(
        "--update-readme",
        action="store_true",
        help="put this run's summary in bench/README.md's Performance section",
    )
    parser.add_argument("--list", action="store_true", help="list profiles and scenarios")
    parser.add_argument(
        "--render", metavar="DIR", help="rebuild DIR's report and charts from its results.json"
    )
    return parser.parse_args(argv)


def _list() -> None:
    print("profiles:")
    for p in PROFILES:
        print(f"  {p.name:<18} {p.title}")
    print("scenarios:")
    for s in scenarios.SCENARIOS:
        print(f"  {s.name:<18} {s.title}")
    print(f"  {scenarios.MEMORY:<18} RSS and PSS of the process tree, idle and peak (always on)")


def _out_dir(args: argparse.Namespace, stamp: str) -> str:
    if args.out:
        path = os.path.abspath(str(args.out))
    elif args.quick:
        path = tempfile.mkdtemp(prefix="maitred-bench-")
    else:
        path = os.path.join(RESULTS_DIR, stamp)
    os.makedirs(path, exist_ok=True)
    return path


def server_path(environ: Mapping[str, str]) -> str:
    """The servers' PYTHONPATH: the caller's first, as it may name the maitred to measure (a
    work tree's src/, where the installed one is another checkout's), then the repository's
    root for the shared app (bench.app), then this checkout's maitred (src/) rather than
    whichever one an editable install points at."""
    parts = (environ.get("PYTHONPATH"), REPO_ROOT, os.path.join(REPO_ROOT, "src"))
    return os.pathsep.join(filter(None, parts))


def _prepare_work(stamp: str, out_dir: str, quick: bool) -> ServerEnv:
    workdir = os.path.join(out_dir, "work") if quick else os.path.join(WORK_DIR, stamp)
    files_dir = os.path.join(workdir, "files")
    machine.prepare_files(files_dir)
    for path in (out_dir, workdir, files_dir):
        os.chmod(path, SHARED_DIR_MODE)
    app_env = {
        **os.environ,
        "PYTHONPATH": server_path(os.environ),
        "PYTHONUNBUFFERED": "1",
        "BENCH_FILES_DIR": files_dir,
        "BENCH_DJANGO_DB": machine.prepare_database(workdir),
        "BENCH_CPU_LOOPS_PER_MS": str(machine.calibrate_cpu_loops_per_ms()),
    }
    return ServerEnv(workdir, files_dir, REPO_ROOT, app_env)


def _problems(result: ProfileResult) -> list[str]:
    """What makes a profile fail a smoke test: not running, or a scenario with no good answer."""
    if result.status == SKIPPED:
        return []
    if result.status != OK:
        return [f"{result.profile.name}: {result.status}: {result.message}"]
    found = []
    for name, outcome in result.scenarios.items():
        where = f"{result.profile.name}/{name}"
        if "error" in outcome:
            found.append(f"{where}: {outcome['error']}")
            continue
        m = outcome["measured"]
        if m["ok"] == 0:
            found.append(f"{where}: no successful request")
        elif sum(m["errors"].values()) > MAX_ERROR_SHARE * max(m["requests"], 1):
            found.append(f"{where}: errors {m['errors']} of {m['requests']} requests")
    return found


def _meta(
    args: argparse.Namespace, plan: RunPlan, env: ServerEnv, profiles: list[str], started: str
) -> dict[str, Any]:
    baseline = MAITRED if MAITRED in profiles else profiles[0]
    tools = {
        "wrk": machine.tool_version(["wrk", "-v"]) if loadgen.wrk_available() else "absent",
        "nginx": machine.tool_version([nginx_binary() or "nginx", "-v"]),
    }
    return {
        **machine.describe(REPO_ROOT, started),
        "command": "python -m bench " + shlex.join(sys.argv[1:])
        if sys.argv[1:]
        else "python -m bench",
        "quick": args.quick,
        "loadgen": plan.tool,
        "tools": ", ".join(f"{k} {v}" for k, v in tools.items()),
        "duration_s": plan.timing.duration,
        "slots": SLOTS,
        "baseline": baseline,
        "cpu_loops_per_ms": int(env.app_env["BENCH_CPU_LOOPS_PER_MS"]),
    }


def _write(out_dir: str, results: dict[str, Any]) -> str:
    """Writes results.json, the charts, results.md and the headline table (also printed: the
    ratios with their spread, ready for the README); returns the report's path."""
    headline = headline_markdown(results)
    with open(os.path.join(out_dir, HEADLINE), "w") as f:
        f.write(headline)
    print(headline, flush=True)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    charts = write_charts(results, out_dir)
    markdown = render_markdown(results, charts)
    path = os.path.join(out_dir, "results.md")
    with open(path, "w") as f:
        f.write(markdown)
    return path


def _selection(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    if args.only:
        profiles = _names(args.only, PROFILES_BY_NAME, "profiles")
    else:
        profiles = [MAITRED] if args.quick else [p.name for p in PROFILES]
    known = {**scenarios.BY_NAME, scenarios.MEMORY: None}
    chosen = _names(args.scenarios, known, "scenarios") if args.scenarios else list(known)
    return profiles, [n for n in chosen if n in scenarios.BY_NAME]


def _plan(args: argparse.Namespace, chosen: list[str]) -> RunPlan:
    timing = scenarios.QUICK if args.quick else scenarios.FULL
    if args.duration:
        timing = replace(timing, duration=args.duration)
    return RunPlan(
        scenarios=tuple(scenarios.BY_NAME[name] for name in chosen),
        timing=timing,
        tool=loadgen.choose_tool(args.loadgen),
        allow_install=not args.no_install,
    )


def _rounds(args: argparse.Namespace) -> int:
    if args.rounds is not None:
        if args.rounds < 1:
            raise SystemExit("--rounds must be at least 1")
        return int(args.rounds)
    return 1 if args.quick else FULL_ROUNDS


def _run_rounds(
    sup: Supervisor, profiles: list[str], plan: RunPlan, env: ServerEnv, count: int
) -> list[list[ProfileResult]]:
    """Every profile once per round, in alternating order; each round's results in the order
    of ``profiles``, so that round i of every profile can be compared."""
    rounds = []
    for number, order in enumerate(round_orders(profiles, count), 1):
        done = {}
        for name in order:
            print(f"[{name}] round {number}/{count}", flush=True)
            done[name] = run_profile(sup, PROFILES_BY_NAME[name], plan, env)
        rounds.append([done[name] for name in profiles])
    return rounds


def run(args: argparse.Namespace) -> int:
    profiles, chosen = _selection(args)
    stamp, started = time.strftime("%Y-%m-%d_%H%M%S"), machine.now_utc()
    with Supervisor() as sup:
        if not args.quick and not args.no_install:
            tools = {"wrk": shutil.which("wrk"), "nginx": nginx_binary()}
            envs.ensure_debian_tools(sup, tools, use_apt=True)
        plan = _plan(args, chosen)
        out_dir = _out_dir(args, stamp)
        env = _prepare_work(stamp, out_dir, args.quick)
        print(
            f"bench: {len(profiles)} profiles x {len(plan.scenarios)} scenarios,"
            f" {plan.timing.duration:g} s each, load from {plan.tool}; results in {out_dir}"
        )
        rounds = _run_rounds(sup, profiles, plan, env, _rounds(args))
    measured = [result for one_round in rounds for result in one_round]
    results = {
        "meta": {**_meta(args, plan, env, profiles, started), "rounds": len(rounds)},
        "scenarios": [{"name": s.name, "title": s.title} for s in plan.scenarios],
        "profiles": merge_rounds([[r.as_dict() for r in one_round] for one_round in rounds]),
        "rounds": [[r.as_dict() for r in one_round] for one_round in rounds],
    }
    print(f"bench: report {_write(out_dir, results)}")
    if args.update_readme:
        update_readme(os.path.join(HERE, "README.md"), results, out_dir)
    must_pass = measured if args.quick else [r for r in measured if r.profile.name == MAITRED]
    problems = [p for r in must_pass for p in _problems(r)] + sup.leaks
    for problem in problems:
        print(f"bench: FAILED {problem}", file=sys.stderr)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        _list()
        return 0
    if args.render:
        with open(os.path.join(args.render, "results.json")) as f:
            results = json.load(f)
        print(f"bench: report {_write(args.render, results)}")
        if args.update_readme:
            update_readme(os.path.join(HERE, "README.md"), results, args.render)
        return 0
    try:
        return run(args)
    except KeyboardInterrupt:
        print("bench: interrupted; every process it started has been stopped", file=sys.stderr)
        return 130
    except (loadgen.LoadError, envs.InstallError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
