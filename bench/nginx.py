"""nginx configuration for the two nginx profiles: the classic front of gunicorn, and alone.

The classic stack serves /static/ from nginx and proxies the rest to the app server over a unix
socket; nginx alone serves only /static/. Everything nginx writes (pid, logs, temp files) stays
in the run's work directory, so it never touches /var or a system nginx.
"""

from __future__ import annotations

import os
import shutil

# One worker per core, what the nginx docs recommend (and what "auto" picks).
WORKER_PROCESSES = "auto"
# Connections per worker: the slow-client scenario holds 300 client sockets plus upstreams.
WORKER_CONNECTIONS = 4096
# Large enough for the 1 MiB upload scenario (nginx's default is exactly 1 MiB).
CLIENT_MAX_BODY = "8m"

SBIN_PATH = "/usr/sbin:/sbin"
_TEMP_KINDS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")

_CONFIG = """\
worker_processes {workers};
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log warn;
events {{ worker_connections {connections}; }}
http {{
    access_log off;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    client_max_body_size {max_body};
{temp_paths}
{upstream}
    server {{
        listen 127.0.0.1:{port}{ssl};
{certificate}
        location /static/ {{ alias {files_dir}/; }}
{proxy}
    }}
}}
"""

_UPSTREAM = "    upstream app {{ server unix:{socket}; }}"
_PROXY = """\
        location / {
            proxy_pass http://app;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }"""


_CERTIFICATE = """\
        ssl_certificate {cert};
        ssl_certificate_key {key};"""


def nginx_binary() -> str | None:
    # Debian installs nginx in /usr/sbin, which is not on every user's PATH.
    return shutil.which("nginx") or shutil.which("nginx", path=SBIN_PATH)


def write_config(
    workdir: str,
    files_dir: str,
    port: int,
    upstream_socket: str | None,
    tls: tuple[str, str] | None = None,
) -> str:
    """Writes nginx.conf into workdir and returns its path; with `tls` (certificate, key), the
    server listens for HTTPS only and terminates TLS in front of the upstream."""
    temp_paths = []
    for kind in _TEMP_KINDS:
        path = os.path.join(workdir, "nginx-temp", kind)
        os.makedirs(path, exist_ok=True)
        temp_paths.append(f"    {kind}_temp_path {path};")
    text = _CONFIG.format(
        workers=WORKER_PROCESSES,
        workdir=workdir,
        connections=WORKER_CONNECTIONS,
        max_body=CLIENT_MAX_BODY,
        temp_paths="\n".join(temp_paths),
        upstream=_UPSTREAM.format(socket=upstream_socket) if upstream_socket else "",
        port=port,
        ssl=" ssl" if tls else "",
        certificate=_CERTIFICATE.format(cert=tls[0], key=tls[1]) if tls else "",
        files_dir=files_dir,
        proxy=_PROXY if upstream_socket else "",
    )
    path = os.path.join(workdir, "nginx.conf")
    with open(path, "w") as f:
        f.write(text)
    return path


def nginx_argv(binary: str, workdir: str, config: str) -> list[str]:
    # -e: the startup error log too, before the config is read; daemon off: we own the master.
    return [binary, "-p", workdir, "-e", os.path.join(workdir, "nginx-error.log"),
            "-c", config, "-g", "daemon off;"]  # fmt: skip
