"""What a result depends on besides the servers: the machine, the tools, the fixed work.

Also prepares a run's work directory: the files the static scenarios fetch and the Django
database, made before any server starts so that no worker races to create them.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from typing import Any

from bench.app import spin
from bench.djangoapp.db import create_database
from bench.scenarios import STATIC_FILES

# Calibration: time this many loops of bench.app.spin (about 60 ms), best of a few runs (the
# least disturbed), after a warm-up: a core at rest runs this loop up to 1.7x slower for the first
# few hundred milliseconds (frequency scaling), which would make the "5 ms" of work too small.
CALIBRATION_LOOPS = 1_000_000
CALIBRATION_RUNS = 5
CALIBRATION_WARMUP_S = 0.5
TOOL_TIMEOUT_S = 10


def calibrate_cpu_loops_per_ms() -> int:
    warm_until = time.monotonic() + CALIBRATION_WARMUP_S
    while time.monotonic() < warm_until:
        spin(CALIBRATION_LOOPS // 10)
    best = float("inf")
    for _ in range(CALIBRATION_RUNS):
        t0 = time.perf_counter()
        spin(CALIBRATION_LOOPS)
        best = min(best, time.perf_counter() - t0)
    return max(1, round(CALIBRATION_LOOPS / (best * 1000)))


def prepare_files(files_dir: str) -> None:
    os.makedirs(files_dir, exist_ok=True)
    for name, size in STATIC_FILES.items():
        with open(os.path.join(files_dir, name), "wb") as f:
            f.write(os.urandom(size))


def prepare_database(workdir: str) -> str:
    path = os.path.join(workdir, "django.sqlite3")
    if os.path.exists(path):
        os.unlink(path)
    create_database(path)
    return path


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gib() -> float:
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return round(kib / 2**20, 1)


def tool_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return "not installed"
    text = (out.stdout + out.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def _git_dirs(repo_root: str) -> tuple[str, str]:
    """(this checkout's git directory, the one holding the refs). In a worktree .git is a
    file naming its own directory, whose ``commondir`` leads to the main one's refs."""
    git = os.path.join(repo_root, ".git")
    if not os.path.isfile(git):
        return git, git
    with open(git) as f:
        own = os.path.join(repo_root, f.read().strip().removeprefix("gitdir: "))
    try:
        with open(os.path.join(own, "commondir")) as f:
            return own, os.path.normpath(os.path.join(own, f.read().strip()))
    except FileNotFoundError:
        return own, own


def git_commit(repo_root: str) -> str:
    """The checked-out commit, read from .git directly (no git process needed)."""
    try:
        git, common = _git_dirs(repo_root)
        with open(os.path.join(git, "HEAD")) as f:
            head = f.read().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[5:]
        ref_path = os.path.join(common, ref)
        if os.path.exists(ref_path):
            with open(ref_path) as f:
                return f.read().strip()
        with open(os.path.join(common, "packed-refs")) as f:
            for line in f:
                if line.rstrip().endswith(" " + ref):
                    return line.split()[0]
    except OSError:
        pass
    return "unknown"


def now_utc() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def describe(repo_root: str, started: str) -> dict[str, Any]:
    return {
        "date": started,
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _mem_total_gib(),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "commit": git_commit(repo_root),
    }
