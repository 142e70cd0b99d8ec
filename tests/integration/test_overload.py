"""Overload on a real server: the bounded queue, the queue timeout, max-connections (and who
gives a slot up for a new client), max-connections-per-ip, EMFILE.

The connection limits run on both event loops: uvloop (installed) and the asyncio fallback
(tests/shadow hides uvloop from the server).
"""

from __future__ import annotations

import json
import resource
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness import SRC_DIR, TESTS_DIR, Server, ServerFactory, wait_until
from maitred.front.slots import HEAD_GRACE
from rawhttp import ConnectionClosed, RawConnection, Response, fetch
from slowclients import Slowloris, descriptors_for, front_pid, open_fds, open_idle, wait_empty

MARK_TIMEOUT = 5.0
FAST = 0.5  # a shed request is answered at once: well under this, even on a loaded machine


def wait_marked(marks: list[Path]) -> None:
    wait_until(lambda: all(m.exists() for m in marks), MARK_TIMEOUT, "the sleepers running")


def timed_get(port: int, path: str) -> tuple[Response, float]:
    started = time.monotonic()
    response = fetch(port, "GET", path, timeout=15.0)
    return response, time.monotonic() - started


def test_past_max_queue_requests_get_503_with_retry_after_at_once(
    servers: ServerFactory, tmp_path: Path
) -> None:
    server = servers.start("slow:application", "-w", "1", "--threads", "2", "--max-queue", "10")
    marks = [tmp_path / "a", tmp_path / "b"]
    with ThreadPoolExecutor(max_workers=20) as pool:
        sleepers = [pool.submit(timed_get, server.port, f"/?s=2&mark={m}") for m in marks]
        wait_marked(marks)  # both threads are busy
        results = [
            f.result() for f in [pool.submit(timed_get, server.port, "/") for _ in range(15)]
        ]
        assert all(f.result()[0].status == 200 for f in sleepers)
    shed = [(r, t) for r, t in results if r.status == 503]
    served = [r for r, _ in results if r.status == 200]
    assert (len(shed), len(served)) == (5, 10)
    for response, took in shed:
        assert response.header("Retry-After") == "1"
        assert took < FAST, f"a shed request took {took:.2f} s"


def test_a_request_that_waited_past_the_queue_timeout_gets_503(
    servers: ServerFactory, tmp_path: Path
) -> None:
    server = servers.start(
        "slow:application", "-w", "1", "--threads", "1", "--queue-timeout", "0.5"
    )
    with ThreadPoolExecutor(max_workers=1) as pool:
        sleeper = pool.submit(timed_get, server.port, f"/?s=1.5&mark={tmp_path / 'a'}")
        wait_marked([tmp_path / "a"])
        response, took = timed_get(server.port, "/")
        assert response.status == 503 and response.header("Retry-After") == "1"
        assert 0.5 <= took < 1.5 and not sleeper.done(), took
        assert sleeper.result()[0].status == 200
        # One that waits less than the timeout runs, and learns how long it waited.
        sleeper = pool.submit(timed_get, server.port, f"/?s=0.2&mark={tmp_path / 'b'}")
        wait_marked([tmp_path / "b"])
        response, _ = timed_get(server.port, "/")
    assert response.status == 200
    assert 0.0 < json.loads(response.body)["queue_time"] < 0.5


LOOPS = {"uvloop": None, "asyncio": {"PYTHONPATH": f"{SRC_DIR}:{TESTS_DIR / 'shadow'}"}}


def start_on(servers: ServerFactory, loop: str, *args: str) -> Server:
    server = servers.start("hello:application", "-w", "1", *args, env=LOOPS[loop])
    maps = Path(f"/proc/{front_pid(server)}/maps").read_text()
    assert ("uvloop" in maps) == (loop == "uvloop"), "the front runs another event loop"
    return server


MAX_CONNECTIONS = 20
# How long a connection past the limit must stay unanswered: past the grace after which a
# connection merely sending a head would give its slot up.
REFUSED_FOR = HEAD_GRACE + 0.5
UPLOAD_HEAD = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n"


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_past_max_connections_new_ones_wait_until_one_closes(
    servers: ServerFactory, loop: str
) -> None:
    """Connections uploading a body keep their slots: a new client waits for one to close."""
    server = start_on(servers, loop, "--max-connections", str(MAX_CONNECTIONS))
    held = [RawConnection(server.port) for _ in range(MAX_CONNECTIONS)]
    try:
        for conn in held:
            conn.send(UPLOAD_HEAD)
            assert conn.read_head().status == 100  # the front reads its body now
            conn.send(b"x")
        waiting = RawConnection(server.port, timeout=REFUSED_FOR)  # in the listen backlog
        held.append(waiting)
        waiting.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        with pytest.raises(TimeoutError):
            waiting.read_response()
        held.pop(0).close()
        waiting.sock.settimeout(5.0)
        assert waiting.read_response().status == 200
    finally:
        for conn in held:
            conn.close()


SHORTAGE_LINE = "front: cannot accept connections: "
SHORT_FOR = 2.0  # seconds the test keeps the front out of descriptors


@pytest.mark.parametrize("loop", sorted(LOOPS))
@pytest.mark.expect_errors(r"front: cannot accept connections: \[Errno 24\]")
def test_the_front_survives_running_out_of_file_descriptors(
    servers: ServerFactory, loop: str
) -> None:
    server = start_on(servers, loop)
    front = front_pid(server)
    limit = open_fds(front) + 10
    resource.prlimit(front, resource.RLIMIT_NOFILE, (limit, limit))
    clients = []
    for _ in range(25):  # past the limit: accept fails with EMFILE
        sock = socket.socket()
        sock.settimeout(2.0)
        sock.connect_ex(("127.0.0.1", server.port))
        sock.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        clients.append(sock)
    assert server.wait_for_log(SHORTAGE_LINE), server.stderr  # accept met EMFILE
    for sock in clients:
        sock.close()
    # asyncio retries accept once a second, taking a few of the connections left in the
    # backlog (closed by now) each time: the fresh one is served once those are drained.
    wait_until(lambda: serves(server.port), 10.0, "the front accepting again after EMFILE")
    assert front_pid(server) == front, "the front crashed and was restarted"


def serves(port: int) -> bool:
    """Whether a fresh client is answered; not yet while descriptors are short: asyncio leaves it
    in the backlog, libuv accepts it with its reserve descriptor and closes it at once."""
    try:
        return fetch(port, "GET", "/", timeout=2.0).status == 200
    except (OSError, ConnectionClosed):
        return False


@pytest.mark.parametrize("loop", sorted(LOOPS))
@pytest.mark.expect_errors(r"front: cannot accept connections: \[Errno 24\]")
def test_running_out_of_descriptors_logs_one_line_a_second(
    servers: ServerFactory, loop: str
) -> None:
    """Not a traceback per failed accept (asyncio), nor silence (libuv drops the connections):
    one clear line a second while it lasts, and one when it is over."""
    server = start_on(servers, loop, "--keepalive", "60")
    front = front_pid(server)
    assert fetch(server.port, "GET", "/").status == 200  # serving: its limits are set
    limit = open_fds(front) + 10
    resource.prlimit(front, resource.RLIMIT_NOFILE, (limit, limit))
    clients = []
    try:
        for _ in range(25):  # the first ten take the descriptors left and keep them
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=2.0)
            sock.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            clients.append(sock)
        assert server.wait_for_log(SHORTAGE_LINE), server.stderr
        short_since = time.monotonic()
        time.sleep(SHORT_FOR)  # the stimulus: a shortage that lasts, which must not flood the log
    finally:
        for sock in clients:
            sock.close()
    assert server.wait_for_log("front: accepting connections again"), server.stderr
    # The shortage lasts until the front has seen the clients go and a descriptor stays free
    # for a second: on a loaded machine that is well after the stimulus, so count to here.
    elapsed = time.monotonic() - short_since
    lines = [line for line in server.stderr.splitlines() if SHORTAGE_LINE in line]
    assert 1 <= len(lines) <= elapsed + 2, "\n".join(lines)
    assert "Traceback" not in server.stderr and "out of system resource" not in server.stderr
    assert fetch(server.port, "GET", "/", timeout=5.0).status == 200
    assert front_pid(server) == front


@pytest.mark.expect_errors(r"cannot spool a request body in .*\[Errno 24\] Too many open files")
def test_a_body_that_cannot_be_spooled_gets_503(servers: ServerFactory, tmp_path: Path) -> None:
    server = servers.start("echo:application", "-w", "1", "--body-temp-dir", str(tmp_path))
    front = front_pid(server)
    with RawConnection(server.port) as conn:
        assert conn.request("GET", "/").status == 200  # accepted: its descriptor is taken
        limit = open_fds(front)
        resource.prlimit(front, resource.RLIMIT_NOFILE, (limit, limit))  # not one to spare
        response = conn.request("POST", "/", body=b"x" * (2 << 20))  # past the 1 MiB buffer
    assert response.status == 503
    assert server.wait_for_log("cannot spool a request body")
    assert wait_empty(tmp_path) == []
    assert front_pid(server) == front


SLOTS = 1000  # --max-connections of the tests of who gives a slot up
ANSWERED_WITHIN = 1.0  # seconds a new client may wait with every slot taken
GONE_WITHIN = 5.0


def time_newcomer(port: int) -> float:
    """Seconds a new client waits for its answer (it gives up after a few seconds)."""
    started = time.monotonic()
    assert fetch(port, "GET", "/", timeout=GONE_WITHIN).status == 200
    took = time.monotonic() - started
    print(f"a new client with {SLOTS} slots taken got its answer in {took * 1000:.1f} ms")
    return took


def closed_by_server(socks: list[socket.socket]) -> list[int]:
    """Indexes of the sockets the server closed (end of stream waiting)."""
    closed = []
    for i, sock in enumerate(socks):
        sock.setblocking(False)
        try:
            if sock.recv(1) == b"":
                closed.append(i)
        except BlockingIOError:
            pass
        except ConnectionResetError:
            closed.append(i)
    return closed


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_idle_connections_make_room_for_a_new_client(servers: ServerFactory, loop: str) -> None:
    """All slots taken by idle keep-alive connections: the one idle the longest is closed."""
    server = start_on(servers, loop, "--max-connections", str(SLOTS), "--keepalive", "120")
    socks: list[socket.socket] = []
    with descriptors_for(SLOTS):
        try:
            socks = open_idle(server.port, SLOTS)
            assert time_newcomer(server.port) < ANSWERED_WITHIN
            deadline = time.monotonic() + GONE_WITHIN
            while not (closed := closed_by_server(socks)) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            for sock in socks:
                sock.close()
    assert len(closed) == 1, closed
    assert closed[0] < SLOTS // 2, "not one of the connections idle the longest"


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_slowloris_connections_make_room_for_a_new_client(
    servers: ServerFactory, loop: str
) -> None:
    """All slots taken by heads trickling in: the one sending its head the longest goes (503)."""
    server = start_on(servers, loop, "--max-connections", str(SLOTS))
    with descriptors_for(SLOTS), Slowloris(server.port, SLOTS) as slowloris:
        # The attack is under way: the heads have been arriving for longer than the grace a
        # real client's head gets (its first byte ends the wait at once).
        time.sleep(max(0.0, slowloris.started + HEAD_GRACE - time.monotonic()))
        assert time_newcomer(server.port) < ANSWERED_WITHIN
        deadline = time.monotonic() + GONE_WITHIN
        while not slowloris.ended and time.monotonic() < deadline:
            time.sleep(0.05)
        ended = dict(slowloris.ended)
    assert len(ended) == 1, ended
    (index, end), *_ = ended.items()
    assert end.answer.startswith(b"HTTP/1.1 503 "), end.answer
    assert index < SLOTS // 2, "not one of the heads begun the longest ago"


PER_IP = 3


def test_one_address_holds_at_most_max_connections_per_ip(servers: ServerFactory) -> None:
    server = servers.start("hello:application", "--max-connections-per-ip", str(PER_IP))
    held = [RawConnection(server.port) for _ in range(PER_IP)]
    try:
        for conn in held:
            assert conn.request("GET", "/").status == 200
        with RawConnection(server.port) as refused:
            response = refused.read_response()  # answered without asking
            assert (response.status, response.header("Retry-After")) == (503, "1")
            assert refused.at_eof()
        with RawConnection(server.port, source="127.0.0.2") as other:
            assert other.request("GET", "/").status == 200
        assert all(conn.request("GET", "/").status == 200 for conn in held), "one was closed"
        held.pop().close()
        deadline = time.monotonic() + GONE_WITHIN
        while True:  # once the front has seen it close, its slot is free
            with RawConnection(server.port) as again:
                again.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                if again.read_response().status == 200:
                    break
            assert time.monotonic() < deadline, "the closed connection's slot stayed taken"
    finally:
        for conn in held:
            conn.close()
    assert server.wait_for_log("max-connections-per-ip")
