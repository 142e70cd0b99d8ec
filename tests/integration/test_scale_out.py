"""Three maitred instances (127.0.0.2, .3, .4) behind a real HAProxy, then a real nginx,
under continuous load: a rolling deploy loses nothing, a crash fails only what it held.

The rolling deploy is every way maitred can be deployed, one instance at a time (see
:func:`fleet.rolling_deploy`): HUP each, USR2 each, TERM + restart each with --shutdown-delay.

- HAProxy checks ``/readyz`` on each server. The deploy runs through a frontend whose backend
  has ``retries 0`` (a refused or reset connection is the client's error): there, 0 failures
  is maitred's own doing, not a retry's. The crash runs through a frontend whose backend
  retries idempotent requests on another server (``retry-on``, ``option redispatch``).
- nginx (open source) has no active checks: it learns a server is down from a failed attempt
  (``max_fails``/``fail_timeout``) and, with ``proxy_next_upstream error timeout http_503``,
  resends an idempotent request to the next server. Behind nginx, a stopping instance's
  refused connections are hidden by those retries; they are what the deploy relies on. A
  server nginx saw fail stays out for ``fail_timeout``, so each step of the deploy waits until
  the balancer sends to the instance again before touching the next (with all three out at
  once, nginx answers 502 "no live upstreams").

The crash: SIGKILL of one instance's master and every process below it. What is guaranteed is
that only requests in flight at that moment can fail (at most as many as the load's clients
had outstanding, an upper bound on those held by the victim); for GETs, which both balancers
are set to retry, the test expects none to fail.

docs/scale-out.md shows these configurations.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from fleet import HEALTH_PATH, Instance, rolling_deploy, start_fleet, stop_fleet
from haproxyfront import (
    CHECK_INTERVAL_MS,
    PREAMBLE,
    free_port,
    haproxy_binary,
    start_haproxy,
    wait_serving,
)
from harness import ServerFactory
from load import Load
from nginxfront import nginx_binary, start_nginx

CLIENTS = 4
LOAD_LIMIT = 90.0  # seconds: the test stops the load long before
LOAD_COUNT = 50_000  # requests: a bound far above what a deploy of a few seconds sees
DEPLOY_PATH = "/?s=0.02"
# Long enough that a crash finds requests running on the victim (4 clients, 3 instances).
CRASH_PATH = "/?s=0.3"
BEFORE, AFTER = 20, 40  # answers to see before the crash, and after it

HAPROXY = (
    PREAMBLE
    + """\
    option httpchk GET {health}
    http-check expect status 200
    default-server inter {interval}ms fall 2 rise 1
frontend strict
    bind 127.0.0.1:{strict}
    default_backend strict
frontend web
    bind 127.0.0.1:{port}
    default_backend app
    http-response set-header X-Served-By %[srv_name]
backend strict
    balance roundrobin
    retries 0
{servers}
backend app
    balance roundrobin
    retries 2
    option redispatch 1
    retry-on all-retryable-errors
    http-request disable-l7-retry unless METH_GET
{servers}
"""
)

NGINX = """\
upstream fleet {{
{servers}
    keepalive 16;
    keepalive_timeout 4s;  # below maitred's --keepalive (5 s): nginx closes an idle one first
}}
server {{
    listen {{listen}};
    location / {{
        proxy_pass http://fleet;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
        proxy_connect_timeout 2s;
        proxy_next_upstream error timeout http_503;
        proxy_next_upstream_tries 3;
        proxy_next_upstream_timeout 10s;
    }}
}}
"""


def load(port: int, path: str) -> Load:
    return Load(port, path, clients=CLIENTS, duration=LOAD_LIMIT, limit=LOAD_COUNT)


def deploy_then_crash(fleet: list[Instance], deploy_port: int, crash_port: int) -> None:
    """The rolling deploy under load through `deploy_port`, then the crash of the first
    instance under load through `crash_port`; asserts on both and prints their counts."""
    with load(deploy_port, DEPLOY_PATH) as deploy:
        deploy.wait_for(BEFORE)
        rolling_deploy(fleet, deploy)
        deploy.wait_for(len(deploy.results) + AFTER)
    print(f"rolling deploy: {len(deploy.results)} sent, {len(deploy.failures())} failed")
    assert deploy.failures() == [], deploy.outcomes
    with load(crash_port, CRASH_PATH) as crash:
        crash.wait_for(BEFORE)
        in_flight = crash.in_flight()
        fleet[0].kill()
        crash.wait_for(len(crash.results) + AFTER)
    failed = crash.failures()
    print(f"kill -9: {len(crash.results)} sent, {in_flight} in flight, {len(failed)} failed")
    assert len(failed) <= in_flight, crash.outcomes
    assert failed == [], crash.outcomes  # GETs, retried by the balancer on another instance


def behind(servers: ServerFactory, tmp_path: Path, run: Callable[[list[Instance]], None]) -> None:
    fleet = start_fleet(servers, tmp_path)
    try:
        run(fleet)
    finally:
        stop_fleet(fleet)


@pytest.mark.skipif(haproxy_binary() is None, reason="haproxy is not installed")
def test_haproxy_rolling_deploy_loses_nothing_and_a_crash_only_its_requests(
    servers: ServerFactory, tmp_path: Path
) -> None:
    def run(fleet: list[Instance]) -> None:
        strict, port = free_port(), free_port()
        lines = "\n".join(f"    server {i.address} {i.address}:{i.port} check" for i in fleet)
        config = HAPROXY.format(
            health=HEALTH_PATH,
            interval=CHECK_INTERVAL_MS,
            strict=strict,
            port=port,
            servers=lines,
        )
        haproxy = start_haproxy(tmp_path, config)
        try:
            wait_serving(port, {i.address for i in fleet})
            deploy_then_crash(fleet, strict, port)
        finally:
            haproxy.stop()

    behind(servers, tmp_path, run)


@pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed")
def test_nginx_rolling_deploy_loses_nothing_and_a_crash_only_its_requests(
    servers: ServerFactory, tmp_path: Path
) -> None:
    def run(fleet: list[Instance]) -> None:
        lines = "\n".join(
            f"    server {i.address}:{i.port} max_fails=1 fail_timeout=2s;" for i in fleet
        )
        nginx = start_nginx(tmp_path / "nginx", NGINX.format(servers=lines))
        try:
            deploy_then_crash(fleet, nginx.port, nginx.port)
        finally:
            nginx.stop()

    behind(servers, tmp_path, run)
