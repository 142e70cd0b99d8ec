"""`maitred ctl` over the control socket, and --slow-request-log, against real servers."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness import CliResult, Server, ServerFactory, run_cli, wait_until
from integration.test_apps import TWO_APPS, serve, workers_by_app
from integration.test_metrics import stats_port
from maitred import control, ctlwire, runtime
from procs import children_titled, read_proc
from rawhttp import fetch

SLOW = "slow:application"


def ctl(sock: str | Path, *args: str) -> CliResult:
    return run_cli(["ctl", "--socket", str(sock), *args])


def ctl_json(sock: str | Path, *args: str) -> Any:
    result = ctl(sock, "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def exchange(sock: str | Path, data: bytes) -> Any:
    """Send raw bytes on the control socket; the answer the master sends, decoded."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(15.0)
        client.connect(str(sock))
        client.sendall(data)
        decoder = ctlwire.Decoder(ctlwire.MAX_ANSWER)
        while (payload := decoder.feed(client.recv(65536))) is None:
            pass
    return json.loads(payload)


def workers_of(server: Server) -> list[int]:
    return sorted(children_titled(server.pid, "maitred: worker"))


@contextmanager
def in_flight(server: Server, mark: Path, seconds: float) -> Iterator[None]:
    """A request of the slow app running in a worker thread for `seconds`, while inside."""
    answer: list[int] = []
    thread = threading.Thread(
        target=lambda: answer.append(
            fetch(server.port, "GET", f"/sleepy?s={seconds}&mark={mark}", timeout=60.0).status
        )
    )
    thread.start()
    try:
        wait_until(mark.exists, what="the request running in the app")
        yield
    finally:
        thread.join()
    assert answer == [200]


def test_stacks_show_the_app_function_a_thread_sleeps_in(
    servers: ServerFactory, tmp_path: Path
) -> None:
    sock = tmp_path / "control.sock"
    server = servers.start(
        SLOW, "-w", "2", "--control-socket", str(sock), "--stats-bind", "127.0.0.1:0"
    )
    with in_flight(server, tmp_path / "running", 30.0):
        # top: the request, as its front reports it (about once a second).
        wait_until(
            lambda: "GET /sleepy?s=30" in ctl(sock, "top", "--once").stdout,
            what="the request in top",
        )
        assert "in app" in ctl(sock, "top", "--once").stdout
        answer = ctl_json(sock, "stacks")
        busy = [t for w in answer["workers"] for t in w["threads"]]
        assert len(answer["workers"]) == 2 and answer["no_answer"] == []
        assert len(busy) == 1
        assert busy[0]["method"] == "GET" and busy[0]["path"].startswith("/sleepy?")
        assert busy[0]["age"] > 0
        assert 'slow.py", line' in busy[0]["stack"] and "in application" in busy[0]["stack"]
        text = ctl(sock, "stacks").stdout
        assert "GET /sleepy?s=30" in text and "in application" in text
        # One worker by pid; a pid that is no worker is an error.
        pid = next(w["pid"] for w in answer["workers"] if w["threads"])
        assert [w["pid"] for w in ctl_json(sock, "stacks", str(pid))["workers"]] == [pid]
        refused = ctl(sock, "stacks", str(server.pid))
        assert refused.returncode == 1
        no_worker = f"pid {server.pid} is no ready worker of this server"
        assert refused.stderr == f"maitred ctl: {no_worker}\n"
        os.kill(pid, 0)  # the worker runs on: stacks kill nothing


def test_top_lists_requests_in_flight_without_stats_bind(
    servers: ServerFactory, tmp_path: Path
) -> None:
    sock = tmp_path / "control.sock"
    server = servers.start(SLOW, "-w", "1", "--control-socket", str(sock))
    assert fetch(server.port, "GET", "/quick?s=0").status == 200
    with in_flight(server, tmp_path / "running", 20.0):
        wait_until(
            lambda: "GET /sleepy?s=20" in ctl(sock, "top", "--once").stdout,
            what="the request in top",
        )
        top = ctl(sock, "top", "--once").stdout
        assert "1 requests in flight" in top and "in app" in top
        assert "--stats-bind" not in top  # what it shows, it knows
        (worker,) = ctl_json(sock, "status")["apps"]["main"]["workers"]
        assert worker["requests"] == 1 and worker["in_flight"] == 1


def test_workers_sets_the_pool_size_and_widens_the_scaling_bounds(
    servers: ServerFactory, tmp_path: Path
) -> None:
    sock = tmp_path / "control.sock"
    server = servers.start("hello:application", "-w", "1", "--control-socket", str(sock))
    assert ctl(sock, "workers", "main", "3").stdout == "main: 3 workers\n"
    wait_until(lambda: len(workers_of(server)) == 3, what="three workers")
    assert [w["state"] for w in ctl_json(sock, "status")["apps"]["main"]["workers"]] == [
        "ready"
    ] * 3
    assert fetch(server.port, "GET", "/").status == 200
    ctl_json(sock, "workers", "main", "2")
    wait_until(lambda: len(workers_of(server)) == 2, what="two workers")
    unknown = ctl(sock, "workers", "shop", "2")
    assert (unknown.returncode, unknown.stderr) == (
        1,
        "maitred ctl: unknown app 'shop'; apps: main\n",
    )


def test_workers_in_a_scaling_pool_moves_a_bound_to_include_n(
    servers: ServerFactory, tmp_path: Path
) -> None:
    sock = tmp_path / "control.sock"
    servers.start(
        "hello:application",
        "--min-workers",
        "1",
        "--max-workers",
        "2",
        "--control-socket",
        str(sock),
    )
    answer = ctl_json(sock, "workers", "main", "3")
    assert (answer["workers"], answer["scaling"]) == (3, [1, 3])


def test_drain_fails_readiness_and_keeps_serving(servers: ServerFactory, tmp_path: Path) -> None:
    sock = tmp_path / "control.sock"
    server = servers.start(
        "hello:application",
        "--control-socket",
        str(sock),
        "--stats-bind",
        "127.0.0.1:0",
        "--health-path",
        "/healthz",
    )
    stats = stats_port(server)
    assert fetch(stats, "GET", "/readyz").status == 200
    assert ctl(sock, "drain").returncode == 0
    assert fetch(stats, "GET", "/readyz").status == 503
    assert fetch(server.port, "GET", "/healthz").status == 503
    assert ctl_json(sock, "status")["server"]["state"] == "draining"
    for _ in range(5):
        assert fetch(server.port, "GET", "/").status == 200
    assert ctl(sock, "undrain").returncode == 0
    assert fetch(stats, "GET", "/readyz").status == 200
    assert fetch(server.port, "GET", "/healthz").status == 200


def test_reload_of_one_app_replaces_only_its_workers(
    servers: ServerFactory, tmp_path: Path
) -> None:
    sock = tmp_path / "control.sock"
    server = serve(servers, tmp_path, TWO_APPS, "--control-socket", str(sock))
    wait_until(lambda: len(workers_by_app(server.pid)) == 3, what="three workers")
    before = workers_by_app(server.pid)
    assert ctl(sock, "reload", "b").stdout == "reloading: b\n"

    def b_replaced() -> bool:
        now = workers_by_app(server.pid)
        new_b = {pid for pid, app in now.items() if app == "b"} - set(before)
        return len(now) == 3 and len(new_b) == 2

    wait_until(b_replaced, timeout=15.0, what="both workers of b replaced")
    after = workers_by_app(server.pid)
    assert {pid for pid, app in after.items() if app == "a"} == {
        pid for pid, app in before.items() if app == "a"
    }
    assert ctl(sock, "reload", "c").stderr == "maitred ctl: unknown app 'c'; apps: a, b\n"


def test_bad_requests_get_an_error_and_change_nothing(
    servers: ServerFactory, tmp_path: Path
) -> None:
    sock = tmp_path / "control.sock"
    server = servers.start("hello:application", "-w", "2", "--control-socket", str(sock))
    wait_until(lambda: len(workers_of(server)) == 2, what="two workers")
    workers = workers_of(server)
    length = ctlwire.LENGTH.pack
    bad = {
        length(9) + b"not json!": "malformed request: not JSON",
        length(2) + b"[]": "malformed request: a request is a JSON object",
        ctlwire.encode({"command": "workers", "args": ["main", 5]}): '"args" is a list',
        length(ctlwire.MAX_REQUEST + 1): "malformed request: message of 65537 bytes",
        ctlwire.encode({"command": "scale-everything"}): "unknown command 'scale-everything'",
        ctlwire.encode({"command": "workers", "args": ["main", "-1"]}): "usage: workers APP N",
    }
    for data, error in bad.items():
        answer = exchange(sock, data)
        assert answer["ok"] is False and error in answer["error"], (data, answer)
    assert workers_of(server) == workers
    assert ctl_json(sock, "status")["server"]["state"] == "ready"
    assert fetch(server.port, "GET", "/").status == 200


def test_the_socket_is_the_owners_alone_and_found_from_the_pidfile(
    servers: ServerFactory, tmp_path: Path
) -> None:
    pidfile = tmp_path / "maitred.pid"
    server = servers.start("hello:application", "--pidfile", str(pidfile))
    path = control.default_path(runtime.running_dirs()[server.pid])
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    found = run_cli(["ctl", "--pidfile", str(pidfile), "--json", "status"])
    assert json.loads(found.stdout)["server"]["pid"] == server.pid
    custom = tmp_path / "control.sock"
    other = servers.start("hello:application", "--control-socket", str(custom))
    assert stat.S_IMODE(os.stat(custom).st_mode) == 0o600
    assert ctl_json(custom, "status")["server"]["pid"] == other.pid


def test_no_socket_and_a_refused_one_are_one_line_each(tmp_path: Path) -> None:
    missing = ctl(tmp_path / "nothing.sock", "status")
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr == (
        f"maitred ctl: no control socket at {tmp_path}/nothing.sock (is maitred running?)\n"
    )
    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as left:
        left.bind(str(stale))  # bound, never listening: what a killed master leaves
        refused = ctl(stale, "status")
    assert refused.returncode == 1
    no_master = f"connection refused at {stale}: no master listens there"
    assert refused.stderr == f"maitred ctl: {no_master}\n"


def test_slow_request_log_logs_one_stack_once(servers: ServerFactory, tmp_path: Path) -> None:
    server = servers.start(SLOW, "-w", "1", "--slow-request-log", "0.5")
    with in_flight(server, tmp_path / "running", 3.5):
        line = r"slow request: GET /sleepy\?s=3\.5\S* in flight for [\d.]+ s \(app main"
        assert server.wait_for_log(line, timeout=10.0)
    assert server.stderr.count("slow request:") == 1
    logged = server.stderr[server.stderr.index("slow request:") :]
    assert 'slow.py", line' in logged and "in application" in logged
    assert fetch(server.port, "GET", "/quick?s=0").status == 200
    assert server.stderr.count("slow request:") == 1


def test_usr2_hands_the_control_socket_to_the_new_master(
    servers: ServerFactory, tmp_path: Path
) -> None:
    sock = tmp_path / "control.sock"
    pidfile = tmp_path / "maitred.pid"
    server = servers.start(
        "hello:application", "--pidfile", str(pidfile), "--control-socket", str(sock)
    )
    old_master = server.pid
    wait_until(lambda: pidfile.exists() and pidfile.read_text().strip() == str(old_master))
    os.kill(old_master, signal.SIGUSR2)
    server.spawned.proc.wait(15)  # the old master stops once the new one serves
    new_master = int(pidfile.read_text())
    try:
        assert new_master != old_master
        # The old master left the path alone as it stopped: it is the new one's.
        assert ctl_json(sock, "status")["server"]["pid"] == new_master
        found = run_cli(["ctl", "--pidfile", str(pidfile), "--json", "status"])
        assert json.loads(found.stdout)["server"]["pid"] == new_master
    finally:
        os.kill(new_master, signal.SIGTERM)
        wait_until(
            lambda: read_proc(new_master) is None or read_proc(new_master).state == "Z",
            what="the new master to stop",
        )
