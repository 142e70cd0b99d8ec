"""The access log (combined, json, templates), request ids, timings, and the error log file."""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import closing
import pytest
import streaming

from harness import APPS_DIR, Server, ServerFactory, run_cli, spawn, wait_until
from rawhttp import RawConnection, fetch, request_bytes

WAIT = 10.0
POLL = 0.01
GATE_SHUT = 0.3  # seconds the test holds the app thread
# The second request reaches the front a little after the test sent it; the slack bounds that.
SEND_SLACK = 0.1
HEX_ID = re.compile(r"[0-9a-f]{32}")
COMBINED = re.compile(
    r'(?P<addr>\S+) - - \[(?P<time>[^\]]+)\] "(?P<request>(?:[^"\\]|\\.)*)" (?P<status>\d{3}) '
    r'(?P<size>\d+|-) "(?P<referer>(?:[^"\\]|\\.)*)" "(?P<agent>(?:[^"\\]|\\.)*)"'
)


def log_lines(path: Path, count: int) -> list[str]:
    """The first `count` lines of a log file, waiting for them (the front writes per turn).

    Only whole lines count: a read racing the front's write may see a line's first part.
    """
    deadline = time.monotonic() + WAIT
    while True:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        lines = text.split("\n")[:-1]  # the last part is empty, or a line still being written
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(POLL)


class LogReader:
    """Reads the lines a server appended to its access log since the last read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen = 0

    def next(self, count: int = 1) -> list[str]:
        lines = log_lines(self.path, self.seen + count)[self.seen :]
        self.seen += len(lines)
        assert len(lines) == count, lines
        return lines

    def records(self, count: int = 1) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.next(count)]


@pytest.fixture(scope="module")
def json_server(
    module_servers: ServerFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, LogReader]]:
    base = tmp_path_factory.mktemp("jsonlog")
    (base / "files").mkdir()
    (base / "files" / "a.txt").write_bytes(b"static\n")
    log = base / "access.log"
    server = module_servers.start(
        "echo:application",
        "-w",
        "1",
        "--access-logfile",
        str(log),
        "--access-log-format",
        "json",
        "--static",
        f"/static={base / 'files'}",
    )
    yield server, LogReader(log)


def test_json_lines_parse_with_quotes_backslashes_and_control_characters(
    json_server: tuple[Server, LogReader],
) -> None:
    server, log = json_server
    target = '/q"uo\\te/%22?x="y\\z"&t=%09'
    agent = 'agent\t"quoted" \\back\\slash\t'
    referer = '"\\" \\\\ "" \t'
    response = fetch(server.port, "GET", target, [("User-Agent", agent), ("Referer", referer)])
    assert response.status == 200
    (record,) = log.records()
    assert record["target"] == target
    assert record["request"] == f"GET {target} HTTP/1.1"
    assert record["user_agent"] == agent
    assert record["referer"] == referer
    assert record["status"] == 200
    assert record["body_bytes"] == len(response.body)
    assert record["method"] == "GET"
    assert record["query"] == 'x="y\\z"&t=%09'


def test_json_line_for_non_ascii_header_bytes(json_server: tuple[Server, LogReader]) -> None:
    server, log = json_server
    with RawConnection(server.port) as conn:
        conn.send(b"GET /cafe HTTP/1.1\r\nHost: x\r\nUser-Agent: caf\xe9 \xff\r\n\r\n")
        response = conn.read_response()
    assert response.status == 200
    (record,) = log.records()
    assert record["user_agent"] == "caf\xe9 \xff"  # each byte as the latin-1 character


def test_request_id_from_the_client(json_server: tuple[Server, LogReader]) -> None:
    server, log = json_server
    response = fetch(server.port, "GET", "/", [("X-Request-ID", "req-42.abc_DEF")])
    assert response.header("X-Request-ID") == "req-42.abc_DEF"
    assert json.loads(response.body)["environ"]["maitred.request_id"] == "req-42.abc_DEF"
    assert log.records()[0]["request_id"] == "req-42.abc_DEF"


def test_request_id_generated_when_absent(json_server: tuple[Server, LogReader]) -> None:
    server, log = json_server
    first = fetch(server.port, "GET", "/")
    second = fetch(server.port, "GET", "/")
    ids = [first.header("X-Request-ID"), second.header("X-Request-ID")]
    assert all(HEX_ID.fullmatch(i or "") for i in ids) and ids[0] != ids[1]
    assert json.loads(first.body)["environ"]["maitred.request_id"] == ids[0]
    assert [r["request_id"] for r in log.records(2)] == ids


@pytest.mark.parametrize("bad", ["has space", "x" * 201, 'q"uote', "back\\slash"])
def test_unusable_client_request_ids_are_replaced(
    json_server: tuple[Server, LogReader], bad: str
) -> None:
    server, log = json_server
    response = fetch(server.port, "GET", "/", [("X-Request-ID", bad)])
    assert HEX_ID.fullmatch(response.header("X-Request-ID") or "")
    assert log.records()[0]["request_id"] == response.header("X-Request-ID")


def test_static_requests_are_logged(json_server: tuple[Server, LogReader]) -> None:
    server, log = json_server
    response = fetch(server.port, "GET", "/static/a.txt")
    assert response.body == b"static\n"
    (record,) = log.records()
    assert (record["status"], record["body_bytes"], record["path"]) == (200, 7, "/static/a.txt")
    assert record["request_id"] == response.header("X-Request-ID")
    assert record["app_time"] == 0.0 and record["queue_time"] == 0.0


def test_the_fronts_own_errors_are_logged(json_server: tuple[Server, LogReader]) -> None:
    server, log = json_server
    with RawConnection(server.port) as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n")
        assert conn.read_response().status == 400
    (record,) = log.records()
    assert (record["status"], record["request"]) == (400, "-")


@pytest.fixture(scope="module")
def timed_server(
    module_servers: ServerFactory, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Server, LogReader]:
    log = tmp_path_factory.mktemp("timedlog") / "access.log"
    server = module_servers.start(
        "streaming:application",
        "-w",
        "1",
        "--threads",
        "1",
        "--access-logfile",
        str(log),
        "--access-log-format",
        "json",
    )
    return server, LogReader(log)


def test_queue_app_and_total_times(timed_server: tuple[Server, LogReader], tmp_path: Path) -> None:
    """The first request holds the only thread until a gate opens; the second queues behind it.
    Both therefore take at least as long as the test keeps the gate shut."""
    server, log = timed_server
    gate = tmp_path / "gate"
    with RawConnection(server.port) as first, RawConnection(server.port) as second:
        first.send(request_bytes("GET", f"/?gate={gate}"))
        head = first.read_head()
        assert first.read_chunk() == streaming.FIRST  # the thread is taken
        second.send(request_bytes("GET", "/?n=1"))
        time.sleep(GATE_SHUT)  # the stimulus: the time both requests are measured to take
        gate.touch()
        first.read_body(head)
        assert second.read_response().status == 200
    held, queued = log.records(2)
    assert float(str(held["app_time"])) >= GATE_SHUT
    assert float(str(held["queue_time"])) < GATE_SHUT
    assert float(str(queued["queue_time"])) >= GATE_SHUT - SEND_SLACK
    for record in (held, queued):
        app, total = float(str(record["app_time"])), float(str(record["request_time"]))
        assert total >= app + float(str(record["queue_time"])) - 0.001


@pytest.fixture(scope="module")
def combined_server(
    module_servers: ServerFactory, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Server, LogReader]:
    log = tmp_path_factory.mktemp("combined") / "access.log"
    server = module_servers.start(
        "echo:application", "-w", "1", "--access-logfile", str(log), "--request-id-header", ""
    )
    return server, LogReader(log)


def test_combined_format_is_the_default(combined_server: tuple[Server, LogReader]) -> None:
    server, log = combined_server
    headers = [("Referer", 'http://example.com/p"q'), ("User-Agent", 'ua "x" \\ y\tz')]
    response = fetch(server.port, "GET", '/a"b?c=\\', headers)
    (line,) = log.next()
    match = COMBINED.fullmatch(line)
    assert match, line
    assert match["addr"] == "127.0.0.1"
    assert match["request"] == "GET /a\\x22b?c=\\x5C HTTP/1.1"
    assert (match["status"], match["size"]) == ("200", str(len(response.body)))
    assert match["referer"] == "http://example.com/p\\x22q"
    assert match["agent"] == "ua \\x22x\\x22 \\x5C y\\x09z"


def test_request_ids_can_be_turned_off(combined_server: tuple[Server, LogReader]) -> None:
    server, log = combined_server
    response = fetch(server.port, "GET", "/", [("X-Request-ID", "abc")])
    assert response.header("X-Request-ID") is None
    assert "maitred.request_id" not in json.loads(response.body)["environ"]
    log.next()


def test_template_format_stdout_and_error_log_file(tmp_path: Path) -> None:
    error_log = tmp_path / "error.log"
    template = '{remote_addr} {request_id} "{request}" {status} {http_x_custom} {scheme}'
    spawned = spawn(
        [
            "-b",
            "127.0.0.1:0",
            "--chdir",
            str(APPS_DIR),
            "--pythonpath",
            str(APPS_DIR),
            "-w",
            "1",
            "--access-logfile",
            "-",
            "--access-log-format",
            template,
            "--error-logfile",
            str(error_log),
            "--request-id-header",
            "X-Trace-Id",
            "hello:application",
        ],
        APPS_DIR,
    )
    try:
        deadline = time.monotonic() + WAIT
        match = None
        while match is None and time.monotonic() < deadline:
            text = error_log.read_text() if error_log.exists() else ""
            match = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", text)
            time.sleep(POLL)
        assert match, spawned.output()
        response = fetch(int(match[1]), "GET", "/x", [("X-Custom", 'v "1"'), ("X-Trace-Id", "t-1")])
        assert response.header("X-Trace-Id") == "t-1"
        line = spawned.stdout.wait_for(r"127\.0\.0\.1 t-1 .*\n", WAIT)
        assert line, spawned.output()
        assert line[0] == '127.0.0.1 t-1 "GET /x HTTP/1.1" 200 v \\x221\\x22 http\n'
        spawned.proc.send_signal(signal.SIGTERM)
        spawned.proc.wait(WAIT)
    finally:
        spawned.stop()
    assert "Listening at" not in spawned.stderr.text
    assert "t-1" not in error_log.read_text()  # access lines stay out of the error log


def test_unknown_format_field_is_a_usage_error() -> None:
    result = run_cli(["--access-log-format", "{remote_addr} {nonsense}"])
    assert result.returncode == 2
    assert "access-log-format" in result.stderr


def test_an_app_that_sets_the_request_id_gets_no_second_one(servers: ServerFactory) -> None:
    server = servers.start("ownrequestid:application", "-w", "1")
    response = fetch(server.port, "GET", "/?id=app-1", [("X-Request-ID", "client-1")])
    assert response.header_values("X-Request-ID") == ["app-1"]


# --- clients that leave before their response is complete: logged as nginx logs them ---


def json_logged(
    servers: ServerFactory, tmp_path: Path, app: str, *extra: str
) -> tuple[Server, LogReader]:
    log = tmp_path / "access.log"
    args = ["--access-logfile", str(log), "--access-log-format", "json", *extra]
    return servers.start(app, "-w", "1", "--threads", "1", *args), LogReader(log)


def wait_exists(path: Path) -> None:
    wait_until(path.exists, WAIT, f"{path} to appear")


# Seconds the running request sleeps: both clients must leave while it runs, after the second
# request has been read; on a loaded machine that setup has taken longer than half a second.
RUNS_FOR = 3.0


def test_a_client_gone_before_its_response_began_is_logged_499(
    servers: ServerFactory, tmp_path: Path
) -> None:
    """One request runs (the only thread sleeps), one waits for the thread; both clients leave.
    The waiting one is logged 499 at once and never runs; the running one is logged 499 when
    its thread is done, and the thread then serves again."""
    server, log = json_logged(servers, tmp_path, "slow:application")
    running, queued = tmp_path / "running", tmp_path / "queued"
    with RawConnection(server.port) as first:
        first.send(request_bytes("GET", f"/?s={RUNS_FOR}&mark={running}"))
        wait_exists(running)
        with RawConnection(server.port) as second:
            second.send(request_bytes("GET", f"/?mark={queued}"))
            # The front has read it (and queued it) before its client leaves.
            wait_until(second.read_by_server, WAIT, "the second request read by the front")
    gone_while_queued, gone_while_running = log.records(2)
    assert (gone_while_queued["status"], gone_while_queued["body_bytes"]) == (499, 0)
    assert str(gone_while_queued["query"]).startswith("mark=")
    assert (gone_while_running["status"], gone_while_running["body_bytes"]) == (499, 0)
    assert str(gone_while_running["query"]).startswith(f"s={RUNS_FOR}")
    assert not queued.exists(), "a request whose client had left was run"
    assert fetch(server.port, "GET", "/").status == 200
    assert log.records()[0]["status"] == 200


def test_a_client_gone_mid_response_is_logged_with_the_bytes_sent(
    servers: ServerFactory, tmp_path: Path
) -> None:
    """The status that was sent and the body bytes written so far (nginx's $body_bytes_sent);
    the app is closed at its next write (CANCEL) and its only thread serves again."""
    server, log = json_logged(servers, tmp_path, "closing:application")
    record = tmp_path / "record"
    with RawConnection(server.port) as conn:
        conn.send(request_bytes("GET", f"/?mode=endless&record={record}"))
        assert conn.read_head().status == 200
        assert conn.read_chunk()
    (entry,) = log.records()
    assert entry["status"] == 200
    assert int(str(entry["body_bytes"])) >= len(closing.ENDLESS_CHUNK)  # the chunk it read
    assert "close" in record.read_text().split()
    assert fetch(server.port, "GET", f"/?record={tmp_path / 'again'}").status == 200


def test_a_client_gone_mid_body_is_logged_400(servers: ServerFactory, tmp_path: Path) -> None:
    """As nginx logs a request body cut short ("client prematurely closed connection")."""
    server, log = json_logged(servers, tmp_path, "echo:application")
    with RawConnection(server.port) as conn:
        conn.send(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
        wait_until(conn.read_by_server, WAIT, "the head read by the front")  # before it leaves
    (entry,) = log.records()
    assert (entry["status"], entry["path"], entry["body_bytes"]) == (400, "/upload", 0)


def test_a_body_over_the_limit_is_logged_413_with_its_request(
    servers: ServerFactory, tmp_path: Path
) -> None:
    """Refused on its Content-Length, before a byte of its body: still a known request."""
    limit = ("--limit-request-body", str(1024 * 1024))
    server, log = json_logged(servers, tmp_path, "echo:application", *limit)
    head = [("Content-Length", str(50 * 1024 * 1024)), ("Expect", "100-continue")]
    with RawConnection(server.port) as conn:
        conn.send(request_bytes("POST", "/upload", head))
        answer = conn.read_response("POST")
    assert answer.status == 413  # at once: no 100 Continue for a body that is refused
    (entry,) = log.records()
    assert (entry["request"], entry["status"]) == ("POST /upload HTTP/1.1", 413)
    assert entry["request_id"] == answer.header("X-Request-ID")
