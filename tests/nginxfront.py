"""A real nginx in front of maitred, for tests: its own prefix directory, in the foreground.

:func:`start_nginx` writes ``nginx.conf`` (pid, logs and temp files inside the directory, so
it never touches /var or a system nginx) around the ``server`` blocks a test gives, and starts
``nginx -p DIR -c nginx.conf`` with ``daemon off``. Its listening socket is bound here on port 0
and handed to nginx the way nginx hands sockets to a new binary (the ``NGINX`` environment
variable names inherited descriptors), so there is no window between finding a free port and
binding it. The config's ``listen`` line names the socket's address; ``{listen}`` in the
server blocks stands for it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from waiting import wait_until

SBIN_PATH = "/usr/sbin:/sbin"  # Debian's nginx is in /usr/sbin, not on every PATH
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
# The 20 MiB uploads of the tests, with room.
CLIENT_MAX_BODY = "64m"

_CONFIG = """\
{user}worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
daemon off;
events {{ worker_connections 256; }}
http {{
    access_log {prefix}/access.log;
    client_max_body_size {max_body};
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
{servers}
}}
"""


def nginx_binary() -> str | None:
    return shutil.which("nginx") or shutil.which("nginx", path=SBIN_PATH)


@dataclass
class Nginx:
    proc: subprocess.Popen[bytes]
    prefix: Path
    port: int

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Fast shutdown (TERM), then KILL by pid if it lingers; its workers go with it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_nginx(prefix: Path, servers: str) -> Nginx:
    """nginx serving `servers` (server blocks; ``{listen}`` is its address), started and
    accepting."""
    binary = nginx_binary()
    assert binary is not None, "nginx is not installed (.ci/run installs it)"
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    prefix.mkdir(parents=True, exist_ok=True)
    text = _CONFIG.format(
        # Started as root, nginx's workers would run as nobody, who may not write its
        # temporary files in the test's directory.
        user="user root;\n" if os.geteuid() == 0 else "",
        prefix=prefix,
        max_body=CLIENT_MAX_BODY,
        servers=servers.replace("{listen}", f"127.0.0.1:{port}"),
    )
    (prefix / "nginx.conf").write_text(text)
    env = {**os.environ, "NGINX": f"{listener.fileno()};"}
    try:
        proc = subprocess.Popen(
            [binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
            pass_fds=[listener.fileno()],
            env=env,
            stdin=subprocess.DEVNULL,
        )
    finally:
        listener.close()
    nginx = Nginx(proc, prefix, port)

    def started() -> bool:
        return proc.poll() is not None or "start worker process" in nginx.error_log()

    wait_until(started, START_TIMEOUT, "nginx started")
    assert proc.poll() is None, f"nginx exited:\n{nginx.error_log()}"
    return nginx
