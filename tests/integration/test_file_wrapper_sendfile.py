"""wsgi.file_wrapper responses: the worker hands the open file over and the front sends it.

One worker with one thread: if the thread still had to push the file itself, a client that
does not read would hold it, and every other request would wait behind it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import quote

import pytest

import procs
from harness import SRC_DIR, TESTS_DIR, Server, ServerFactory, wait_until
from rawhttp import RawConnection, fetch, request_bytes

# Far more than the front's response buffer (1 MiB) plus the socket buffers: a thread that had
# to stream this to a client that does not read would be stuck.
HUGE_SIZE = 32 * 1024 * 1024
POLL = 0.01
# tests/shadow hides uvloop from the server, which then runs the standard asyncio loop.
LOOPS = {"uvloop": None, "asyncio": {"PYTHONPATH": f"{SRC_DIR}:{TESTS_DIR / 'shadow'}"}}
WAIT = 10.0


@pytest.fixture(scope="module", params=sorted(LOOPS))
def server(module_servers: ServerFactory, request: pytest.FixtureRequest) -> Server:
    env = LOOPS[request.param]
    return module_servers.start("filewrapper:application", "-w", "1", "--threads", "1", env=env)


@pytest.fixture(scope="module")
def huge(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("files") / "huge.bin"
    path.write_bytes(os.urandom(HUGE_SIZE))
    return path


def url(path: Path, **params: str) -> str:
    extra = "".join(f"&{key}={quote(value)}" for key, value in params.items())
    return f"/?path={quote(str(path))}{extra}"


def wait_for_text(path: Path, text: str) -> bool:
    wait_until(lambda: path.exists() and text in path.read_text(), WAIT, f"{text!r} in {path}")
    return True


def front_fds(server: Server) -> int:
    fronts = [p for p in procs.descendants_and_session(server.pid) if p.name == "maitred: front"]
    assert len(fronts) == 1, fronts
    return len(os.listdir(f"/proc/{fronts[0].pid}/fd"))


def test_the_thread_is_free_while_the_front_sends(server: Server, huge: Path) -> None:
    with RawConnection(server.port) as slow:
        slow.send(request_bytes("GET", url(huge)))
        head = slow.read_head()  # and nothing more for now
        started = time.monotonic()
        other = fetch(server.port, "GET", "/", timeout=5.0)  # needs the only thread
        assert other.status == 200
        assert time.monotonic() - started < 5.0
        slow.read_body(head)
    assert head.header("Content-Length") == str(HUGE_SIZE)
    assert head.body == huge.read_bytes()


def test_close_is_called(server: Server, huge: Path, tmp_path: Path) -> None:
    record = tmp_path / "record"
    response = fetch(server.port, "GET", url(huge, record=str(record)))
    assert response.body == huge.read_bytes()
    assert wait_for_text(record, "close")


def test_declared_length_is_respected(server: Server, huge: Path) -> None:
    with RawConnection(server.port) as conn:
        short = conn.request("GET", url(huge, length="100000"))
        after = conn.request("GET", url(huge, length="10"))
    assert short.header("Content-Length") == "100000"
    assert short.body == huge.read_bytes()[:100000]
    assert after.body == huge.read_bytes()[:10]


def test_offset_of_the_file_is_kept(server: Server, huge: Path) -> None:
    response = fetch(server.port, "GET", url(huge, offset="1000"))
    assert response.header("Content-Length") == str(HUGE_SIZE - 1000)
    assert response.body == huge.read_bytes()[1000:]


def test_without_content_length_the_file_size_is_sent(server: Server, huge: Path) -> None:
    response = fetch(server.port, "GET", url(huge) + "&nolength")
    assert response.header("Content-Length") == str(HUGE_SIZE)
    assert response.body == huge.read_bytes()


def test_head_sends_no_body(server: Server, huge: Path, tmp_path: Path) -> None:
    record = tmp_path / "record"
    with RawConnection(server.port) as conn:
        head = conn.request("HEAD", url(huge, record=str(record)))
        after = conn.request("GET", "/")  # a stray body would be read as this response
    assert head.status == 200
    assert head.header("Content-Length") == str(HUGE_SIZE)
    assert after.status == 200
    assert wait_for_text(record, "close")


@pytest.mark.expect_errors(r"app sent \d+ of its \d+-byte Content-Length")
def test_a_file_shorter_than_its_length_is_cut(server: Server, huge: Path) -> None:
    response = fetch(server.port, "GET", url(huge, length=str(HUGE_SIZE + 10)))
    assert not response.complete


def test_clients_that_leave_cost_no_descriptors(server: Server, huge: Path) -> None:
    fetch(server.port, "GET", "/")
    before = front_fds(server)
    for _ in range(3):
        with RawConnection(server.port) as conn:
            conn.send(request_bytes("GET", url(huge)))
            conn.read_head()
    wait_until(lambda: front_fds(server) <= before, WAIT, "the front's descriptors as before")
    assert fetch(server.port, "GET", "/").status == 200
