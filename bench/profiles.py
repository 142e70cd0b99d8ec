"""The servers we compare, as one table of data.

Every profile gets the same 16 request slots (processes x threads) and otherwise the settings a
production deployment would start from. An argv template may use {python} (this interpreter),
{venv} (the profile's virtualenv), {host}, {port} and {bind} (host:port, or unix:PATH behind
nginx), {certfile} and {keyfile} (the run's certificate, bench.tls); a profile whose server
reports the port it bound (port_from_log) binds port 0, so no two runs race for a port.

The TLS profiles serve HTTPS only and run the TLS scenarios only; the others never run those.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Every server gets this many requests in flight: the fairness rule of the whole suite.
SLOTS = 16
WORKERS = 4
THREADS = SLOTS // WORKERS
APP = "bench.app:application"
# What maitred and gunicorn write once they listen (maitred keeps gunicorn's wording).
LISTENING = r"Listening at: http://127\.0\.0\.1:(\d+)"
LISTENING_TLS = r"Listening at: https://127\.0\.0\.1:(\d+)"
TLS_SCENARIOS = frozenset({"tls-hello", "tls-close"})
SERVING = r"Serving on http://127\.0\.0\.1:(\d+)"
# maitred-rules: a location with an allow list and response headers on every path.
LOCATIONS = str(Path(__file__).resolve().parent / "locations.toml")

# Pinned, so a figure can be reproduced; bump on purpose and say so in the results.
APP_REQUIREMENTS = ("django==5.2.19",)
VENVS: dict[str, tuple[str, ...]] = {
    "gunicorn": ("gunicorn==27.0.1",),
    "uwsgi": ("uwsgi==2.0.31",),
    "waitress": ("waitress==3.0.2",),
    "granian": ("granian==2.8.7",),
}


@dataclass(frozen=True)
class Profile:
    name: str
    title: str
    # The app server's argv template; None when nginx alone serves (static files).
    server: tuple[str, ...] | None
    # The virtualenv (a key of VENVS) the server runs from; None: this interpreter.
    venv: str | None = None
    # The distribution whose version the results record.
    package: str | None = None
    # "proxy": nginx in front of the server over HTTP; "uwsgi", "fastcgi": over that protocol
    # (uwsgi_pass, fastcgi_pass); "static": nginx alone.
    nginx: str | None = None
    port_from_log: str | None = None
    # The server's own static-file option, used when its --help shows it ("--static /static=DIR").
    static_option: str | None = None
    # Scenarios this profile can run; None: all of them (of its kind, TLS or not).
    only: frozenset[str] | None = None
    # Scenarios this profile cannot run faithfully, left out of its results.
    never: frozenset[str] = frozenset()
    # Serves HTTPS with the run's certificate: runs the TLS scenarios, and only those.
    tls: bool = False

    def runs(self, scenario: str) -> bool:
        if (scenario in TLS_SCENARIOS) != self.tls:
            return False
        if scenario in self.never:
            return False
        return self.only is None or scenario in self.only


_GUNICORN = ("{venv}/bin/gunicorn", "--bind", "{bind}")
# The loads run behind an nginx that keeps its uwsgi_pass or fastcgi_pass.
_BEHIND_NGINX = frozenset({"hello", "django"})
_GUNICORN_SYNC = (*_GUNICORN, "--worker-class", "sync", "--workers", str(SLOTS), APP)

PROFILES: tuple[Profile, ...] = (
    Profile(
        "maitred",
        f"maitred {WORKERS}x{THREADS}",
        ("{python}", "-m", "maitred", "--bind", "{bind}", "--workers", str(WORKERS),
         "--threads", str(THREADS), APP),
        package="maitred",
        port_from_log=LISTENING,
        static_option="--static",
    ),
    Profile(
        "maitred-2f",
        f"maitred {WORKERS}x{THREADS}, 2 fronts",
        # The same server with --fronts 2: each front owns half the workers. Run on the loads
        # where one front is the busiest process (hello, static files), and on the head-of-line
        # load to show what a request waiting only in its own front's queue costs.
        ("{python}", "-m", "maitred", "--bind", "{bind}", "--workers", str(WORKERS),
         "--threads", str(THREADS), "--fronts", "2", APP),
        package="maitred",
        port_from_log=LISTENING,
        static_option="--static",
        only=frozenset({"hello", "hol-keepalive", "static-4k"}),
    ),
    Profile(
        "maitred-stats",
        f"maitred {WORKERS}x{THREADS}, --stats-bind",
        # The same server counting every request for /metrics: what the counting costs.
        ("{python}", "-m", "maitred", "--bind", "{bind}", "--workers", str(WORKERS),
         "--threads", str(THREADS), "--stats-bind", "127.0.0.1:0", APP),
        package="maitred",
        port_from_log=LISTENING,
        static_option="--static",
        only=frozenset({"hello"}),
    ),
    Profile(
        "maitred-rules",
        f"maitred {WORKERS}x{THREADS}, a location with allow + headers",
        # The same server judging each request by a location (bench/locations.toml): what an
        # allow list and two added headers cost per request.
        ("{python}", "-m", "maitred", "--bind", "{bind}", "--workers", str(WORKERS),
         "--threads", str(THREADS), "-c", LOCATIONS, APP),
        package="maitred",
        port_from_log=LISTENING,
        static_option="--static",
        only=frozenset({"hello"}),
    ),
    Profile(
        "maitred-cache",
        f"maitred {WORKERS}x{THREADS}, --cache-size 64M",
        # The response cache in the front: a cached page answered without the app.
        ("{python}", "-m", "maitred", "--bind", "{bind}", "--workers", str(WORKERS),
         "--threads", str(THREADS), "--cache-size", "64M", APP),
        package="maitred",
        port_from_log=LISTENING,
        only=frozenset({"django-cached"}),
    ),
    Profile(
        "gunicorn-sync",
        f"gunicorn sync {SLOTS}",
        _GUNICORN_SYNC,
        venv="gunicorn",
        package="gunicorn",
        port_from_log=LISTENING,
    ),
    Profile(
        "gunicorn-gthread",
        f"gunicorn gthread {WORKERS}x{THREADS}",
        (*_GUNICORN, "--worker-class", "gthread", "--workers", str(WORKERS),
         "--threads", str(THREADS), APP),
        venv="gunicorn",
        package="gunicorn",
        port_from_log=LISTENING,
    ),
    Profile(
        "uwsgi",
        f"uWSGI {WORKERS}x{THREADS} http11-socket",
        # --listen: uWSGI's default backlog of 100 is far below its peers' (1024-2048) and would
        # turn the 300 slow clients into connect errors; --die-on-term: SIGTERM stops, not reloads.
        ("{venv}/bin/uwsgi", "--http11-socket", "{bind}", "--master", "--processes", str(WORKERS),
         "--threads", str(THREADS), "--module", APP, "--listen", "1024", "--die-on-term",
         "--need-app", "--disable-logging"),
        venv="uwsgi",
        package="uwsgi",
        # The http11 socket keeps a connection open whatever the request asks, so wrk would
        # measure keep-alive under the Connection: close label (hol-close uses a client that
        # closes itself).
        never=frozenset({"hello-close"}),
    ),
    Profile(
        "uwsgi-router",
        f"uWSGI {WORKERS}x{THREADS} behind its http router",
        # --http: uWSGI's own front process (the http router) owns the client connections and
        # passes requests to the workers, the same split as maitred's; --http-keepalive keeps
        # client connections open as every other profile does.
        ("{venv}/bin/uwsgi", "--http", "{bind}", "--http-keepalive", "--master", "--processes",
         str(WORKERS), "--threads", str(THREADS), "--module", APP, "--listen", "1024",
         "--die-on-term", "--need-app", "--disable-logging"),
        venv="uwsgi",
        package="uwsgi",
    ),
    Profile(
        "waitress",
        f"waitress {SLOTS} threads",
        ("{venv}/bin/waitress-serve", "--listen={bind}", f"--threads={SLOTS}", APP),
        venv="waitress",
        package="waitress",
        port_from_log=SERVING,
    ),
    Profile(
        "granian",
        f"granian WSGI {WORKERS}x{THREADS}",
        ("{venv}/bin/granian", "--interface", "wsgi", "--host", "{host}", "--port", "{port}",
         "--workers", str(WORKERS), "--blocking-threads", str(THREADS), APP),
        venv="granian",
        package="granian",
    ),
    Profile(
        "nginx-gunicorn",
        f"nginx + gunicorn sync {SLOTS}",
        _GUNICORN_SYNC,
        venv="gunicorn",
        package="gunicorn",
        nginx="proxy",
    ),
    Profile(
        "nginx-cache-gunicorn",
        f"nginx proxy_cache + gunicorn sync {SLOTS}",
        _GUNICORN_SYNC,
        venv="gunicorn",
        package="gunicorn",
        nginx="proxy-cache",
        only=frozenset({"django-cached"}),
    ),
    # An nginx that stays (a shared balancer, another team's rules) and talks to the app server
    # over uwsgi_pass or fastcgi_pass: maitred takes those sockets as they are.
    Profile(
        "nginx-maitred-uwsgi",
        f"nginx uwsgi_pass + maitred {WORKERS}x{THREADS}",
        ("{python}", "-m", "maitred", "--bind", "uwsgi://{bind}", "--workers", str(WORKERS),
         "--threads", str(THREADS), APP),
        package="maitred",
        nginx="uwsgi",
        only=_BEHIND_NGINX,
    ),
    Profile(
        "nginx-uwsgi",
        f"nginx uwsgi_pass + uWSGI {WORKERS}x{THREADS}",
        ("{venv}/bin/uwsgi", "--socket", "{socket}", "--master", "--processes", str(WORKERS),
         "--threads", str(THREADS), "--module", APP, "--listen", "1024", "--die-on-term",
         "--need-app", "--disable-logging"),
        venv="uwsgi",
        package="uwsgi",
        nginx="uwsgi",
        only=_BEHIND_NGINX,
    ),
    Profile(
        "nginx-maitred-fastcgi",
        f"nginx fastcgi_pass + maitred {WORKERS}x{THREADS}",
        ("{python}", "-m", "maitred", "--bind", "fastcgi://{bind}", "--workers", str(WORKERS),
         "--threads", str(THREADS), APP),
        package="maitred",
        nginx="fastcgi",
        only=_BEHIND_NGINX,
    ),
    Profile(
        "maitred-tls",
        f"maitred {WORKERS}x{THREADS}, TLS",
        ("{python}", "-m", "maitred", "--bind", "{bind}", "--workers", str(WORKERS),
         "--threads", str(THREADS), "--certfile", "{certfile}", "--keyfile", "{keyfile}", APP),
        package="maitred",
        port_from_log=LISTENING_TLS,
        tls=True,
    ),
    Profile(
        "gunicorn-gthread-tls",
        f"gunicorn gthread {WORKERS}x{THREADS}, TLS",
        (*_GUNICORN, "--worker-class", "gthread", "--workers", str(WORKERS),
         "--threads", str(THREADS), "--certfile", "{certfile}", "--keyfile", "{keyfile}", APP),
        venv="gunicorn",
        package="gunicorn",
        port_from_log=LISTENING_TLS,
        tls=True,
    ),
    Profile(
        "granian-tls",
        f"granian WSGI {WORKERS}x{THREADS}, TLS",
        # TLS 1.2 at least, as the others (granian's default minimum is 1.3).
        ("{venv}/bin/granian", "--interface", "wsgi", "--host", "{host}", "--port", "{port}",
         "--workers", str(WORKERS), "--blocking-threads", str(THREADS),
         "--ssl-certificate", "{certfile}", "--ssl-keyfile", "{keyfile}",
         "--ssl-protocol-min", "tls1.2", APP),
        venv="granian",
        package="granian",
        tls=True,
    ),
    Profile(
        "nginx-tls-gunicorn",
        f"nginx TLS + gunicorn sync {SLOTS}",
        _GUNICORN_SYNC,
        venv="gunicorn",
        package="gunicorn",
        nginx="proxy",
        tls=True,
    ),
    Profile(
        "nginx-static",
        "nginx (static only)",
        None,
        nginx="static",
        only=frozenset({"static-4k", "static-1m"}),
    ),
)  # fmt: skip

BY_NAME = {profile.name: profile for profile in PROFILES}
