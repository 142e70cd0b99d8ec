"""--apps-dir: apps that join, reload and leave a running server, one file each.

Every server here has one app in its config file (`calm`, at /calm) and a directory of apps the
test writes to; the fixture apps are tests/apps' (whoami.py says which app and worker answered).
A file is written to another name and renamed into place, as a deploy should.
"""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import procs
from harness import APPS_DIR, Server, ServerFactory, wait_until
from integration.test_apps import get, who, workers_by_app
from load import Load
from rawhttp import fetch

SERVER = f"""
chdir = "{APPS_DIR}"
pythonpath = ["{APPS_DIR}"]
workers = 1
threads = 2
[apps.calm]
app = "whoami"
path = "/calm"
env = {{WHOAMI = "calm"}}
"""
# Polled once a second, applied once a file held still over a poll: a couple of seconds, and
# room for a loaded machine and an app's import.
PICKED_UP = 10.0


def deploy(directory: Path, name: str, text: str) -> None:
    """Write NAME.toml whole: to a hidden name first, then renamed into place."""
    hidden = directory / f".{name}.toml.new"
    hidden.write_text(text)
    hidden.rename(directory / f"{name}.toml")


def whoami(name: str, path: str = "", hosts: str = "", extra: str = "") -> str:
    """An app file serving whoami as `name` (its WHOAMI) at `path` or for `hosts`."""
    lines = ['app = "whoami"', f'env = {{WHOAMI = "{name}"}}', extra]
    lines += [f'path = "{path}"'] if path else []
    lines += [f"hosts = [{hosts}]"] if hosts else []
    return "\n".join(lines) + "\n"


def serve(servers: ServerFactory, tmp_path: Path, *args: str) -> tuple[Server, Path]:
    directory = tmp_path / "apps"
    directory.mkdir(exist_ok=True)
    config = tmp_path / "maitred.toml"
    config.write_text(SERVER)
    return servers.start(None, "-c", str(config), "--apps-dir", str(directory), *args), directory


def answers(server: Server, path: str, host: str = "127.0.0.1") -> str | None:
    """The app (its WHOAMI) that answers, or None when none does (404)."""
    response = get(server, path, host)
    return who(server, path, host)["app"] if response.status == 200 else None


def test_a_new_file_serves_its_app_within_a_few_seconds(
    servers: ServerFactory, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    args = ["--access-logfile", str(log), "--access-log-format", "{app} {status} {host}"]
    server, directory = serve(servers, tmp_path, *args)
    assert get(server, "/", "shop.test").status == 404  # no app for it yet
    deploy(directory, "shop", whoami("shop", hosts='"shop.test"'))
    started = time.monotonic()
    wait_until(lambda: answers(server, "/", "shop.test") == "shop", PICKED_UP, "the new app")
    took = time.monotonic() - started
    assert took < PICKED_UP, took
    assert sorted(workers_by_app(server.pid).values()) == ["calm", "shop"]
    assert who(server, "/calm/x")["app"] == "calm"
    wait_until(lambda: log.exists() and "shop 200 shop.test" in log.read_text(), what="the log")
    assert server.wait_for_log(r"the app shop joins the server")
    print(f"a new app answered {took:.2f} s after its file appeared")


def test_a_changed_file_reloads_that_app_alone_with_no_failed_request(
    servers: ServerFactory, tmp_path: Path
) -> None:
    server, directory = serve(servers, tmp_path)
    deploy(directory, "shop", whoami("shop", path="/shop", extra="workers = 2"))
    wait_until(lambda: answers(server, "/shop/") == "shop", PICKED_UP, "the app")
    wait_until(lambda: len(workers_by_app(server.pid)) == 3, what="three workers")
    before = workers_by_app(server.pid)
    others = {pid for pid, app in before.items() if app != "shop"}
    paths = iter(["/shop/x", "/calm/y"] * 10_000)
    with Load(server.port, lambda: next(paths), clients=2, duration=30.0) as load:
        load.wait_for(10)
        deploy(directory, "shop", whoami("shop2", path="/shop", extra="workers = 2"))
        wait_until(
            lambda: (
                answers(server, "/shop/") == "shop2"
                and len(workers_by_app(server.pid)) == 3
                and not set(workers_by_app(server.pid)) & (set(before) - others)
            ),
            PICKED_UP + 10,
            "both workers of the changed app replaced",
        )
        done = len(load.results)
        load.wait_for(done + 10)
    assert load.failures() == [], load.outcomes
    after = workers_by_app(server.pid)
    assert {pid for pid, app in after.items() if app != "shop"} == others  # calm untouched
    assert sorted(after.values()) == ["calm", "shop", "shop"]
    print(f"{len(load.results)} requests across the reload, none failed")


def test_a_removed_file_drains_its_app(servers: ServerFactory, tmp_path: Path) -> None:
    server, directory = serve(servers, tmp_path)
    deploy(directory, "sleepy", 'app = "slow"\npath = "/sleepy"\n')
    wait_until(lambda: get(server, "/sleepy/").status == 200, PICKED_UP, "the app")
    [sleepy] = [pid for pid, app in workers_by_app(server.pid).items() if app == "sleepy"]
    mark = tmp_path / "running"
    with ThreadPoolExecutor(max_workers=1) as pool:
        slow = pool.submit(get, server, f"/sleepy/?s=4&mark={mark}")
        wait_until(mark.exists, what="the slow request in a worker thread")
        (directory / "sleepy.toml").unlink()
        wait_until(lambda: get(server, "/sleepy/").status == 404, PICKED_UP, "404 for the app")
        assert not slow.done()  # still running while the app is gone
        assert slow.result().status == 200
    wait_until(lambda: sleepy not in workers_by_app(server.pid), what="its worker gone")
    assert list(workers_by_app(server.pid).values()) == ["calm"]
    assert who(server, "/calm/")["app"] == "calm"
    assert server.wait_for_log(r"worker 1 of sleepy \(pid \d+\) retired")


VERSIONED = """
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"%s"]
"""


def test_touching_a_file_reloads_that_app_s_code_alone(
    servers: ServerFactory, tmp_path: Path
) -> None:
    server, directory = serve(servers, tmp_path)
    code = directory / "code"
    code.mkdir()
    (code / "versioned.py").write_text(VERSIONED % "one")
    deploy(directory, "shop", 'app = "versioned"\nchdir = "code"\npath = "/shop"\n')
    wait_until(lambda: get(server, "/shop/").body == b"one", PICKED_UP, "the app")
    [calm] = [pid for pid, app in workers_by_app(server.pid).items() if app == "calm"]
    (code / "versioned.py").write_text(VERSIONED % "second")  # another size: no stale .pyc
    os.utime(directory / "shop.toml")  # `touch shop.toml`: the same text, a new stamp
    wait_until(lambda: get(server, "/shop/").body == b"second", PICKED_UP, "the new code")
    assert [pid for pid, app in workers_by_app(server.pid).items() if app == "calm"] == [calm]


BROKEN = {
    "typo": ("shop", 'app = "whoami"\nwokers = 2\n', r"unknown setting 'wokers'"),
    "toml": ("blog", 'app = "whoami"\npath = \n', r"not valid TOML"),
    "value": ("blog", 'app = "whoami"\nthreads = "many"\n', r"threads"),
    "name": ("calm", 'app = "whoami"\npath = "/other"\n', r"the config file has an app named"),
    "route": ("blog", 'app = "whoami"\npath = "/shop"\n', r"apps blog and shop both serve"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_file_is_one_line_and_changes_nothing(
    servers: ServerFactory, tmp_path: Path, case: str
) -> None:
    name, text, error = BROKEN[case]
    line = rf"apps-dir: {tmp_path}/apps/{name}\.toml: [^\n]*{error}[^\n]*; not applied, the app"
    servers.expect_errors = (line,)
    server, directory = serve(servers, tmp_path)
    deploy(directory, "shop", whoami("shop", path="/shop"))
    wait_until(lambda: answers(server, "/shop/") == "shop", PICKED_UP, "the app")
    before = workers_by_app(server.pid)
    deploy(directory, name, text)
    assert server.wait_for_log(line, timeout=PICKED_UP)
    assert workers_by_app(server.pid) == before  # nothing started, stopped or reloaded
    assert answers(server, "/shop/") == "shop" and answers(server, "/calm/") == "calm"
    assert len(server.stderr.split("apps-dir: ")) == 2  # said once, not on every poll
    if name != "calm":  # a fixed file is picked up
        deploy(directory, name, whoami(name, path=f"/{name}"))
        wait_until(lambda: answers(server, f"/{name}/") == name, PICKED_UP, "the fixed app")


@pytest.mark.expect_errors(
    r"the app broken failed to load", r"apps-dir: \S+/broken\.toml: the app cannot be imported"
)
def test_an_app_that_cannot_be_imported_goes_and_the_server_serves_on(
    servers: ServerFactory, tmp_path: Path
) -> None:
    server, directory = serve(servers, tmp_path)
    deploy(directory, "broken", 'app = "no_such_module_here"\npath = "/broken"\n')
    assert server.wait_for_log(r"broken\.toml: the app cannot be imported", timeout=PICKED_UP)
    wait_until(lambda: get(server, "/broken/").status == 404, what="no app at /broken")
    assert answers(server, "/calm/") == "calm"
    deploy(directory, "broken", whoami("broken", path="/broken"))
    wait_until(lambda: answers(server, "/broken/") == "broken", PICKED_UP, "the fixed app")


def test_a_hup_adds_and_removes_apps_without_replacing_the_fronts(
    servers: ServerFactory, tmp_path: Path
) -> None:
    server, _ = serve(servers, tmp_path)
    [front] = procs.children_titled(server.pid, "maitred: front")
    config = tmp_path / "maitred.toml"
    config.write_text(SERVER + '[apps.extra]\napp = "whoami"\npath = "/extra"\n')
    os.kill(server.pid, signal.SIGHUP)
    wait_until(lambda: get(server, "/extra/").status == 200, what="the app the HUP added")
    wait_until(
        lambda: sorted(workers_by_app(server.pid).values()) == ["calm", "extra"],
        what="calm's worker replaced (a HUP reloads every app), and extra's",
    )
    config.write_text(SERVER)
    os.kill(server.pid, signal.SIGHUP)
    wait_until(lambda: get(server, "/extra/").status == 404, what="the app the HUP removed")
    wait_until(lambda: list(workers_by_app(server.pid).values()) == ["calm"], what="its worker")
    assert list(procs.children_titled(server.pid, "maitred: front")) == [front]


def test_an_app_that_joins_does_not_hold_back_the_server_s_readiness(
    servers: ServerFactory, tmp_path: Path
) -> None:
    """One deploy still importing (or failing to) must not make a balancer take every app out."""
    server, directory = serve(servers, tmp_path, "--health-path", "/readyz")
    hold = tmp_path / "hold"
    hold.touch()
    deploy(
        directory, "held", f'app = "heldimport"\npath = "/held"\nenv = {{HOLD_FILE = "{hold}"}}\n'
    )
    assert server.wait_for_log(r"front: the apps it serves now: calm, held", timeout=PICKED_UP)
    assert get(server, "/readyz").status == 200  # while held imports
    hold.unlink()
    wait_until(lambda: get(server, "/held/").status == 200, what="the app imported")
    assert get(server, "/readyz").status == 200


def test_an_app_that_joins_brings_its_locations(servers: ServerFactory, tmp_path: Path) -> None:
    server, directory = serve(servers, tmp_path, "--limit-request-body", "1000")
    rules = (
        '[[locations]]\npath = "/shop/private/"\ndeny = ["all"]\n'
        '[[locations]]\npath = "/shop/upload/"\nmax-body-size = "1M"\n'
    )
    deploy(directory, "shop", whoami("shop", path="/shop") + rules)
    wait_until(lambda: answers(server, "/shop/") == "shop", PICKED_UP, "the new app")
    assert get(server, "/shop/private/x").status == 403
    body = b"x" * 5000  # past the server's limit, within the location's
    upload = fetch(server.port, "POST", "/shop/upload/", [("Host", "127.0.0.1")], body)
    assert upload.status == 200, upload
    assert fetch(server.port, "POST", "/shop/", [("Host", "127.0.0.1")], body).status == 413
