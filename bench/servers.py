"""Starting one profile's processes and knowing when they are ready to serve.

A server is ready when GET on its readiness path answers 200 through the port clients will use
(through nginx, for the nginx profiles): listening alone is not enough, since pre-fork servers
listen before their workers have imported the app. A server that exits, or is not ready in
time, raises ServerFailed with the end of its log, which the harness reports as the result.
"""

from __future__ import annotations

import http.client
import os
import re
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field

from bench.nginx import UPSTREAM_MODES, nginx_argv, nginx_binary, write_config
from bench.procs import Child, Supervisor
from bench.profiles import Profile
from bench.tls import CertificateError, make_certificate

HOST = "127.0.0.1"
# Pre-fork servers import the app in every worker; on 2 busy cores that can take seconds.
START_TIMEOUT_S = 60.0
POLL_S = 0.1
PROBE_TIMEOUT_S = 2.0
LOG_TAIL_LINES = 8
HELP_TIMEOUT_S = 30.0


class ServerFailed(Exception):
    """The server did not start, or stopped while it should have been serving."""


@dataclass(frozen=True)
class ServerEnv:
    """What every server of a run shares."""

    workdir: str
    files_dir: str
    repo_root: str
    app_env: dict[str, str]


@dataclass
class Running:
    profile: Profile
    port: int
    static_prefix: str
    argv: list[str]
    children: list[Child] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)

    def roots(self) -> list[int]:
        return [child.pid for child in self.children]

    def check_alive(self) -> None:
        for child in self.children:
            status = child.popen.poll()
            if status is not None:
                raise ServerFailed(f"{child.name} exited with status {status}")


def free_port() -> int:
    """A port free right now, for servers that cannot report the one they bound.

    Another process could take it before the server binds it; on a machine that runs only this
    benchmark that does not happen, and the server would fail loudly if it did.
    """
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def server_help(argv_prefix: list[str]) -> str:
    try:
        out = subprocess.run(
            [*argv_prefix, "--help"], capture_output=True, text=True, timeout=HELP_TIMEOUT_S
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout + out.stderr


def start_profile(
    sup: Supervisor, profile: Profile, env: ServerEnv, venv: str | None, ready_path: str
) -> Running:
    """Starts the profile's processes (app server, then nginx) and waits until it serves."""
    running = Running(profile, 0, "/file/", [])
    port = 0
    try:
        cert = make_certificate(env.workdir) if profile.tls else None
    except CertificateError as exc:
        raise ServerFailed(str(exc)) from None
    if profile.server is not None:
        argv, port = _server_argv(profile, env, venv, cert)
        if profile.static_option and profile.static_option in server_help(_program(argv)):
            argv[-1:-1] = [profile.static_option, f"/static={env.files_dir}"]
            running.static_prefix = "/static/"
        running.argv = argv
        log = os.path.join(env.workdir, f"{profile.name}.log")
        child = _spawn_logged(sup, profile.name, argv, env, log)
        running.children.append(child)
        running.logs.append(log)
        if profile.port_from_log and profile.nginx is None:
            port = _port_from_log(profile.port_from_log, child, log)
    if profile.nginx is not None:
        port = _start_nginx(sup, profile, env, running, cert)
        running.static_prefix = "/static/"
    running.port = port
    _wait_ready(running, ready_path.replace("{static}", running.static_prefix), profile.tls)
    return running


def _server_argv(
    profile: Profile, env: ServerEnv, venv: str | None, cert: tuple[str, str] | None
) -> tuple[list[str], int]:
    """The server's argv, and its port when the harness chose one (0: it reports its own)."""
    assert profile.server is not None
    socket_path = os.path.join(env.workdir, "app.sock")
    if profile.nginx in UPSTREAM_MODES:
        port, bind = 0, f"unix:{socket_path}"
    else:
        port = 0 if profile.port_from_log else free_port()
        bind = f"{HOST}:{port}"
    values = {"python": sys.executable, "venv": venv or "", "host": HOST, "port": str(port)}
    values["bind"] = bind
    values["socket"] = socket_path  # for a server that takes a bare path (uWSGI's --socket)
    if cert is not None and profile.nginx is None:  # behind nginx, nginx does the TLS
        values["certfile"], values["keyfile"] = cert
    return [part.format(**values) for part in profile.server], port


def _spawn_logged(sup: Supervisor, name: str, argv: list[str], env: ServerEnv, log: str) -> Child:
    with open(log, "wb") as out:
        return sup.spawn(
            name, argv, env=env.app_env, cwd=env.repo_root, stdout=out, stderr=subprocess.STDOUT
        )


def _program(argv: list[str]) -> list[str]:
    """The argv that starts the program, before its first long option ("python -m maitred")."""
    options = [i for i, part in enumerate(argv) if part.startswith("--")]
    return argv[: options[0]] if options else argv


def _port_from_log(pattern_text: str, child: Child, log: str) -> int:
    pattern = re.compile(pattern_text)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        match = pattern.search(_read(log))
        if match:
            return int(match.group(1))
        if child.popen.poll() is not None:
            raise ServerFailed(f"exited with status {child.popen.returncode}: {_tail(log)}")
        time.sleep(POLL_S)
    raise ServerFailed(f"no 'listening' line in {START_TIMEOUT_S:.0f} s: {_tail(log)}")


def _start_nginx(
    sup: Supervisor,
    profile: Profile,
    env: ServerEnv,
    running: Running,
    cert: tuple[str, str] | None,
) -> int:
    binary = nginx_binary()
    if binary is None:
        raise ServerFailed("nginx is not installed (apt-get install nginx)")
    port = free_port()
    upstream = os.path.join(env.workdir, "app.sock") if profile.nginx in UPSTREAM_MODES else None
    config = write_config(env.workdir, env.files_dir, port, upstream, profile.nginx or "", cert)
    log = os.path.join(env.workdir, "nginx.log")
    argv = nginx_argv(binary, env.workdir, config)
    running.children.append(_spawn_logged(sup, "nginx", argv, env, log))
    running.logs.append(log)
    # Both commands in one line, as a shell would start them side by side.
    running.argv = [*running.argv, "&", *argv] if running.argv else argv
    return port


def _wait_ready(running: Running, path: str, tls: bool) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            running.check_alive()
        except ServerFailed as exc:
            raise ServerFailed(f"{exc}: {_logs_tail(running)}") from None
        status = _probe(running.port, path, tls)
        if status == 200:
            return
        last = f"status {status}" if status else "no answer"
        time.sleep(POLL_S)
    raise ServerFailed(
        f"GET {path} not 200 in {START_TIMEOUT_S:.0f} s ({last}): {_logs_tail(running)}"
    )


def _probe(port: int, path: str, tls: bool) -> int | None:
    conn = (
        http.client.HTTPSConnection(HOST, port, timeout=PROBE_TIMEOUT_S, context=_unverified())
        if tls
        else http.client.HTTPConnection(HOST, port, timeout=PROBE_TIMEOUT_S)
    )
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def _unverified() -> ssl.SSLContext:
    """The run's self-signed certificate (bench.tls), on loopback: nothing to verify."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _logs_tail(running: Running) -> str:
    return " ".join(_tail(log) for log in running.logs)


def _read(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _tail(log: str) -> str:
    lines = [line for line in _read(log).splitlines() if line.strip()]
    return " | ".join(lines[-LOG_TAIL_LINES:]) or "(empty log)"
