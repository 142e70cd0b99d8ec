"""A real HAProxy in front of maitred, for tests: loopback only, in the foreground (``-db``).

:func:`start_haproxy` writes the config a test gives (``{port}`` in it names the frontend's
port, picked here) and starts haproxy on it; :meth:`HAProxy.stop` ends it by its pid.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from rawhttp import fetch
from waiting import wait_until

STOP_TIMEOUT = 15.0
CHECK_INTERVAL_MS = 200  # HAProxy checks each server this often; two failures take it out
# The start of every test's config (loopback, HTTP mode, timeouts far above any test request);
# a test's own config goes on with more `defaults` lines, then its frontends and backends.
PREAMBLE = """\
global
    maxconn 512
defaults
    mode http
    timeout connect 2s
    timeout client 20s
    timeout server 20s
"""


def haproxy_binary() -> str | None:
    return shutil.which("haproxy")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def served_by(port: int) -> str | None:
    """The server that answered a GET / (its name, from an ``X-Served-By`` header the
    config sets with ``%[srv_name]``), or None if none did."""
    try:
        return fetch(port, "GET", "/").header("x-served-by")
    except OSError:
        return None


def wait_serving(port: int, names: set[str]) -> None:
    """Until each of the servers `names` has answered through HAProxy (its checks passed)."""
    seen: set[str | None] = set()

    def everyone() -> bool:
        seen.add(served_by(port))
        return names <= seen

    wait_until(everyone, what=f"{sorted(names)} served through HAProxy")


@dataclass
class HAProxy:
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(STOP_TIMEOUT)


def start_haproxy(tmp_path: Path, config: str) -> HAProxy:
    """HAProxy running `config` (written to tmp_path/haproxy.cfg)."""
    path = tmp_path / "haproxy.cfg"
    path.write_text(config)
    proc = subprocess.Popen(
        ["haproxy", "-db", "-f", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    return HAProxy(proc)
