"""maitred behind a real nginx that keeps its uwsgi_pass and fastcgi_pass (and proxy_pass).

One nginx (tests/nginxfront.py) mounts the same servers three ways: ``/u/`` through uwsgi_pass
(uwsgi_params, and SCRIPT_NAME naming the mount), ``/f/`` through fastcgi_pass
(fastcgi_params, fastcgi_split_path_info, kept-alive connections), ``/`` through proxy_pass.
These are the configurations docs/behind-nginx.md shows. A Django site (2 workers x 2 threads)
is used as a browser would: a CSRF-protected form, the admin's login, a 20 MiB upload, a
streamed response, a FileResponse download; and the slow app shows that the dispatcher stays
non-greedy behind either protocol: with three of four threads busy, a fourth request is
answered at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from urllib3 import encode_multipart_formdata

from harness import APPS_DIR, Server, ServerFactory, server_env, wait_until
from nginxfront import Nginx, nginx_binary, start_nginx
from rawhttp import fetch

pytestmark = pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed")

TIMEOUT = 30.0
MOUNTS = {"uwsgi": "/u", "fastcgi": "/f"}
CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
GATEWAY_LISTENING = re.compile(r"Listening at: (uwsgi|fastcgi)://127\.0\.0\.1:(\d+)")
UPLOAD_SIZE = 20 * 1024 * 1024
CHUNKED_SIZE, CHUNK = 3 * 1024 * 1024, 64 * 1024
DOWNLOAD_SIZE = 8 * 1024 * 1024
ADMIN_USER, ADMIN_PASSWORD = "admin", "fixture-password-1"
WORKERS, THREADS = 2, 2
SLOTS = WORKERS * THREADS
WARM_UP_TIMEOUT = 30.0
# A request that finds a free thread is answered in milliseconds; a second leaves a wide margin
# for a loaded machine while staying far below the sleepers that would delay a misrouted one.
FAST_ENOUGH = 1.0
SLEEP = 3.0

SERVERS = """\
upstream django_fastcgi {{ server 127.0.0.1:{django[fastcgi]}; keepalive 8; keepalive_timeout 1s; }}
upstream slow_fastcgi {{ server 127.0.0.1:{slow[fastcgi]}; keepalive 8; keepalive_timeout 1s; }}
server {{
    listen {{listen}};
    location /u/ {{
        include /etc/nginx/uwsgi_params;
        uwsgi_param SCRIPT_NAME /u;
        uwsgi_pass 127.0.0.1:{django[uwsgi]};
    }}
    location /f/ {{
        include /etc/nginx/fastcgi_params;
        fastcgi_split_path_info ^(/f)(/.*)$;
        fastcgi_param PATH_INFO $fastcgi_path_info;
        fastcgi_keep_conn on;
        fastcgi_request_buffering off;
        fastcgi_pass django_fastcgi;
    }}
    location /slow-u/ {{
        include /etc/nginx/uwsgi_params;
        uwsgi_pass 127.0.0.1:{slow[uwsgi]};
    }}
    location /slow-f/ {{
        include /etc/nginx/fastcgi_params;
        fastcgi_param PATH_INFO $uri;
        fastcgi_keep_conn on;
        fastcgi_pass slow_fastcgi;
    }}
    location / {{
        proxy_pass http://127.0.0.1:{django[http]};
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
    }}
}}
"""


def gateway_ports(server: Server) -> dict[str, int]:
    """The port of each listener: http, uwsgi, fastcgi."""
    found = {proto: int(port) for proto, port in GATEWAY_LISTENING.findall(server.stderr)}
    assert set(found) == set(MOUNTS), server.stderr
    return {"http": server.port, **found}


GATEWAY_BINDS = ("-b", "uwsgi://127.0.0.1:0", "-b", "fastcgi://127.0.0.1:0")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mysite")


@pytest.fixture(scope="module")
def django(module_servers: ServerFactory, data_dir: Path) -> Server:
    server = module_servers.start(
        "mysite.wsgi:application",
        "-w", str(WORKERS), "--threads", str(THREADS), *GATEWAY_BINDS,
        "--access-logfile", str(data_dir / "access.log"),
        env={"MYSITE_DATA_DIR": str(data_dir)},
    )  # fmt: skip
    prepare_admin(data_dir)
    return server


def prepare_admin(data_dir: Path) -> None:
    """The admin's user, in the database the server migrated, and its static files' manifest
    (its pages name them), before any page is rendered."""
    code = (
        "import django; django.setup(); from django.contrib.auth.models import User; "
        "from django.core.management import call_command; "
        "call_command('collectstatic', interactive=False, verbosity=0); "
        f"User.objects.create_superuser({ADMIN_USER!r}, 'a@example.com', {ADMIN_PASSWORD!r})"
    )
    env = server_env(
        {"MYSITE_DATA_DIR": str(data_dir), "DJANGO_SETTINGS_MODULE": "mysite.settings"}
    )
    env["PYTHONPATH"] = f"{APPS_DIR}{os.pathsep}{env['PYTHONPATH']}"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def slow(module_servers: ServerFactory) -> Server:
    return module_servers.start(
        "slow:application", "-w", str(WORKERS), "--threads", str(THREADS), *GATEWAY_BINDS
    )


@pytest.fixture(scope="module")
def nginx(
    django: Server, slow: Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Nginx]:
    servers = SERVERS.format(django=gateway_ports(django), slow=gateway_ports(slow))
    nginx = start_nginx(tmp_path_factory.mktemp("nginx"), servers)
    yield nginx
    nginx.stop()


@pytest.fixture(params=sorted(MOUNTS))
def mount(request: pytest.FixtureRequest) -> str:
    return MOUNTS[request.param]


# --- Django ---


def test_csrf_form_post(nginx: Nginx, mount: str) -> None:
    with requests.Session() as session:
        form = session.get(nginx.url(f"{mount}/guestbook/"), timeout=TIMEOUT)
        assert form.status_code == 200, form.text
        match = CSRF_INPUT.search(form.text)
        assert match and "csrftoken" in session.cookies, form.text
        data = {"csrfmiddlewaretoken": match.group(1), "message": f"through {mount}"}
        saved = session.post(nginx.url(f"{mount}/guestbook/"), data=data, timeout=TIMEOUT)
        assert saved.status_code == 200, saved.text
        assert re.fullmatch(rf"saved #\d+: through {mount}", saved.text)
        refused = session.post(nginx.url(f"{mount}/guestbook/"), data={"message": "x"})
        assert refused.status_code == 403  # no token: Django's CSRF check ran


def test_admin_login(nginx: Nginx, mount: str) -> None:
    with requests.Session() as session:
        login = session.get(nginx.url(f"{mount}/admin/login/?next={mount}/admin/"))
        assert login.status_code == 200, login.text
        match = CSRF_INPUT.search(login.text)
        assert match, login.text
        data = {
            "csrfmiddlewaretoken": match.group(1),
            "username": ADMIN_USER,
            "password": ADMIN_PASSWORD,
            "next": f"{mount}/admin/",
        }
        done = session.post(login.url, data=data, timeout=TIMEOUT, allow_redirects=False)
        # The redirect names the mount nginx gave as SCRIPT_NAME.
        assert (done.status_code, done.headers["Location"]) == (302, f"{mount}/admin/")
        index = session.get(nginx.url(f"{mount}/admin/"), timeout=TIMEOUT)
        assert index.status_code == 200 and "Site administration" in index.text


def test_a_20_mib_upload(nginx: Nginx, mount: str, data_dir: Path) -> None:
    payload = os.urandom(UPLOAD_SIZE)
    files = {"data": ("big.bin", payload, "application/octet-stream")}
    response = requests.post(nginx.url(f"{mount}/upload/"), files=files, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    assert response.text == f"{UPLOAD_SIZE} {hashlib.sha256(payload).hexdigest()}"
    # The access log has it too, with the path the client asked for.
    access = data_dir / "access.log"
    wait_until(lambda: f'"POST {mount}/upload/' in access.read_text(), 10.0, "access log line")


def test_a_chunked_upload(nginx: Nginx, mount: str) -> None:
    """A body of no announced length: behind fastcgi_request_buffering off, nginx passes it
    on as it comes with CONTENT_LENGTH empty (uwsgi_pass buffers it whatever it is told)."""
    payload = os.urandom(CHUNKED_SIZE)
    body, content_type = encode_multipart_formdata({"data": ("big.bin", payload)})
    pieces = (body[at : at + CHUNK] for at in range(0, len(body), CHUNK))  # sent chunked
    response = requests.post(
        nginx.url(f"{mount}/upload/"),
        data=pieces,
        headers={"Content-Type": content_type},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    assert response.text == f"{CHUNKED_SIZE} {hashlib.sha256(payload).hexdigest()}"


def test_a_streamed_response(nginx: Nginx, mount: str) -> None:
    response = requests.get(nginx.url(f"{mount}/stream/?n=5000"), timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.text == "".join(f"line {i}\n" for i in range(5000))


def test_a_file_response_download(nginx: Nginx, mount: str) -> None:
    from mysite.payload import download_bytes

    response = requests.get(nginx.url(f"{mount}/download/?size={DOWNLOAD_SIZE}"), timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(DOWNLOAD_SIZE)
    assert response.content == download_bytes(DOWNLOAD_SIZE)


def test_proxy_pass_serves_the_same_site(nginx: Nginx) -> None:
    response = requests.get(nginx.url("/hello/"), timeout=TIMEOUT)
    assert (response.status_code, response.text) == (200, "Hello from Django")


# --- non-greedy dispatch behind nginx ---


def slow_get(nginx: Nginx, prefix: str, seconds: float, mark: Path | None = None) -> dict:  # type: ignore[type-arg]
    path = f"{prefix}/?s={seconds}" + (f"&mark={mark}" if mark else "")
    response = fetch(nginx.port, "GET", path, timeout=TIMEOUT)
    assert response.status == 200, response
    report: dict = json.loads(response.body)  # type: ignore[type-arg]
    return report


@pytest.fixture(scope="module")
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2 * SLOTS) as executor:
        yield executor


@pytest.mark.parametrize("prefix", ["/slow-u", "/slow-f"])
def test_a_free_thread_answers_at_once_while_three_are_busy(
    nginx: Nginx, pool: ThreadPoolExecutor, tmp_path: Path, prefix: str
) -> None:
    warm_up(nginx, pool, prefix)
    marks = [tmp_path / f"sleeper-{i}" for i in range(SLOTS - 1)]
    sleepers: list[Future[dict]] = [  # type: ignore[type-arg]
        pool.submit(slow_get, nginx, prefix, SLEEP, mark) for mark in marks
    ]
    wait_until(lambda: all(m.exists() for m in marks), 10.0, "three sleepers running")
    sent = time.monotonic()
    slow_get(nginx, prefix, 0)
    took = time.monotonic() - sent
    assert took < FAST_ENOUGH, f"the fast request took {took:.2f} s with a thread free"
    assert not any(f.done() for f in sleepers), "the fast request waited for a sleeper"
    for future in sleepers:
        future.result()


def warm_up(nginx: Nginx, pool: ThreadPoolExecutor, prefix: str) -> None:
    """Until all four threads were seen busy at once (every worker is up)."""
    deadline = time.monotonic() + WARM_UP_TIMEOUT
    while True:
        futures = [pool.submit(slow_get, nginx, prefix, 0.3) for _ in range(SLOTS)]
        reports = [f.result() for f in futures]
        if max(r["started"] for r in reports) < min(r["ended"] for r in reports):
            return
        assert time.monotonic() < deadline, "the 4 threads were never all busy at once"
