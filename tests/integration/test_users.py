"""--user and --group: the fronts and the workers run as another user, the master as root.

CI runs as root. The users here are numbers with no passwd entry (USER, OTHER): nothing needs
creating. A process that switched to one of them cannot read this machine's Python if it is
installed under a directory only root may enter, so the app lives in a world-readable
directory of its own and imports nothing the worker has not loaded; the requests below take
every path a request can take (a spooled body, a streamed response, a wsgi.file_wrapper
response), so a module imported on first use after the switch would fail one of them.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import procs
from harness import LISTENING, Server, ServerFactory, run_cli, spawn, wait_until
from rawhttp import RawConnection, fetch, request_bytes
from waiting import poll

USER, OTHER = 54321, 54322
BODY_BUFFER = 1024  # bodies past this are spooled to a file that goes to the worker open
SPOOLED = bytes(range(256)) * 400  # 100 KiB
STREAM_PARTS = 5
# Past the front's response buffer and the socket buffers: the front must hold the file open
# while a client that does not read waits.
HUGE_SIZE = 32 * 1024 * 1024

APP = f"""
import os


def application(environ, start_response):
    path = environ["PATH_INFO"]
    query = environ["QUERY_STRING"]
    if path == "/echo":
        body = environ["wsgi.input"].read()
    elif path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (b"part %d;" % i for i in range({STREAM_PARTS}))
    elif path == "/file":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](open(query, "rb"))
    elif path == "/fail":
        raise ValueError("a bug in the app")
    elif path == "/read":
        try:
            with open(query, "rb") as fh:
                body = fh.read()
        except PermissionError:
            body = b"PermissionError"
    else:
        body = b"%d %d" % (os.getuid(), os.getgid())
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
"""


@pytest.fixture(scope="module")
def world() -> Iterator[Path]:
    """A directory every user may read, holding the app: pytest's own is root's only."""
    path = Path(tempfile.mkdtemp(prefix="users-test-"))
    path.chmod(0o755)
    app = path / "userapp.py"
    app.write_text(APP)
    app.chmod(0o644)
    (path / "run").mkdir(mode=0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def app_args(world: Path, *args: str) -> list[str]:
    return ["--chdir", str(world), "--pythonpath", str(world), *args, "userapp:application"]


def ids(pid: int) -> dict[str, str]:
    """The Uid:, Gid: and Groups: lines of /proc/PID/status."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in lines)
    return {key: " ".join(fields[key].split()) for key in ("Uid", "Gid", "Groups")}


def runs_as(pid: int, uid: int, gid: int) -> bool:
    """Whether `pid` runs as uid and gid; False once it has exited (a front or worker of the
    generation a HUP replaces may leave between listing and reading)."""
    try:
        found = ids(pid)
    except FileNotFoundError:
        return False
    return found == {
        "Uid": f"{uid} {uid} {uid} {uid}",
        "Gid": f"{gid} {gid} {gid} {gid}",
        "Groups": f"{gid}",
    }


def children(master: int, kind: str) -> list[int]:
    return list(procs.children_titled(master, f"maitred: {kind}"))


def all_run_as(server: Server, uid: int, gid: int, workers: int = 2) -> bool:
    fronts, pids = children(server.pid, "front"), children(server.pid, "worker")
    return (
        len(fronts) == 1
        and len(pids) == workers
        and all(runs_as(pid, uid, gid) for pid in [*fronts, *pids])
    )


@pytest.fixture(scope="module")
def server(module_servers: ServerFactory, world: Path) -> Server:
    args = app_args(world, "--user", str(USER), "--group", str(USER), "-w", "2")
    env = {"TMPDIR": str(world / "run")}
    return module_servers.start(None, *args, "--body-buffer-size", str(BODY_BUFFER), env=env)


def test_the_fronts_and_workers_run_as_the_user_and_the_master_as_root(server: Server) -> None:
    wait_until(lambda: all_run_as(server, USER, USER), what="a front and two workers as USER")
    assert ids(server.pid)["Uid"] == "0 0 0 0"
    assert fetch(server.port, "GET", "/").body == b"%d %d" % (USER, USER)
    assert f"fronts and workers run as {USER} (uid {USER}, gid {USER}); the master stays root" in (
        server.stderr
    )


def test_every_kind_of_request_works_as_the_user(server: Server, world: Path) -> None:
    assert fetch(server.port, "POST", "/echo", body=SPOOLED).body == SPOOLED  # spooled
    assert fetch(server.port, "POST", "/echo", body=b"small").body == b"small"
    streamed = fetch(server.port, "GET", "/stream")
    assert streamed.is_chunked
    assert streamed.body == b"".join(b"part %d;" % i for i in range(STREAM_PARTS))
    data = world / "data.bin"
    data.write_bytes(SPOOLED)
    data.chmod(0o644)
    assert fetch(server.port, "GET", f"/file?{data}").body == SPOOLED


@pytest.mark.expect_errors(r"error handling GET /fail")
def test_an_app_error_is_answered_and_logged_as_the_user(server: Server) -> None:
    assert fetch(server.port, "GET", "/fail").status == 500
    assert server.wait_for_log(r"ValueError: a bug in the app")


def front_holds(server: Server, path: Path) -> bool:
    [front] = children(server.pid, "front")
    fds = Path(f"/proc/{front}/fd")
    return any(os.readlink(fd) == str(path) for fd in fds.iterdir() if fd.is_symlink())


def test_the_front_takes_over_a_file_wrapper_response_of_its_user(
    server: Server, world: Path
) -> None:
    """The worker stays open to its user after the switch: the front opens the file through
    /proc/WORKER/fd and sends it, rather than the worker's thread streaming it."""
    huge = world / "huge.bin"
    huge.write_bytes(os.urandom(HUGE_SIZE))
    huge.chmod(0o644)
    with RawConnection(server.port) as slow:
        slow.send(request_bytes("GET", f"/file?{huge}"))
        head = slow.read_head()  # and nothing more for now
        wait_until(lambda: front_holds(server, huge), what="the front sending the file")
        slow.read_body(head)
    assert head.body == huge.read_bytes()


def test_the_app_cannot_read_a_file_only_root_may(server: Server, world: Path) -> None:
    secret = world / "secret.txt"
    secret.write_text("root's")
    secret.chmod(0o600)
    assert fetch(server.port, "GET", f"/read?{secret}").body == b"PermissionError"
    secret.chmod(0o644)
    assert fetch(server.port, "GET", f"/read?{secret}").body == b"root's"


def test_each_user_reaches_only_its_own_runtime_files(server: Server, world: Path) -> None:
    [runtime] = [p for p in (world / "run").iterdir() if p.name.startswith("maitred-")]
    for directory in (runtime, runtime / "spool"):
        st = directory.stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o711), directory  # pass, not list
    [link] = list(runtime.glob("link-*.sock"))
    st = link.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (USER, USER, 0o600)
    [spool] = list((runtime / "spool").iterdir())
    st = spool.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (USER, USER, 0o700)


@pytest.mark.expect_errors(r"worker \d \(pid \d+\) exited with signal 9; restarting it")
def test_a_killed_worker_comes_back_as_the_user(server: Server) -> None:
    wait_until(lambda: len(children(server.pid, "worker")) == 2, what="two workers")
    victim = min(children(server.pid, "worker"))
    os.kill(victim, signal.SIGKILL)
    wait_until(
        lambda: victim not in children(server.pid, "worker") and all_run_as(server, USER, USER),
        what="a new worker as USER",
    )
    assert fetch(server.port, "GET", "/").body == b"%d %d" % (USER, USER)


def test_a_hup_that_changes_the_user_replaces_fronts_and_workers(
    servers: ServerFactory, world: Path
) -> None:
    config = world / "users.toml"
    config.write_text(f'user = "{USER}"\ngroup = "{USER}"\nworkers = 1\n')
    server = servers.start(None, *app_args(world, "-c", str(config)))
    wait_until(lambda: all_run_as(server, USER, USER, workers=1), what="USER's processes")
    config.write_text(f'user = "{OTHER}"\nworkers = 1\n')  # its group: the same number
    os.kill(server.pid, signal.SIGHUP)
    wait_until(lambda: all_run_as(server, OTHER, OTHER, workers=1), what="OTHER's processes")
    assert fetch(server.port, "GET", "/").body == b"%d %d" % (OTHER, OTHER)


def test_reload_replaces_the_workers_as_the_user(servers: ServerFactory, world: Path) -> None:
    app = world / "reloaded.py"
    app.write_text(APP.replace('b"%d %d"', 'b"one %d %d"'))
    app.chmod(0o644)
    args = ["--chdir", str(world), "--pythonpath", str(world), "-w", "1"]
    server = servers.start(None, *args, "--user", str(USER), "--reload", "reloaded:application")
    assert fetch(server.port, "GET", "/").body == b"one %d %d" % (USER, USER)
    app.write_text(APP.replace('b"%d %d"', 'b"two %d %d"'))
    wait_until(
        lambda: fetch(server.port, "GET", "/").body == b"two %d %d" % (USER, USER),
        what="the new code, as USER",
    )


def test_root_needs_allow_root(servers: ServerFactory, world: Path) -> None:
    refused = run_cli(["-b", "127.0.0.1:0", *app_args(world, "--user", "0")])
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        "maitred: error: --user is root (uid 0): running the app as root needs --allow-root"
    )
    server = servers.start(None, *app_args(world, "--user", "root", "--allow-root", "-w", "1"))
    assert fetch(server.port, "GET", "/").body == b"0 0"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--user", "no-such-user-here"], "unknown user 'no-such-user-here'"),
        (["--user", str(USER), "--group", "no-such-group"], "unknown group 'no-such-group'"),
        (["--user", "12x"], "unknown user '12x'"),
        (["--group", str(USER)], f"--group '{USER}' needs --user"),
        (["--user", str(USER), "--preload"], "--preload imports the app in the master"),
    ],
)
def test_bad_users_are_one_line_and_status_2(world: Path, args: list[str], message: str) -> None:
    result = run_cli(["-b", "127.0.0.1:0", *app_args(world, *args)])
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("maitred: error: ") and message in line


def owned_by_user(path: Path) -> bool:
    return path.exists() and (path.stat().st_uid, path.stat().st_gid) == (USER, USER)


def test_log_files_are_the_users_to_reopen_after_a_rotation(world: Path) -> None:
    """The log directory is root's: the user could not create the new files after logrotate
    moved the old ones, so the master (root) creates them and hands them over first."""
    logs = world / "logs"
    logs.mkdir(mode=0o755)
    error_log, access_log = logs / "error.log", logs / "access.log"
    names = ["--error-logfile", str(error_log), "--access-logfile", str(access_log)]
    args = ["-b", "127.0.0.1:0", *app_args(world, "--user", str(USER), "-w", "1", *names)]
    spawned = spawn(args, world)
    try:
        listening = poll(
            lambda: LISTENING.search(error_log.read_text()) if error_log.exists() else None
        )
        assert listening, spawned.output()
        port = int(listening[1])
        assert owned_by_user(error_log) and owned_by_user(access_log)
        error_log.rename(logs / "error.log.1")
        access_log.rename(logs / "access.log.1")
        os.kill(spawned.pid, signal.SIGUSR1)
        wait_until(lambda: owned_by_user(error_log) and owned_by_user(access_log), what="new logs")
        wait_until(
            lambda: (
                fetch(port, "GET", "/rotated").status == 200
                and "/rotated" in access_log.read_text()
            ),
            what="the front writing to the new access log",
        )
    finally:
        spawned.stop()
    assert "Traceback" not in error_log.read_text() + spawned.output()


# --- several apps, each as its own user ---

SHOP, BLOG = 54331, 54332  # two apps' users: numbers with no passwd entry
TWO_USERS = """
chdir = "{world}"
pythonpath = ["{world}"]
body-buffer-size = {buffer}
workers = 1
threads = 2
[apps.shop]
app = "userapp:application"
hosts = ["shop.test"]
user = "{shop}"
[apps.blog]
app = "userapp:application"
hosts = ["blog.test"]
user = "{blog}"
group = "{blog}"
"""


def workers_of(server: Server, app: str) -> list[int]:
    return children(server.pid, f"worker 1 of {app} ")


def app_get(server: Server, host: str, method: str, path: str, body: bytes = b"") -> bytes:
    response = fetch(server.port, method, path, [("Host", host)], body=body)
    assert response.status == 200, response
    return response.body


@pytest.fixture(scope="module")
def two_users(module_servers: ServerFactory, world: Path) -> Server:
    config = world / "two-users.toml"
    config.write_text(TWO_USERS.format(world=world, buffer=BODY_BUFFER, shop=SHOP, blog=BLOG))
    env = {"TMPDIR": str(world / "run")}
    return module_servers.start(None, "-c", str(config), env=env)


def test_each_app_s_workers_run_as_its_user(two_users: Server) -> None:
    for app, uid in (("shop", SHOP), ("blog", BLOG)):
        wait_until(lambda app=app: len(workers_of(two_users, app)) == 1, what=f"{app}'s worker")
        [pid] = workers_of(two_users, app)
        assert runs_as(pid, uid, uid), (app, ids(pid))
        assert app_get(two_users, f"{app}.test", "GET", "/") == b"%d %d" % (uid, uid)
    assert ids(two_users.pid)["Uid"] == "0 0 0 0"
    line = two_users.wait_for_log(r"fronts run as .*the master stays root[^\n]*")
    assert line is not None
    assert f"the workers of shop as {SHOP} (uid {SHOP}, gid {SHOP})" in line[0]
    assert f"the workers of blog as {BLOG} (uid {BLOG}, gid {BLOG})" in line[0]


def test_an_app_cannot_read_the_other_app_s_files(two_users: Server, world: Path) -> None:
    secret = world / "blog-secret.txt"
    secret.write_text("blog's")
    os.chown(secret, BLOG, BLOG)
    secret.chmod(0o600)
    assert app_get(two_users, "shop.test", "GET", f"/read?{secret}") == b"PermissionError"
    assert app_get(two_users, "blog.test", "GET", f"/read?{secret}") == b"blog's"


def test_a_spooled_body_reaches_each_app_whole(two_users: Server) -> None:
    """Past the in-memory limit the body is a file of the front's; each app's worker, as its
    own user, gets it open with its request."""
    for app in ("shop", "blog"):
        data = os.urandom(len(SPOOLED))
        assert app_get(two_users, f"{app}.test", "POST", "/echo", data) == data


def test_an_app_as_root_needs_allow_root(world: Path) -> None:
    config = world / "root-app.toml"
    config.write_text(TWO_USERS.format(world=world, buffer=BODY_BUFFER, shop=0, blog=BLOG))
    result = run_cli(["-b", "127.0.0.1:0", "-c", str(config)])
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "maitred: error: app shop: --user is root (uid 0): running the app as root needs "
        "--allow-root"
    ]


# --- --apps-dir-owner: each app of the directory runs as the owner of its file ---

OWNER, OWNER_GROUP = 12345, 12346  # numbers with no passwd or group entry
OWNED_APP = 'app = "userapp:application"\nhosts = ["{host}"]\n'


@pytest.mark.expect_errors(
    r"apps-dir: \S+/rooted\.toml: owned by root: with --apps-dir-owner an app runs as the owner",
    r"apps-dir: \S+/other\.toml: user 54321 and group - are not the file's owner",
)
def test_apps_dir_owner_runs_each_app_as_its_file_s_owner(
    servers: ServerFactory, world: Path, tmp_path: Path
) -> None:
    directory = Path(tempfile.mkdtemp(prefix="owned-apps-", dir=world))
    directory.chmod(0o755)
    config = tmp_path / "maitred.toml"
    config.write_text(f'chdir = "{world}"\npythonpath = ["{world}"]\nworkers = 1\n')
    args = ["-c", str(config), "--apps-dir", str(directory), "--apps-dir-owner"]
    server = servers.start(None, *args, env={"TMPDIR": str(world / "run")})

    def deploy(name: str, text: str, owner: tuple[int, int]) -> None:
        hidden = directory / f".{name}.new"
        hidden.write_text(text)
        os.chown(hidden, *owner)
        hidden.rename(directory / f"{name}.toml")

    deploy("shop", OWNED_APP.format(host="shop.test"), (OWNER, OWNER_GROUP))
    wait_until(lambda: len(workers_of(server, "shop")) == 1, what="the app's worker")
    [pid] = workers_of(server, "shop")
    wait_until(lambda: runs_as(pid, OWNER, OWNER_GROUP), what="the worker as the file's owner")
    assert app_get(server, "shop.test", "GET", "/") == b"%d %d" % (OWNER, OWNER_GROUP)
    # Root's file, or one whose user is someone else: refused, one line each.
    deploy("rooted", OWNED_APP.format(host="rooted.test"), (0, 0))
    assert server.wait_for_log(r"rooted\.toml: owned by root[^\n]*not applied", timeout=10.0)
    other = OWNED_APP.format(host="other.test") + f'user = "{USER}"\n'
    deploy("other", other, (OWNER, OWNER_GROUP))
    assert server.wait_for_log(r"other\.toml: user \d+ and group - are not", timeout=10.0)
    assert fetch(server.port, "GET", "/", [("Host", "rooted.test")]).status == 404
    assert fetch(server.port, "GET", "/", [("Host", "other.test")]).status == 404
    assert workers_of(server, "rooted") == workers_of(server, "other") == []
    # The same file given to another owner: the app reloads as them.
    os.chown(directory / "shop.toml", USER, USER)
    wait_until(
        lambda: app_get(server, "shop.test", "GET", "/") == b"%d %d" % (USER, USER),
        what="the app as its file's new owner",
    )
