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
{user}worker_processes {workers};
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
{cache_path}
{upstream}
    server {{
        listen 127.0.0.1:{port}{ssl};
{certificate}
        location /static/ {{ alias {files_dir}/; }}
{proxy}
    }}
}}
"""

_UPSTREAM = "    upstream app {{ server unix:{socket};{keepalive} }}"
# How nginx talks to the app server, by the profile's nginx mode: HTTP (proxy_pass, the
# classic front of gunicorn), or the uwsgi and FastCGI protocols (uwsgi_pass, fastcgi_pass),
# each with the variables Debian's nginx ships for it.
_PASSES = {
    "proxy": """\
        location / {
            proxy_pass http://app;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }""",
    # The classic micro-cache: proxy_cache in front of the app, one fetch per key at a time;
    # the app's Cache-Control (s-maxage) sets the lifetime, proxy_cache_valid where it has none.
    "proxy-cache": """\
        location / {
            proxy_pass http://app;
            proxy_set_header Host $host;
            proxy_cache pages;
            proxy_cache_lock on;
            proxy_cache_valid 200 60s;
        }""",
    "uwsgi": """\
        location / {
            include /etc/nginx/uwsgi_params;
            uwsgi_pass app;
        }""",
    "fastcgi": """\
        location / {
            include /etc/nginx/fastcgi_params;
            fastcgi_keep_conn on;
            fastcgi_pass app;
        }""",
}
UPSTREAM_MODES = frozenset(_PASSES)
# Idle connections nginx keeps to a FastCGI upstream (uwsgi cannot keep one: its responses end
# at the close); closed before maitred's --keepalive would close them (5 s).
_KEEPALIVE = " keepalive 32; keepalive_timeout 2s;"


_CACHE_PATH = "    proxy_cache_path {path} keys_zone=pages:10m max_size=64m;"

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
    mode: str = "proxy",
    tls: tuple[str, str] | None = None,
) -> str:
    """Writes nginx.conf into workdir and returns its path; `mode` says how nginx talks to
    the upstream (a key of _PASSES); with `tls` (certificate, key), the server listens for
    HTTPS only and terminates TLS in front of the upstream."""
    temp_paths = []
    for kind in _TEMP_KINDS:
        path = os.path.join(workdir, "nginx-temp", kind)
        os.makedirs(path, exist_ok=True)
        temp_paths.append(f"    {kind}_temp_path {path};")
    text = _CONFIG.format(
        # Started as root, nginx's workers would run as nobody, who may not connect to the
        # app server's unix socket (made by root, without write permission for others).
        user="user root;\n" if os.geteuid() == 0 else "",
        workers=WORKER_PROCESSES,
        workdir=workdir,
        connections=WORKER_CONNECTIONS,
        max_body=CLIENT_MAX_BODY,
        temp_paths="\n".join(temp_paths),
        cache_path=_CACHE_PATH.format(path=os.path.join(workdir, "nginx-cache"))
        if mode == "proxy-cache"
        else "",
        upstream=_UPSTREAM.format(
            socket=upstream_socket, keepalive=_KEEPALIVE if mode == "fastcgi" else ""
        )
        if upstream_socket
        else "",
        port=port,
        ssl=" ssl" if tls else "",
        certificate=_CERTIFICATE.format(cert=tls[0], key=tls[1]) if tls else "",
        files_dir=files_dir,
        proxy=_PASSES[mode] if upstream_socket else "",
    )
    path = os.path.join(workdir, "nginx.conf")
    with open(path, "w") as f:
        f.write(text)
    return path


def nginx_argv(binary: str, workdir: str, config: str) -> list[str]:
    # -e: the startup error log too, before the config is read; daemon off: we own the master.
    return [binary, "-p", workdir, "-e", os.path.join(workdir, "nginx-error.log"),
            "-c", config, "-g", "daemon off;"]  # fmt: skip
