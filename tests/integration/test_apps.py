"""Several apps in one server ([apps.NAME] tables): routing by Host and path, a pool and a queue
per app, reloads and crash loops per app, a Django project beside a Flask app.

Every server here runs from a config file the test writes (`-c PATH`); the fixture apps are
tests/apps' (whoami.py says which app and worker answered).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import procs
from harness import APPS_DIR, Server, ServerFactory, run_cli, wait_until
from load import Load
from rawhttp import Response, fetch, unix_get, unix_listening

SERVER = f"""
chdir = "{APPS_DIR}"
pythonpath = ["{APPS_DIR}"]
workers = 1
threads = 2
"""
ROUTED = """
[apps.shop]
app = "whoami"
hosts = ["shop.test", "*.shop.test"]
env = {{WHOAMI = "shop"}}
[apps.blog]
app = "whoami"
path = "/blog"
workers = 2
chdir = "mysite"
virtualenv = "{venv}"
env = {{WHOAMI = "blog"}}
[apps.admin]
app = "whoami"
hosts = ["admin.test"]
path = "/admin"
env = {{WHOAMI = "admin"}}
"""
# Two apps, the second with two workers.
TWO_APPS = """
[apps.a]
app = "whoami"
path = "/a"
[apps.b]
app = "whoami"
path = "/b"
workers = 2
"""
# Generous: an answer that does not wait for the flooded app comes well within this, even on a
# loaded 2-core machine; one that waits behind it would take the sleepers' seconds.
PROMPT = 2.0
SLEEP = 4.0  # how long the flood's requests hold app A's threads


def routed(tmp_path: Path) -> str:
    """ROUTED, with a virtualenv of its own for the blog (an empty one, for this Python)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    venv = tmp_path / "venv"
    (venv / "lib" / version / "site-packages").mkdir(parents=True, exist_ok=True)
    return ROUTED.format(venv=venv)


def write_config(tmp_path: Path, tables: str, server: str = SERVER) -> Path:
    path = tmp_path / "maitred.toml"
    path.write_text(server + tables)
    return path


def serve(servers: ServerFactory, tmp_path: Path, tables: str, *args: str, **kwargs: Any) -> Server:
    return servers.start(None, "-c", str(write_config(tmp_path, tables)), *args, **kwargs)


def get(server: Server, path: str, host: str = "127.0.0.1") -> Response:
    return fetch(server.port, "GET", path, [("Host", host)], timeout=15.0)


def who(server: Server, path: str, host: str = "127.0.0.1") -> dict[str, Any]:
    """What whoami answered: its app, SCRIPT_NAME, PATH_INFO, pid and directory."""
    response = get(server, path, host)
    assert response.status == 200, (path, host, response)
    answer: dict[str, Any] = json.loads(response.body)
    return answer


def workers_by_app(master: int) -> dict[int, str]:
    """pid -> the app in the title of each worker ("maitred: worker 1 of shop [whoami]")."""
    titles = procs.children_titled(master, "maitred: worker")
    return {pid: title.split(" of ")[1].split(" ")[0] for pid, title in titles.items()}


def test_two_apps_on_one_listener_routed_by_host_and_by_path(
    servers: ServerFactory, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    server = serve(
        servers,
        tmp_path,
        routed(tmp_path),
        "--access-logfile",
        str(log),
        "--access-log-format",
        "{app} {status} {host} {target}",
    )
    wait_until(lambda: len(workers_by_app(server.pid)) == 4, what="the apps' four workers")
    pids = workers_by_app(server.pid)
    shop = who(server, "/cart/1?x=1", "shop.test")
    assert (shop["app"], shop["script_name"], shop["path_info"]) == ("shop", "", "/cart/1")
    assert pids[shop["pid"]] == "shop" and shop["cwd"] == str(APPS_DIR)
    # A Host the app names exactly or by wildcard wins over the paths of apps for any Host.
    assert who(server, "/blog/x", "EU.Shop.test.:8000")["app"] == "shop"
    blog = who(server, "/blog/2026/post?q", "anything.test")
    assert (blog["app"], blog["script_name"], blog["path_info"]) == ("blog", "/blog", "/2026/post")
    assert pids[blog["pid"]] == "blog" and blog["cwd"] == str(APPS_DIR / "mysite")
    venv = tmp_path / "venv" / "lib"
    assert any(p.startswith(str(venv)) for p in blog["sys_path"])
    assert not any(p.startswith(str(venv)) for p in shop["sys_path"])
    assert who(server, "/blog", "127.0.0.1")["path_info"] == ""
    admin = who(server, "/admin/users", "admin.test")
    assert (admin["app"], admin["script_name"], admin["path_info"]) == ("admin", "/admin", "/users")
    assert pids[admin["pid"]] == "admin"
    # No app takes these: the front answers 404 and keeps the connection.
    for host, path in [("nope.test", "/"), ("nope.test", "/blogger"), ("admin.test", "/")]:
        response = get(server, path, host)
        assert response.status == 404, (host, path)
        assert response.header("Connection") != "close"
    wait_until(lambda: log.exists() and len(log.read_text().splitlines()) >= 8, what="the log")
    lines = log.read_text().splitlines()
    assert "shop 200 shop.test /cart/1?x=1" in lines
    assert "blog 200 anything.test /blog/2026/post?q" in lines
    assert "- 404 nope.test /blogger" in lines


def test_a_flood_on_one_app_leaves_the_other_answering(
    servers: ServerFactory, tmp_path: Path
) -> None:
    tables = """
[apps.flooded]
app = "slow"
path = "/slow"
max-queue = 2
[apps.calm]
app = "whoami"
"""
    server = serve(servers, tmp_path, tables)
    marks = [tmp_path / "a", tmp_path / "b"]
    with ThreadPoolExecutor(max_workers=12) as pool:
        sleepers = [pool.submit(get, server, f"/slow/?s={SLEEP}&mark={m}") for m in marks]
        wait_until(lambda: all(m.exists() for m in marks), 5.0, "both threads of app A busy")
        # Fill A's queue (2 places) with probes until one is refused: a probe that finds a place
        # waits in the queue (answered later), so none is sent from the waiting thread itself.
        queued = []

        def queue_full() -> bool:
            queued.append(pool.submit(get, server, f"/slow/?s={SLEEP}"))
            return any(f.done() and f.result().status == 503 for f in queued)

        wait_until(queue_full, 5.0, "app A's queue full (503)")
        started = time.monotonic()
        for _ in range(10):
            assert who(server, "/calm")["app"] == ""  # no WHOAMI: app B
            took = time.monotonic() - started
            assert took < PROMPT, f"app B waited behind app A: {took:.2f} s"
        assert not any(f.done() for f in sleepers)  # A was saturated all along
        assert all(f.result().status == 200 for f in sleepers)
        statuses = [f.result().status for f in queued]
        assert statuses.count(200) == 2 and set(statuses) == {200, 503}  # the queue held two


def test_hup_reloads_every_app_and_ttin_names_the_per_app_way(
    servers: ServerFactory, tmp_path: Path
) -> None:
    server = serve(servers, tmp_path, TWO_APPS)
    wait_until(lambda: len(workers_by_app(server.pid)) == 3, what="three workers")
    before = workers_by_app(server.pid)
    paths = iter(["/a/x", "/b/y"] * 10_000)
    with Load(server.port, lambda: next(paths), clients=2, duration=30.0) as load:
        load.wait_for(10)
        os.kill(server.pid, signal.SIGHUP)
        wait_until(
            lambda: (
                len(workers_by_app(server.pid)) == 3
                and not set(workers_by_app(server.pid)) & set(before)
            ),
            timeout=15.0,
            what="every worker of both apps replaced",
        )
        done = len(load.results)
        load.wait_for(done + 10)
    assert load.failures() == [], load.outcomes
    after = workers_by_app(server.pid)
    assert sorted(after.values()) == sorted(before.values()) == ["a", "b", "b"]
    os.kill(server.pid, signal.SIGTTIN)
    assert server.wait_for_log(r"SIGTTIN: this server runs 2 apps; scale one through")
    assert workers_by_app(server.pid) == after


@pytest.mark.expect_errors(
    r"worker 1 of crashy \(pid \d+\) died handling GET /crashy/die",
    r"worker 1 of crashy \(pid \d+\) exited with status \d+; restarting it",
    r"the deploy broke after the first worker started",
)
def test_a_crash_loop_in_one_app_backs_off_that_app_alone(
    servers: ServerFactory, tmp_path: Path
) -> None:
    tables = """
[apps.crashy]
app = "crashloop"
path = "/crashy"
[apps.steady]
app = "whoami"
workers = 2
"""
    env = {"CRASHLOOP_MARK": str(tmp_path / "imported")}
    server = serve(servers, tmp_path, tables, env=env)
    wait_until(lambda: len(workers_by_app(server.pid)) == 3, what="three workers")
    steady = {pid for pid, app in workers_by_app(server.pid).items() if app == "steady"}
    assert get(server, "/crashy/").status == 200
    assert get(server, "/crashy/die").status == 502
    assert server.wait_for_log(r"worker 1 of crashy keeps dying; next start in", timeout=15.0)
    for _ in range(5):
        assert who(server, "/")["pid"] in steady
    assert {pid for pid, app in workers_by_app(server.pid).items() if app == "steady"} == steady
    assert "steady keeps dying" not in server.stderr


def test_a_django_project_and_a_flask_app_side_by_side_with_their_own_static_files(
    servers: ServerFactory, tmp_path: Path
) -> None:
    django_static, flask_static = tmp_path / "django-static", tmp_path / "flask-static"
    for directory, text in [(django_static, "django"), (flask_static, "flask")]:
        directory.mkdir()
        (directory / "site.css").write_text(f"/* {text} */\n")
    (flask_static / "flask.js").write_text("// flask only\n")
    tables = f"""
[apps.django]
app = "mysite.wsgi:application"
hosts = ["localhost"]
static = ["/static={django_static}"]
[apps.django.env]
DJANGO_SETTINGS_MODULE = "mysite.settings"
MYSITE_DATA_DIR = "{tmp_path / "mysite"}"
[apps.flask]
app = "flaskapp:app"
hosts = ["127.0.0.1"]
path = "/flask"
static = ["/flask/static={flask_static}"]
"""
    server = serve(servers, tmp_path, tables)
    django = get(server, "/hello/", "localhost")
    assert (django.status, django.body) == (200, b"Hello from Django")
    flask = get(server, "/flask/json?x=1")
    assert flask.status == 200
    assert json.loads(flask.body) == {"args": {"x": "1"}, "path": "/json"}
    assert get(server, "/static/site.css", "localhost").body == b"/* django */\n"
    assert get(server, "/flask/static/site.css").body == b"/* flask */\n"
    # Each app's mounts serve its own requests only.
    assert get(server, "/static/flask.js", "localhost").status == 404  # Django's own 404
    assert get(server, "/static/site.css").status == 404  # 127.0.0.1 is Flask's, under /flask


def test_check_prints_each_app_and_a_bad_key_is_one_clear_error(tmp_path: Path) -> None:
    config = write_config(tmp_path, routed(tmp_path))
    result = run_cli(["check", "-c", str(config)], tmp_path)
    assert result.returncode == 0, result
    assert "[apps.blog]  # resolved" in result.stdout
    assert 'root-path = "/blog"' in result.stdout
    assert f'chdir = "{APPS_DIR / "mysite"}"' in result.stdout
    assert result.stderr.count("imports (") == 3
    write_config(tmp_path, routed(tmp_path).replace("workers = 2", "wrokers = 2"))
    result = run_cli(["-c", str(config)], tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"maitred: error: {config} [apps.blog]: unknown setting 'wrokers'; did you mean 'workers'?"
    )


def test_reload_watches_the_directory_of_each_app(servers: ServerFactory, tmp_path: Path) -> None:
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}app.py").write_text("from whoami import application\n")
    tables = """
[apps.one]
app = "oneapp"
chdir = "one"
path = "/one"
[apps.two]
app = "twoapp"
chdir = "two"
"""
    server = serve(servers, tmp_path, tables, "--reload", "--chdir", str(tmp_path))
    assert server.wait_for_log(rf"reload: watching {tmp_path}/one, {tmp_path}/two")
    wait_until(lambda: len(workers_by_app(server.pid)) == 2, what="two workers")
    before = set(workers_by_app(server.pid))
    (tmp_path / "two" / "twoapp.py").write_text("from whoami import application  # changed\n")
    wait_until(
        lambda: (
            len(workers_by_app(server.pid)) == 2 and not set(workers_by_app(server.pid)) & before
        ),
        timeout=15.0,
        what="both apps' workers replaced",
    )
    assert "reload: twoapp.py changed" in server.stderr


def quick_and_held(hold: Path) -> str:
    """Two apps: `quick` (whoami at /quick), and `held` whose import waits while `hold` exists."""
    return f"""
[apps.quick]
app = "whoami"
path = "/quick"
[apps.held]
app = "heldimport"
path = "/held"
[apps.held.env]
HOLD_FILE = "{hold}"
"""


def test_the_health_check_waits_for_every_app(servers: ServerFactory, tmp_path: Path) -> None:
    """Ready means every app can be served: one app's worker alone does not make it so."""
    hold = tmp_path / "hold"
    hold.touch()
    sock_path = tmp_path / "s.sock"
    config = write_config(tmp_path, quick_and_held(hold))
    args = ["-c", str(config), "-b", f"unix:{sock_path}", "--health-path", "/readyz"]
    spawned = servers.launch(None, *args)
    try:
        wait_until(lambda: unix_listening(sock_path), what="the unix socket")
        wait_until(lambda: unix_get(sock_path, "/quick/x")[0] == 200, what="app quick serving")
        assert unix_get(sock_path, "/readyz") == (503, b"starting\n")
    finally:
        hold.unlink()
    servers.serving(spawned)
    wait_until(lambda: unix_get(sock_path, "/readyz") == (200, b"ready\n"), what="ready")
