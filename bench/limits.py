"""How fast the front refuses: the rate of 429s a rate-limited location answers, beside the
hello rate of the same server in the same run.

One maitred (the suite's app, WORKERS x THREADS) runs with a location whose rate is one request
a minute, with no burst, so past its first request every request to it is refused by the front
(429, Retry-After) without reaching a worker. The same load (CONNECTIONS keep-alive clients,
DURATION seconds) then runs on /hello, answered by the app, and on the limited path; the report
gives both rates and their ratio. A refusal costs the front the head's parse, one lookup in the
shared limit table and the answer; a hello costs that plus a round trip to a worker thread.

    python -m bench.limits                 # one run, about 25 s
    python -m bench.limits --fronts 2      # the same with two fronts sharing the table

Loads go to 127.0.0.1 only and are bounded in time; every process is stopped by pid.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from bench import loadgen, machine, servers
from bench.loadgen import LoadSpec
from bench.procs import Supervisor
from bench.profiles import APP, LISTENING, THREADS, WORKERS, Profile

CONNECTIONS = 16
DURATION = 10.0
LIMITED = "/limited/"
CONFIG = f"""
[[locations]]
path = "{LIMITED}"
rate = "1r/m"
"""
HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)


def run(fronts: int, tool: str) -> str:
    workdir = tempfile.mkdtemp(prefix="maitred-limits-")
    files = os.path.join(workdir, "files")
    machine.prepare_files(files)
    config = os.path.join(workdir, "maitred.toml")
    with open(config, "w") as fh:
        fh.write(CONFIG)
    argv = (
        "{python}", "-m", "maitred", "--bind", "{bind}", "-w", str(WORKERS),
        "--threads", str(THREADS), "--fronts", str(fronts), "-c", config, APP,
    )  # fmt: skip
    profile = Profile("maitred-limits", "maitred with a rate-limited location", argv,
                      package="maitred", port_from_log=LISTENING)  # fmt: skip
    app_env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([os.path.join(REPO_ROOT, "src"), REPO_ROOT]),
        "PYTHONUNBUFFERED": "1",
        "BENCH_FILES_DIR": files,
    }
    env = servers.ServerEnv(workdir, files, REPO_ROOT, app_env)
    with Supervisor() as sup:
        running = servers.start_profile(sup, profile, env, None, "/hello")
        try:
            hello = loadgen.run_load(
                sup, LoadSpec("/hello", CONNECTIONS, DURATION), running.port, tool
            )
            refused = loadgen.run_load(
                sup, LoadSpec(LIMITED, CONNECTIONS, DURATION), running.port, tool
            )
            running.check_alive()
        finally:
            for child in running.children:
                sup.stop(child)
    refusals = refused.requests / refused.duration_s  # all but the first are 429s
    return (
        f"maitred --fronts {fronts}, {WORKERS}x{THREADS}, {CONNECTIONS} keep-alive connections, "
        f"{DURATION:.0f} s each ({hello.tool}):\n"
        f"  hello (app)        {hello.rps:9,.0f} req/s  p99 {p99(hello):.2f} ms\n"
        f"  429 (front)        {refusals:9,.0f} req/s  p99 {p99(refused):.2f} ms"
        f"  ({refused.ok} of {refused.requests} not refused)\n"
        f"  ratio 429 / hello  {refusals / max(hello.rps, 1):9.2f}x\n"
        f"(servers' logs in {workdir})\n"
    )


def p99(result: loadgen.LoadResult) -> float:
    return result.latency_ms.get("p99", 0.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.limits", description=__doc__)
    parser.add_argument("--fronts", type=int, default=1)
    parser.add_argument("--loadgen", default="auto", choices=("auto", "wrk", "python"))
    args = parser.parse_args(argv)
    try:
        report = run(args.fronts, loadgen.choose_tool(args.loadgen))
    except (servers.ServerFailed, loadgen.LoadError) as exc:
        sys.stderr.write(f"failed: {exc}\n")
        return 1
    sys.stdout.write(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
