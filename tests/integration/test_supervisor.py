"""The master supervises: respawn, timeouts, recycling, zero-drop reload, upgrade, shutdown.

Loads are bounded (tests/load.py) and go to 127.0.0.1 only. Processes are found and signalled
by pid, from the server's own process tree.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import time
from pathlib import Path

import pytest

import hygiene
import procs
from harness import Server, ServerFactory, Spawned, wait_until
from load import Load
from rawhttp import fetch

# The seconds a Load of exactly `limit` requests has to send them: its client threads must
# start within it, which a loaded machine has not done within 0.1 s (tests/load.py).
ONE_REQUEST = 10.0
# A killed front is restarted as soon as the master reaps it (SIGCHLD, or at the latest its
# one-second tick), in well under a second on a quiet machine; the bound leaves a loaded one
# room, and a restart held back by a backoff or a slow sweep still exceeds it.
FRONT_RESTART = 3.0


def workers_of(master: int) -> dict[int, str]:
    """pid -> process title of the master's worker processes."""
    return procs.children_titled(master, "maitred: worker")


VERSIONED = """
import contextlib
import itertools
import os
import socket
VERSION = open(os.path.join(os.path.dirname(__file__), "version.txt")).read().strip()

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{VERSION} {os.getpid()}".encode()]
"""


def versioned_app(tmp_path: Path, version: str) -> list[str]:
    (tmp_path / "versioned.py").write_text(VERSIONED)
    (tmp_path / "version.txt").write_text(version)
    return ["--chdir", str(tmp_path), "--pythonpath", str(tmp_path)]


@pytest.mark.expect_errors(
    r"worker \d+ died handling GET /\?s=0\.3",
    r"worker 1 \(pid \d+\) exited with signal 9; restarting it",
)
def test_killed_worker_fails_only_its_requests_and_is_replaced(servers: ServerFactory) -> None:
    server = servers.start("slow:application", "-w", "2", "--threads", "2")
    wait_until(lambda: len(workers_of(server.pid)) == 2, what="two workers")
    with Load(server.port, "/?s=0.3", clients=4, duration=4.0) as load:
        load.wait_for(8)
        victim = min(workers_of(server.pid))
        os.kill(victim, signal.SIGKILL)
        wait_until(
            lambda: len(workers_of(server.pid)) == 2 and victim not in workers_of(server.pid),
            timeout=3.0,
            what="a replacement worker",
        )
        load.wait_for(len(load.results) + 16)  # and the server goes on serving
    failures = load.failures()
    assert all(status == 502 for status in failures), load.outcomes
    assert len(failures) <= 2, load.outcomes  # at most the victim's two threads
    assert load.outcomes[200] >= 20
    assert "died handling GET /?s=0.3" in server.stderr


def test_five_reloads_under_load_drop_nothing(servers: ServerFactory, tmp_path: Path) -> None:
    server = servers.start(
        "versioned:application", "-w", "2", "--threads", "2", *versioned_app(tmp_path, "v0")
    )
    with Load(server.port, "/", clients=3, duration=30.0) as load:
        for n in range(1, 6):
            (tmp_path / "version.txt").write_text(f"v{n}")
            os.kill(server.pid, signal.SIGHUP)
            wait_until(
                lambda n=n: load.results and load.results[-1][1].startswith(f"v{n} ".encode()),
                what=f"version v{n} served",
            )
        load.wait_for(len(load.results) + 3)  # more answers from v5
    assert load.failures() == [], load.outcomes
    assert load.results[-1][1].startswith(b"v5 ")


@pytest.mark.expect_errors(
    r"versioned\.py\", line 1\n +def broken\(:(.|\n)*SyntaxError: invalid syntax",
    r"the new app failed to load \(see above\); keeping worker 1",
)
def test_reload_with_broken_import_keeps_old_workers(
    servers: ServerFactory, tmp_path: Path
) -> None:
    server = servers.start(
        "versioned:application", "-w", "1", "--threads", "2", *versioned_app(tmp_path, "good")
    )
    with Load(server.port, "/", clients=1, duration=5.0, limit=1) as first:
        first.wait_for(1)  # the worker imported the good code
    assert first.outcomes == {200: 1}
    (tmp_path / "versioned.py").write_text("def broken(:\n")
    os.kill(server.pid, signal.SIGHUP)
    assert server.wait_for_log("keeping worker 1 .* serving", timeout=15.0), server.stderr
    assert "SyntaxError" in server.stderr
    with Load(server.port, "/", clients=2, duration=1.0) as load:
        load.finish()
    assert load.failures() == [] and load.results, load.outcomes
    assert all(body.startswith(b"good ") for _, body in load.results)


def fronts_of(master: int) -> dict[int, str]:
    return procs.children_titled(master, "maitred: front")


def static_dirs(tmp_path: Path) -> tuple[Path, Path]:
    """Two static directories, each with page.txt saying which one it is."""
    for name in ("old", "new"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "page.txt").write_text(name)
    return tmp_path / "old", tmp_path / "new"


@pytest.mark.parametrize("fronts", [1, 2])
def test_a_reload_that_changes_the_fronts_replaces_them_dropping_nothing(
    servers: ServerFactory, tmp_path: Path, fronts: int
) -> None:
    old, new = static_dirs(tmp_path)
    config = tmp_path / "maitred.toml"
    settings = f"workers = 2\nthreads = 2\nfronts = {fronts}\n"
    config.write_text(settings + f'static = ["/s={old}"]\n')
    server = servers.start(
        "versioned:application", "-c", str(config), *versioned_app(tmp_path, "v0")
    )
    wait_until(lambda: len(fronts_of(server.pid)) == fronts, what="the fronts")
    old_fronts = set(fronts_of(server.pid))
    with Load(server.port, "/", clients=3, duration=30.0) as load:
        load.wait_for(10)
        (tmp_path / "version.txt").write_text("v1")
        config.write_text(settings + f'static = ["/s={new}"]\n')
        os.kill(server.pid, signal.SIGHUP)
        wait_until(lambda: fetch(server.port, "GET", "/s/page.txt").body == b"new", what="new")
        wait_until(lambda: not old_fronts & set(fronts_of(server.pid)), what="old fronts gone")
        wait_until(lambda: load.results[-1][1].startswith(b"v1 "), what="the new code")
        load.wait_for(len(load.results) + 10)
    assert load.failures() == [], load.outcomes
    assert len(fronts_of(server.pid)) == fronts
    wait_until(lambda: len(workers_of(server.pid)) == 2, what="the old workers gone")
    assert "reload: new fronts serve" in server.stderr


def mount(config: Path, directory: Path) -> None:
    """Write a config file: one worker, and /s served from `directory`."""
    config.write_text(f'workers = 1\nstatic = ["/s={directory}"]\n')


def serve_static(
    servers: ServerFactory, tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[Server, Path]:
    """A server (`args`: the app and more) with /s on tmp_path/old (static_dirs), its front
    running; returns it and its config file."""
    old, _ = static_dirs(tmp_path)
    config = tmp_path / "maitred.toml"
    mount(config, old)
    server = servers.start(*args, "-c", str(config), env=env)
    wait_until(lambda: len(fronts_of(server.pid)) == 1, what="the front")
    return server, config


def link_sockets(runtime: Path) -> set[str]:
    """The paths of the link sockets open (bound or accepted) under `runtime`: the directory
    in which this test's server made its own (other servers on the machine make theirs
    elsewhere)."""
    prefix = f"{runtime}/"
    with open("/proc/net/unix", encoding="ascii") as fh:
        rows = [line.split() for line in fh]
    return {row[-1] for row in rows if row[-1].startswith(prefix) and "/link-" in row[-1]}


def test_reloads_that_replace_the_fronts_leave_nothing_behind(
    servers: ServerFactory, tmp_path: Path
) -> None:
    runtime = tmp_path / "run"  # the server's temporary directory: its links and spool
    runtime.mkdir()
    server, config = serve_static(
        servers, tmp_path, "hello:application", env={"TMPDIR": str(runtime)}
    )
    old, new = tmp_path / "old", tmp_path / "new"
    fd_dir = f"/proc/{server.pid}/fd"
    fds = len(os.listdir(fd_dir))
    [first_link] = link_sockets(runtime)
    for directory in (new, old, new):
        mount(config, directory)
        os.kill(server.pid, signal.SIGHUP)
        wait_until(
            lambda d=directory: fetch(server.port, "GET", "/s/page.txt").body == d.name.encode(),
            what=f"{directory.name} served",
        )
        wait_until(
            lambda: len(fronts_of(server.pid)) == 1 and len(workers_of(server.pid)) == 1,
            what="the old front and worker gone",
        )
    wait_until(lambda: len(os.listdir(fd_dir)) == fds, what="the master's fds as before")
    [link] = link_sockets(runtime)  # the old generations' sockets are closed and removed
    assert link != first_link and not os.path.exists(first_link)
    spool = Path(first_link).parent / "spool"
    # link-APP-FRONT.GENERATION.sock; the spool directory is FRONT.GENERATION
    assert [p.name for p in spool.iterdir()] == [Path(link).name.rsplit("-")[-1][: -len(".sock")]]


def test_a_request_in_flight_finishes_on_the_old_front(
    servers: ServerFactory, tmp_path: Path
) -> None:
    server, config = serve_static(servers, tmp_path, "slow:application")
    (old_front,) = fronts_of(server.pid)
    running = tmp_path / "running"
    with Load(
        server.port, f"/?s=1.5&mark={running}", clients=1, duration=ONE_REQUEST, limit=1
    ) as slow:
        wait_until(running.exists, what="the request in the old worker's hands")
        mount(config, tmp_path / "new")
        os.kill(server.pid, signal.SIGHUP)
        wait_until(lambda: fetch(server.port, "GET", "/s/page.txt").body == b"new", what="new")
        assert old_front in fronts_of(server.pid)  # still finishing the slow request
        slow.finish()
    assert slow.outcomes == {200: 1}
    wait_until(lambda: old_front not in fronts_of(server.pid), what="the old front gone")


@pytest.mark.expect_errors(
    r"versioned\.py\", line 1\n +def broken\(:(.|\n)*SyntaxError: invalid syntax",
    r"the new app failed to load \(see above\); keeping worker 1",
    r"reload: no new worker could start; the fronts keep their settings",
)
def test_a_reload_whose_app_fails_keeps_the_fronts(servers: ServerFactory, tmp_path: Path) -> None:
    server, config = serve_static(
        servers, tmp_path, "versioned:application", *versioned_app(tmp_path, "good")
    )
    assert fetch(server.port, "GET", "/").body.startswith(b"good ")  # the app imports
    fronts = set(fronts_of(server.pid))
    (tmp_path / "versioned.py").write_text("def broken(:\n")
    mount(config, tmp_path / "new")
    os.kill(server.pid, signal.SIGHUP)
    assert server.wait_for_log("the fronts keep their settings", timeout=15.0), server.stderr
    assert set(fronts_of(server.pid)) == fronts
    assert fetch(server.port, "GET", "/s/page.txt").body == b"old"
    assert fetch(server.port, "GET", "/").body.startswith(b"good ")
    # Nothing is left half done: the next reload, with the code mended, goes through.
    (tmp_path / "versioned.py").write_text(VERSIONED)
    os.kill(server.pid, signal.SIGHUP)
    wait_until(lambda: fetch(server.port, "GET", "/s/page.txt").body == b"new", what="new")


def test_a_second_reload_drops_new_fronts_still_waiting_for_their_workers(
    servers: ServerFactory, tmp_path: Path
) -> None:
    # The app's import waits while the file "hold" exists (at most 20 s): a reload's worker
    # stays importing for as long as the test needs it to.
    hold = tmp_path / "hold"
    (tmp_path / "heldimport.py").write_text(
        "import os, time\n"
        "deadline = time.monotonic() + 20\n"
        f"while os.path.exists({str(hold)!r}) and time.monotonic() < deadline:\n"
        "    time.sleep(0.05)\n"
        "from hello import application\n"
    )
    server, config = serve_static(
        servers, tmp_path, "heldimport:application", "--chdir", str(tmp_path)
    )
    wait_until(lambda: fetch(server.port, "GET", "/").status == 200, what="the app")
    (tmp_path / "mid").mkdir()
    (tmp_path / "mid" / "page.txt").write_text("mid")
    mount(config, tmp_path / "mid")
    hold.touch()
    os.kill(server.pid, signal.SIGHUP)
    assert server.wait_for_log("new fronts start with new workers")
    mount(config, tmp_path / "new")
    os.kill(server.pid, signal.SIGHUP)  # the first reload's worker is still importing the app
    assert server.wait_for_log("dropping the new fronts that were waiting")
    hold.unlink()
    wait_until(lambda: fetch(server.port, "GET", "/s/page.txt").body == b"new", what="new")
    # The new front may answer before the master's line about it has been read from its pipe.
    assert server.wait_for_log("reload: new fronts serve"), server.stderr
    assert server.stderr.count("reload: new fronts serve") == 1  # the "mid" ones never did
    wait_until(lambda: len(workers_of(server.pid)) == 1, what="one worker left")


def test_a_reload_applies_a_new_log_level_to_the_new_fronts(
    servers: ServerFactory, tmp_path: Path
) -> None:
    config = tmp_path / "maitred.toml"
    config.write_text('workers = 1\nlog_level = "info"\n')
    server = servers.start("hello:application", "-c", str(config))
    wait_until(lambda: len(fronts_of(server.pid)) == 1, what="the front")
    old_front = set(fronts_of(server.pid))
    config.write_text('workers = 1\nlog_level = "debug"\n')
    os.kill(server.pid, signal.SIGHUP)
    wait_until(lambda: not old_front & set(fronts_of(server.pid)), what="a new front")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5.0) as sock:
        sock.sendall(b"NOT HTTP\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400")
    # A debug line, from the new front: it runs at the new level.
    assert server.wait_for_log("bad request from 127.0.0.1"), server.stderr


def test_a_reload_sets_the_new_env_and_undoes_the_old(
    servers: ServerFactory, tmp_path: Path
) -> None:
    (tmp_path / "greeting.py").write_text(
        "import os\n"
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [os.environ.get('GREETING', 'unset').encode()]\n"
    )
    config = tmp_path / "maitred.toml"
    config.write_text('env = ["GREETING=one"]\n')
    server = servers.start(
        "greeting:application", "-c", str(config), "--chdir", str(tmp_path), "-w", "1"
    )

    def greeting() -> bytes:
        return fetch(server.port, "GET", "/").body

    assert greeting() == b"one"
    config.write_text('env = ["GREETING=two"]\n')
    os.kill(server.pid, signal.SIGHUP)
    wait_until(lambda: greeting() == b"two", what="the new value")
    config.write_text("")
    os.kill(server.pid, signal.SIGHUP)
    wait_until(lambda: greeting() == b"unset", what="the variable gone again")


@pytest.mark.expect_errors(r"request timed out after [\d.]+ s, interrupting its thread: GET /\?s=5")
def test_timeout_answers_504_logs_stack_and_spares_other_threads(
    servers: ServerFactory, tmp_path: Path
) -> None:
    server = servers.start("slow:application", "-w", "1", "--threads", "2", "--timeout", "1")
    running = tmp_path / "running"
    with Load(
        server.port, f"/?s=5&mark={running}", clients=1, duration=ONE_REQUEST, limit=1
    ) as stuck:
        wait_until(running.exists, what="the stuck request running")
        with Load(server.port, "/?s=0.2", clients=1, duration=ONE_REQUEST, limit=1) as other:
            other.finish()
    assert stuck.outcomes == {504: 1}
    assert other.outcomes == {200: 1}  # the other thread of the same worker was not touched
    assert server.wait_for_log(
        r"request timed out after .*GET /\?s=5&mark=\S+\n(.|\n)*slow\.py", 5.0
    )


def test_max_requests_recycles_workers_without_failures(servers: ServerFactory) -> None:
    server = servers.start(
        "slow:application",
        "-w",
        "2",
        "--threads",
        "2",
        "--max-requests",
        "50",
        "--max-requests-jitter",
        "5",
    )
    first = set(workers_of(server.pid))
    with Load(server.port, "/?s=0", clients=4, duration=20.0, limit=400) as load:
        load.finish()
    assert load.failures() == [], load.outcomes
    assert len(load.results) >= 400
    assert server.stderr.count("recycling") >= 2
    # Each first worker served past its limit; the last one may still be handing over.
    wait_until(lambda: not first & set(workers_of(server.pid)), what="the first workers gone")


def test_ttin_and_ttou_change_the_worker_count(servers: ServerFactory) -> None:
    server = servers.start("hello:application", "-w", "1", "--threads", "1")
    wait_until(lambda: len(workers_of(server.pid)) == 1)
    os.kill(server.pid, signal.SIGTTIN)
    wait_until(lambda: len(workers_of(server.pid)) == 2, what="a second worker")
    os.kill(server.pid, signal.SIGTTOU)
    wait_until(lambda: len(workers_of(server.pid)) == 1, what="back to one worker")


def test_sigterm_finishes_requests_in_flight_and_exits_0(
    servers: ServerFactory, tmp_path: Path
) -> None:
    server = servers.start("slow:application", "-w", "1", "--threads", "3")
    numbers = itertools.count()
    with Load(
        server.port,
        lambda: f"/?s=1&mark={tmp_path}/running-{next(numbers)}",
        clients=3,
        duration=ONE_REQUEST,
        limit=3,
    ) as load:
        wait_until(
            lambda: len(list(tmp_path.glob("running-*"))) == 3, what="three requests running"
        )
        os.kill(server.pid, signal.SIGTERM)
    assert load.outcomes == {200: 3}
    server.spawned.proc.wait(10)
    assert server.spawned.proc.returncode == 0


@pytest.mark.parametrize(
    "processes",
    [("-w", "1"), ("-w", "2", "--fronts", "2")],
    ids=["one-front", "two-fronts"],
)
def test_usr2_upgrade_hands_over_without_failures(
    servers: ServerFactory, tmp_path: Path, processes: tuple[str, ...]
) -> None:
    pidfile = tmp_path / "maitred.pid"
    server = servers.start(
        "versioned:application",
        *processes,
        "--threads",
        "2",
        "--pidfile",
        str(pidfile),
        *versioned_app(tmp_path, "old"),
    )
    old_master = server.pid
    wait_until(lambda: pidfile.exists() and pidfile.read_text().strip() == str(old_master))
    (tmp_path / "version.txt").write_text("new")
    with Load(server.port, "/", clients=3, duration=30.0) as load:
        os.kill(old_master, signal.SIGUSR2)
        wait_until(
            lambda: load.results and load.results[-1][1].startswith(b"new "),
            what="the new master's code served",
        )
        server.spawned.proc.wait(15)  # the old master stops once the new one serves
        load.wait_for(len(load.results) + 3)  # answers from the new master
    new_master = int(pidfile.read_text())
    try:
        assert new_master != old_master
        assert server.spawned.proc.returncode == 0
        assert load.failures() == [], load.outcomes
    finally:
        os.kill(new_master, signal.SIGTERM)
        wait_until(
            lambda: procs.read_proc(new_master) is None or procs.read_proc(new_master).state == "Z",
            what="the new master to stop",
        )


def front_of(master: int) -> int | None:
    return next(iter(procs.children_titled(master, "maitred: front")), None)


@pytest.mark.expect_errors(r"front \(pid \d+\) exited with signal 9; restarting it")
def test_killed_front_is_replaced_and_serves_again(servers: ServerFactory) -> None:
    server = servers.start("hello:application", "-w", "1", "--threads", "2")
    wait_until(lambda: front_of(server.pid) is not None, what="the front")
    first = front_of(server.pid)
    assert first is not None
    os.kill(first, signal.SIGKILL)
    started = time.monotonic()
    wait_until(
        lambda: front_of(server.pid) not in (None, first),
        timeout=FRONT_RESTART * 3,
        what="a new front",
    )
    assert time.monotonic() - started < FRONT_RESTART
    with Load(server.port, "/", clients=2, duration=1.0) as load:
        load.finish()
    assert load.results and load.failures() == [], load.outcomes


# Fronts beat every second; a second front, or the successor of the hung one importing its
# modules, can miss a tight timeout on a loaded machine and be killed too. Long enough for those.
FRONT_TIMEOUT = 5.0


@pytest.mark.parametrize("fronts", [1, 2])
@pytest.mark.expect_errors(
    r"front( 1)? \(pid \d+\) stopped responding; killing it",
    r"front( 1)? \(pid \d+\) exited with signal 9; restarting it",
)
def test_a_front_that_stops_responding_is_replaced(servers: ServerFactory, fronts: int) -> None:
    server = servers.start(
        "hello:application",
        *("-w", "2", "--fronts", str(fronts), "--front-timeout", str(FRONT_TIMEOUT)),
    )
    wait_until(lambda: len(fronts_of(server.pid)) == fronts, what="the fronts")
    hung = min(fronts_of(server.pid))
    os.kill(hung, signal.SIGSTOP)  # alive, and answering nothing: a loop stuck for good
    assert server.wait_for_log(
        rf"front.* \(pid {hung}\) stopped responding; killing it", 3 * FRONT_TIMEOUT
    )
    wait_until(lambda: hung not in fronts_of(server.pid), what="the hung front gone")
    wait_until(lambda: len(fronts_of(server.pid)) == fronts, what="its successor")
    # Its share of the port's new connections (several fronts) went with it.
    for _ in range(32):
        assert fetch(server.port, "GET", "/", [("Connection", "close")], timeout=5.0).status == 200


def test_children_exit_when_the_master_is_killed(servers: ServerFactory) -> None:
    server = servers.start("hello:application", "-w", "2", "--threads", "1")
    wait_until(lambda: len(workers_of(server.pid)) == 2 and front_of(server.pid) is not None)
    children = [i for i in procs.all_procs() if i.ppid == server.pid]
    os.kill(server.pid, signal.SIGKILL)
    server.spawned.proc.wait(5)
    assert procs.wait_vanished(children, timeout=5.0) == []


def test_reload_flag_replaces_workers_when_code_changes(
    servers: ServerFactory, tmp_path: Path
) -> None:
    server = servers.start(
        "versioned:application",
        "-w",
        "1",
        "--threads",
        "1",
        "--reload",
        *versioned_app(tmp_path, "v1"),
    )
    with Load(server.port, "/", clients=1, duration=5.0, limit=1) as first:
        first.finish()
    assert first.results[0][1].startswith(b"v1 ")
    source = (tmp_path / "versioned.py").read_text()
    (tmp_path / "versioned.py").write_text(source.replace("VERSION = ", 'VERSION = "v2" or '))
    with Load(server.port, "/", clients=1, duration=20.0) as load:
        wait_until(
            lambda: load.results and load.results[-1][1].startswith(b"v2 "),
            what="the changed code served",
        )
    assert load.failures() == [], load.outcomes


@pytest.mark.expect_errors(r"front \(pid \d+\) exited with signal 9; restarting it")
def test_bodies_spooled_by_a_killed_front_are_removed(servers: ServerFactory) -> None:
    server = servers.start("echo:application", "-w", "1", "--threads", "1")
    wait_until(lambda: front_of(server.pid) is not None, what="the front")
    front = front_of(server.pid)
    assert front is not None
    size = 4 << 20  # past the 1 MiB body buffer: spooled to a file
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        head = f"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {size}\r\n\r\n".encode()
        sock.sendall(head + b"x" * (2 << 20))  # half the body: the front holds the file

        def spooled() -> list[str]:
            found = []
            for fd in Path(f"/proc/{front}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if "maitred-body-" in target:
                        found.append(target)
            return found

        wait_until(lambda: bool(spooled()), what="a spooled body")
        [path] = spooled()
        os.kill(front, signal.SIGKILL)
        wait_until(lambda: front_of(server.pid) not in (None, front), what="a new front")
    assert not os.path.exists(path)


def start_importing_slowly(servers: ServerFactory, tmp_path: Path, workers: int) -> Spawned:
    """A server whose app takes a second to import; returns once worker 1 is importing it
    (before the server says it listens)."""
    slow_import = tmp_path / "slowimport.py"
    slow_import.write_text("import time\ntime.sleep(1)\nfrom hello import application\n")
    spawned = servers.launch(
        "slowimport:application",
        *("-w", str(workers), "--threads", "1"),
        *("--chdir", str(tmp_path), "--pythonpath", str(tmp_path)),
    )
    wait_until(lambda: len(workers_of(spawned.pid)) == 1, what="the first worker")
    return spawned


def test_signals_before_the_first_worker_is_ready_start_no_extra_workers(
    servers: ServerFactory, tmp_path: Path
) -> None:
    spawned = start_importing_slowly(servers, tmp_path, workers=2)
    os.kill(spawned.pid, signal.SIGTTIN)  # before worker 1 has imported the app
    servers.serving(spawned)
    wait_until(lambda: len(workers_of(spawned.pid)) == 3, what="three workers")
    settled = hygiene.settle(spawned.pid)  # every worker has imported the app and linked up
    assert sum(p.title.startswith("maitred: worker") for p in settled.values()) == 3
    assert len(workers_of(spawned.pid)) == 3


def test_ttou_before_the_first_worker_is_ready_keeps_that_worker(
    servers: ServerFactory, tmp_path: Path
) -> None:
    spawned = start_importing_slowly(servers, tmp_path, workers=3)
    [first] = workers_of(spawned.pid)
    os.kill(spawned.pid, signal.SIGTTOU)  # before worker 1 has imported the app
    server = servers.serving(spawned)
    assert server.wait_for_log(r"SIGTTOU: 2 workers")
    wait_until(lambda: len(workers_of(server.pid)) == 2, what="two workers")
    with Load(server.port, "/", clients=2, duration=0.5) as load:
        load.finish()
    assert load.results and load.failures() == [], load.outcomes
    assert first in workers_of(server.pid)  # the staged start started one fewer instead
    assert "stopping worker 1" not in server.stderr
