"""Getting each server onto the machine: peers into virtualenvs, nginx and wrk from Debian.

A peer lives in bench/.venvs/NAME, made from this interpreter, with its pinned server and the
shared app requirements (Django). A marker file written after a successful install records what
was installed, so a run reuses a venv only when it is complete and current. Whatever cannot be
installed raises InstallError, which the harness reports as that profile's result.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

from bench.procs import Supervisor, wait_rusage
from bench.profiles import APP_REQUIREMENTS, VENVS

HERE = os.path.dirname(os.path.abspath(__file__))
VENVS_DIR = os.path.join(HERE, ".venvs")
MARKER = "bench-requirements.txt"
# pip compiles uWSGI from source: a few minutes on this 2-core machine at worst.
INSTALL_TIMEOUT_S = 900.0
APT_TIMEOUT_S = 600.0
# Lines of a failed install's log quoted in the report.
LOG_TAIL_LINES = 5


class InstallError(Exception):
    """A server or tool could not be installed; the message says why."""


def venv_dir(name: str) -> str:
    return os.path.join(VENVS_DIR, name)


def ensure_venv(sup: Supervisor, name: str, allow_install: bool) -> str:
    """Returns the venv's path, creating it first if it is missing or stale."""
    path = venv_dir(name)
    wanted = "\n".join((*VENVS[name], *APP_REQUIREMENTS)) + "\n"
    marker = os.path.join(path, MARKER)
    if os.path.exists(marker) and _read(marker) == wanted:
        return path
    if not allow_install:
        raise InstallError(f"virtualenv {path} is missing or stale (run without --no-install)")
    print(f"  installing {name} into {path} ...", flush=True)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(VENVS_DIR, exist_ok=True)
    log = os.path.join(VENVS_DIR, f"{name}-install.log")
    python = os.path.join(path, "bin", "python")
    _run(sup, f"venv-{name}", [sys.executable, "-m", "venv", path], log, INSTALL_TIMEOUT_S)
    pip = [python, "-m", "pip", "install", "--disable-pip-version-check", "--quiet"]
    _run(sup, f"pip-{name}", [*pip, *VENVS[name], *APP_REQUIREMENTS], log, INSTALL_TIMEOUT_S)
    with open(marker, "w") as f:
        f.write(wanted)
    return path


def package_version(python: str, package: str) -> str:
    """The installed version of a distribution, as the interpreter that runs it sees it."""
    code = f"import importlib.metadata as m; print(m.version({package!r}))"
    try:
        out = subprocess.run(
            [python, "-c", code], capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip()


def ensure_debian_tools(sup: Supervisor, tools: dict[str, str | None], use_apt: bool) -> None:
    """Installs missing Debian packages (tool name -> path or None) when allowed and root."""
    missing = [name for name, path in tools.items() if path is None]
    if not missing or not use_apt or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return
    print(f"  apt-get install {' '.join(missing)} ...", flush=True)
    log = os.path.join(VENVS_DIR, "apt.log")
    os.makedirs(VENVS_DIR, exist_ok=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    try:
        _run(sup, "apt-get", install, log, APT_TIMEOUT_S, env)
    except InstallError:
        # A fresh machine's package lists may be empty: update once, then try again.
        _run(sup, "apt-get", ["apt-get", "update"], log, APT_TIMEOUT_S, env)
        _run(sup, "apt-get", install, log, APT_TIMEOUT_S, env)


def _run(
    sup: Supervisor,
    name: str,
    argv: list[str],
    log: str,
    timeout: float,
    env: dict[str, str] | None = None,
) -> None:
    with open(log, "a") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        child = sup.spawn(name, argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            status, _ = wait_rusage(child, time.monotonic() + timeout)
        finally:
            sup.stop(child)
    if status != 0:
        lines = _read(log).strip().splitlines()
        # Quote the error lines when there are any: pip's warnings can bury them.
        tail = ([line for line in lines if "error" in line.lower()] or lines)[-LOG_TAIL_LINES:]
        command = " ".join(argv[:3])
        raise InstallError(f"{command} failed ({status}), see {log}: " + " | ".join(tail))


def _read(path: str) -> str:
    with open(path, errors="replace") as f:
        return f.read()
