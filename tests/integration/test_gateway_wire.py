"""uwsgi and FastCGI listeners spoken to byte by byte, as nginx would (tests/gatewaywire.py).

What nginx never shows a test: kept and closed FastCGI connections, GET_VALUES, a second
request id refused, an aborted request, bad packets (the connection closed, one line logged,
the server unharmed), the peer's word believed only from a trusted peer, and file_wrapper
responses sent by the front while the app's only thread is free.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from fleet import STEP_TIMEOUT, is_gone
from gatewaywire import (
    Client,
    begin,
    end_status,
    fcgi_request,
    params_records,
    params_with,
    read_records,
    record,
    stdin_records,
    stdout_of,
    uwsgi_packet,
)
from haproxyfront import free_port
from harness import Server, ServerFactory, wait_until
from maitred.gateway import fastcgi

LISTENING = re.compile(r"Listening at: (uwsgi|fastcgi)://127\.0\.0\.1:(\d+)")
HUGE_SIZE = 32 * 1024 * 1024  # far past every buffer: a thread pushing it would be stuck
MAX_CONNECTIONS = 50
BODY_TIMEOUT = 1  # seconds: a body that stops arriving is answered 408 after it


def ports(server: Server) -> dict[str, int]:
    return {proto: int(port) for proto, port in LISTENING.findall(server.stderr)}


def binds(*extra: str) -> tuple[str, ...]:
    return ("-b", "uwsgi://127.0.0.1:0", "-b", "fastcgi://127.0.0.1:0", *extra)


@pytest.fixture(scope="module")
def echo(module_servers: ServerFactory, tmp_path_factory: pytest.TempPathFactory) -> Server:
    sock = tmp_path_factory.mktemp("sock") / "fcgi.sock"
    return module_servers.start(
        "echo:application",
        *binds("-b", f"fastcgi://unix:{sock}"),
        "--max-connections", str(MAX_CONNECTIONS),
        "--limit-request-body", str(1024 * 1024),
    )  # fmt: skip


def unix_path(server: Server) -> str:
    match = re.search(r"Listening at: fastcgi://unix:(\S+)", server.stderr)
    assert match, server.stderr
    return match.group(1)


def cgi_response(stdout: bytes) -> tuple[str, dict[str, str], bytes]:
    """(Status field, fields, body) of a FastCGI response's STDOUT."""
    head, _, body = stdout.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines)
    return fields["Status"], fields, body


def fcgi_echo(where: int | str, params: dict[bytes, bytes], body: bytes = b"") -> dict[str, Any]:
    with Client(where) as client:
        client.send(fcgi_request(1, params, body))
        records = client.until_end(1)
    assert end_status(records, 1) == fastcgi.REQUEST_COMPLETE
    status, _, payload = cgi_response(stdout_of(records, 1))
    assert status == "200 OK"
    report: dict[str, Any] = json.loads(payload)
    return report


# --- uwsgi ---


def test_uwsgi_answers_in_http_and_closes(echo: Server) -> None:
    with Client(ports(echo)["uwsgi"]) as client:
        client.send(uwsgi_packet(params_with(b"hello", UWSGI_SCRIPT=b"evil:app"), b"hello"))
        response = client.until_close()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Transfer-Encoding" not in head
    report = json.loads(body)
    assert (report["method"], report["path"], report["body"]) == ("POST", "/a/b", "hello")
    assert "UWSGI_SCRIPT" not in report["environ"]


def test_uwsgi_a_bad_packet_closes_the_connection_and_is_logged_once(echo: Server) -> None:
    with Client(ports(echo)["uwsgi"]) as client:
        client.send(uwsgi_packet(params_with(), modifier1=9))
        assert client.until_close() == b""
    assert echo.wait_for_log(r"closing a uwsgi connection from 127\.0\.0\.1: .*modifier1 9")
    assert len(re.findall("modifier1 9", echo.stderr)) == 1
    with Client(ports(echo)["uwsgi"]) as client:  # and the server goes on
        client.send(uwsgi_packet(params_with()))
        assert client.until_close().startswith(b"HTTP/1.1 200 OK")


def test_uwsgi_a_body_over_the_limit_is_answered_413(echo: Server) -> None:
    with Client(ports(echo)["uwsgi"]) as client:
        client.send(uwsgi_packet(params_with(b"x" * (2 * 1024 * 1024))))  # the body never comes
        assert client.until_close().startswith(b"HTTP/1.1 413 ")


def test_uwsgi_a_body_refused_before_it_arrives_is_logged_with_its_request(
    servers: ServerFactory, tmp_path: Path
) -> None:
    """As over HTTP (tests/integration/test_locations.py): refused by its location's rule."""
    config = tmp_path / "maitred.toml"
    config.write_text('[[locations]]\npath = "/a/"\nmax-body-size = "1M"\n')
    log = tmp_path / "access.log"
    server = servers.start(
        "echo:application",
        *binds("-c", str(config)),
        "--access-logfile", str(log),
        "--access-log-format", "json",
    )  # fmt: skip
    with Client(ports(server)["uwsgi"]) as client:
        client.send(uwsgi_packet(params_with(b"x" * (2 * 1024 * 1024))))  # the body never comes
        assert client.until_close().startswith(b"HTTP/1.1 413 ")
    wait_until(lambda: log.exists() and log.read_text().endswith("\n"), 10.0, "a line logged")
    (line,) = log.read_text().splitlines()
    entry = json.loads(line)
    assert (entry["request"], entry["status"]) == ("POST /a/b?x=1 HTTP/1.1", 413)


# --- FastCGI ---


def test_fastcgi_keep_conn_carries_several_requests(echo: Server) -> None:
    with Client(ports(echo)["fastcgi"]) as client:
        for rid in (1, 2, 1):
            client.send(fcgi_request(rid, params_with(b"body"), b"body", keep_conn=True))
            records = client.until_end(rid)
            assert end_status(records, rid) == fastcgi.REQUEST_COMPLETE
            status, fields, body = cgi_response(stdout_of(records, rid))
            assert status == "200 OK" and "Connection" not in fields
            assert json.loads(body)["body"] == "body"
            # The stream ends with an empty STDOUT just before END_REQUEST.
            assert records[-2:][0] == (fastcgi.STDOUT, rid, b"")
            client.take()
        assert not client.eof


def test_fastcgi_without_keep_conn_the_server_closes(echo: Server) -> None:
    with Client(ports(echo)["fastcgi"]) as client:
        client.send(fcgi_request(1, params_with(), keep_conn=False))
        records = read_records(client.until_close())
    assert end_status(records, 1) == fastcgi.REQUEST_COMPLETE


def test_fastcgi_a_body_without_content_length_reaches_the_app(echo: Server) -> None:
    """What nginx sends with fastcgi_request_buffering off for a chunked upload."""
    params = params_with(REQUEST_METHOD=b"POST", CONTENT_LENGTH=b"")
    report = fcgi_echo(ports(echo)["fastcgi"], params, b"sent without a length")
    assert report["body"] == "sent without a length"
    assert report["environ"]["CONTENT_LENGTH"] == str(len(b"sent without a length"))


def test_fastcgi_get_values_is_answered_honestly(echo: Server) -> None:
    names = [b"FCGI_MAX_CONNS", b"FCGI_MAX_REQS", b"FCGI_MPXS_CONNS"]
    content = b"".join(fastcgi.encode_pair((name, b"")) for name in names)
    with Client(ports(echo)["fastcgi"]) as client:
        client.send(record(fastcgi.GET_VALUES, 0, content))
        while not read_records(client.received) and client._fill():
            pass
        [(kind, rid, answer)] = read_records(client.received)
    assert (kind, rid) == (fastcgi.GET_VALUES_RESULT, 0)
    values = fastcgi.FastCGIParser(fastcgi.Limits(), 0)._pairs(memoryview(answer))
    assert values == {
        b"FCGI_MAX_CONNS": str(MAX_CONNECTIONS).encode(),
        b"FCGI_MAX_REQS": str(MAX_CONNECTIONS).encode(),
        b"FCGI_MPXS_CONNS": b"0",
    }


def test_fastcgi_a_second_request_id_is_refused_while_one_is_in_progress(echo: Server) -> None:
    with Client(ports(echo)["fastcgi"]) as client:
        client.send(begin(1) + params_records(1, params_with()))
        client.send(fcgi_request(2, params_with()) + stdin_records(1, b""))
        records = client.until_end(1)
        while end_status(records, 2) is None and client._fill():
            records = read_records(client.received)
    assert end_status(records, 2) == fastcgi.CANT_MPX_CONN
    assert end_status(records, 1) == fastcgi.REQUEST_COMPLETE
    assert stdout_of(records, 2) == b""


def test_fastcgi_abort_mid_body_ends_the_request(echo: Server) -> None:
    with Client(ports(echo)["fastcgi"]) as client:
        client.send(begin(1) + params_records(1, params_with(b"x" * 1000)))
        client.send(record(fastcgi.STDIN, 1, b"x" * 10) + record(fastcgi.ABORT_REQUEST, 1))
        records = read_records(client.until_close())
    assert end_status(records, 1) == fastcgi.REQUEST_COMPLETE
    assert stdout_of(records, 1) == b""  # the app never ran


def test_fastcgi_bad_records_close_the_connection_and_are_logged(echo: Server) -> None:
    with Client(ports(echo)["fastcgi"]) as client:
        client.send(begin(1) + record(fastcgi.PARAMS, 1, b"\x05\x03ab") + record(fastcgi.PARAMS, 1))
        assert client.until_close() == b""
    assert echo.wait_for_log(r"closing a FastCGI connection from 127\.0\.0\.1: .*runs past")
    assert fcgi_echo(ports(echo)["fastcgi"], params_with())["method"] == "GET"


# --- responses stream back ---


@pytest.fixture(scope="module")
def streaming(
    module_servers: ServerFactory, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Server, dict[str, int | str]]:
    sock = tmp_path_factory.mktemp("sock") / "uwsgi.sock"
    server = module_servers.start("streaming:application", *binds("-b", f"uwsgi://unix:{sock}"))
    found = re.search(r"Listening at: uwsgi://unix:(\S+)", server.stderr)
    assert found, server.stderr
    return server, {**ports(server), "uwsgi-unix": found.group(1)}


def body_so_far(proto: str, received: bytes) -> bytes:
    if proto == "fastcgi":
        return stdout_of(read_records(received), 1).partition(b"\r\n\r\n")[2]
    return received.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize("proto", ["uwsgi", "uwsgi-unix", "fastcgi"])
def test_a_response_streams_back_as_the_app_writes_it(
    streaming: tuple[Server, dict[str, int | str]], tmp_path: Path, proto: str
) -> None:
    """The app yields its first line, then waits for the gate the test opens only once that
    line has arrived: a front that held the whole response would deadlock it."""
    _, where = streaming
    gate = tmp_path / "gate"
    params = params_with(QUERY_STRING=f"gate={gate}".encode())
    request = fcgi_request(1, params) if proto == "fastcgi" else uwsgi_packet(params)
    with Client(where[proto], timeout=30.0) as client:
        client.send(request)
        while not body_so_far(proto, client.received).startswith(b"first\n"):
            assert client._fill(), client.received
        gate.touch()
        client.until_close() if proto != "fastcgi" else client.until_end(1)
        assert body_so_far(proto, client.received) == b"first\nsecond\n"


def test_fastcgi_abort_of_a_running_request_ends_it(
    streaming: tuple[Server, dict[str, int | str]], tmp_path: Path
) -> None:
    """ABORT_REQUEST while the app runs: END_REQUEST at once, the connection closed, the
    app's thread free at its next write, and the server goes on."""
    _, where = streaming
    gate = tmp_path / "gate"
    params = params_with(QUERY_STRING=f"gate={gate}".encode())
    with Client(where["fastcgi"], timeout=30.0) as client:
        client.send(fcgi_request(1, params))
        while not body_so_far("fastcgi", client.received).startswith(b"first\n"):
            assert client._fill(), client.received
        client.send(record(fastcgi.ABORT_REQUEST, 1))
        received = client.until_close()
    assert end_status(read_records(received), 1) == fastcgi.REQUEST_COMPLETE
    # Ended before the gate opened: nothing after the first line (not even the app's
    # "gate timed out", which a request left running would write at last).
    assert body_so_far("fastcgi", received) == b"first\n"
    gate.touch()  # the app writes again, and learns it was cancelled
    with Client(where["fastcgi"], timeout=30.0) as client:
        client.send(fcgi_request(1, params))
        client.until_end(1)
        assert body_so_far("fastcgi", client.received) == b"first\nsecond\n"


# --- every request it read is answered, or logged with its reason ---


@pytest.fixture(scope="module")
def logged(
    module_servers: ServerFactory, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Server, Path]:
    log = tmp_path_factory.mktemp("logs") / "access.log"
    server = module_servers.start(
        "echo:application",
        *binds(),
        "--limit-request-body", str(1024 * 1024),
        "--body-timeout", str(BODY_TIMEOUT),
        "--access-logfile", str(log),
        "--access-log-format", "json",
    )  # fmt: skip
    return server, log


def access_entry(log: Path, path: str) -> dict[str, Any]:
    """The access log's line for the request of `path`, once written."""
    found: list[dict[str, Any]] = []

    def written() -> bool:
        lines = log.read_text().splitlines() if log.exists() else []
        found[:] = [entry for entry in map(json.loads, lines) if f" {path} " in entry["request"]]
        return bool(found)

    wait_until(written, 10.0, f"the access log's line for {path}")
    (entry,) = found
    return entry


def params_for(path: str, body_size: int) -> dict[bytes, bytes]:
    where = path.encode()
    size = str(body_size).encode()
    return params_with(
        REQUEST_METHOD=b"POST",
        CONTENT_LENGTH=size,
        PATH_INFO=where,
        REQUEST_URI=where,
        QUERY_STRING=b"",
    )


def status_of_partial(server: Server, proto: str, params: dict[bytes, bytes], body: bytes) -> str:
    """Send a request head and the first bytes of its body, and no more: the status of the
    answer ("413 Payload Too Large"), read in its protocol's framing up to the close or the
    END_REQUEST."""
    with Client(ports(server)[proto], timeout=10.0 * BODY_TIMEOUT) as client:
        if proto == "uwsgi":
            client.send(uwsgi_packet(params, body))
            line = client.until_close().partition(b"\r\n")[0]
            return line.removeprefix(b"HTTP/1.1 ").decode("latin-1")
        stdin = record(fastcgi.STDIN, 1, body) if body else b""
        client.send(begin(1) + params_records(1, params) + stdin)
        records = client.until_end(1)
        assert end_status(records, 1) == fastcgi.REQUEST_COMPLETE
        return cgi_response(stdout_of(records, 1))[0]


@pytest.mark.parametrize("proto", ["uwsgi", "fastcgi"])
def test_a_body_over_the_servers_limit_is_logged_with_its_request(
    logged: tuple[Server, Path], proto: str
) -> None:
    """--limit-request-body (no location): the 413 answers the request its variables name."""
    server, log = logged
    path = f"/oversize-{proto}"
    params = params_for(path, 2 * 1024 * 1024)  # the body never comes
    assert status_of_partial(server, proto, params, b"").startswith("413 ")
    entry = access_entry(log, path)
    assert (entry["request"], entry["status"]) == (f"POST {path} HTTP/1.1", 413)


@pytest.mark.parametrize("proto", ["uwsgi", "fastcgi"])
def test_a_body_that_stops_arriving_is_answered_408(
    logged: tuple[Server, Path], proto: str
) -> None:
    """Too slow, as over HTTP: the request is answered in its protocol and logged."""
    server, log = logged
    path = f"/stalled-{proto}"
    assert status_of_partial(server, proto, params_for(path, 1000), b"x" * 10).startswith("408 ")
    entry = access_entry(log, path)
    assert (entry["request"], entry["status"]) == (f"POST {path} HTTP/1.1", 408)


def test_fastcgi_a_bad_record_mid_body_logs_its_request(logged: tuple[Server, Path]) -> None:
    """The connection closes (no answer can be framed), and the request whose body it cut
    short is logged as one cut short is over HTTP, beside the error log's line."""
    server, log = logged
    path = "/cut-by-a-bad-record"
    with Client(ports(server)["fastcgi"]) as client:
        client.send(begin(1) + params_records(1, params_for(path, 1000)))
        client.send(record(fastcgi.STDIN, 1, b"x" * 10) + b"\x02" + bytes(7))  # version 2
        assert client.until_close() == b""
    assert server.wait_for_log(r"closing a FastCGI connection from 127\.0\.0\.1: .*version 2")
    entry = access_entry(log, path)
    assert (entry["request"], entry["status"]) == (f"POST {path} HTTP/1.1", 400)


# --- a USR2 upgrade keeps what each listener speaks ---


def test_gateway_listeners_keep_their_protocol_across_an_upgrade(
    servers: ServerFactory, tmp_path: Path
) -> None:
    """The new master inherits the sockets nginx points at and serves each in its protocol."""
    uwsgi_port, fastcgi_port = free_port(), free_port()
    pidfile = tmp_path / "maitred.pid"
    server = servers.start(
        "echo:application",
        "-b", f"uwsgi://127.0.0.1:{uwsgi_port}",
        "-b", f"fastcgi://127.0.0.1:{fastcgi_port}",
        "--pidfile", str(pidfile),
        check_fds=False,  # the upgraded master is not the one the harness started
    )  # fmt: skip
    os.kill(server.pid, signal.SIGUSR2)
    wait_until(
        lambda: pidfile.exists() and pidfile.read_text().strip() not in ("", str(server.pid)),
        STEP_TIMEOUT,
        "the new master's pid",
    )
    wait_until(lambda: is_gone(server.pid), STEP_TIMEOUT, "the old master to leave")
    new_master = int(pidfile.read_text())
    try:
        with Client(uwsgi_port) as client:
            client.send(uwsgi_packet(params_with()))
            assert client.until_close().startswith(b"HTTP/1.1 200 OK")
        assert fcgi_echo(fastcgi_port, params_with())["method"] == "GET"
    finally:
        os.kill(new_master, signal.SIGTERM)
        wait_until(lambda: is_gone(new_master), STEP_TIMEOUT, "the new master to exit")


# --- who the client is ---


def test_a_trusted_proxy_names_the_client_and_scheme(echo: Server) -> None:
    report = fcgi_echo(ports(echo)["fastcgi"], params_with(HTTPS=b"on"))
    environ = report["environ"]
    assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == ("203.0.113.9", "40000")
    assert environ["wsgi.url_scheme"] == "https"
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("example.com", "80")


def test_a_unix_peer_is_believed_only_when_unix_is_trusted(
    echo: Server, module_servers: ServerFactory, tmp_path: Path
) -> None:
    environ = fcgi_echo(unix_path(echo), params_with(HTTPS=b"on"))["environ"]
    assert (environ["REMOTE_ADDR"], environ["wsgi.url_scheme"]) == ("", "http")
    sock = tmp_path / "trusted.sock"
    trusting = module_servers.start(
        "echo:application", "-b", f"fastcgi://unix:{sock}", "--forwarded-allow-ips", "unix"
    )
    environ = fcgi_echo(unix_path(trusting), params_with(HTTPS=b"on"))["environ"]
    assert (environ["REMOTE_ADDR"], environ["wsgi.url_scheme"]) == ("203.0.113.9", "https")
    trusting.stop()


def test_an_untrusted_peer_is_not_believed(module_servers: ServerFactory) -> None:
    server = module_servers.start("echo:application", *binds("--forwarded-allow-ips", "10.9.9.9"))
    for proto in ("uwsgi", "fastcgi"):
        if proto == "fastcgi":
            environ = fcgi_echo(ports(server)[proto], params_with(HTTPS=b"on"))["environ"]
        else:
            with Client(ports(server)[proto]) as client:
                client.send(uwsgi_packet(params_with(HTTPS=b"on")))
                environ = json.loads(client.until_close().partition(b"\r\n\r\n")[2])["environ"]
        assert environ["REMOTE_ADDR"] == "127.0.0.1", proto
        assert environ["wsgi.url_scheme"] == "http", proto
    server.stop()


# --- wsgi.file_wrapper: the front sends the file, the thread is free ---


@pytest.fixture(scope="module")
def huge(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("files") / "huge.bin"
    path.write_bytes(os.urandom(HUGE_SIZE))
    return path


@pytest.fixture(scope="module")
def one_thread(module_servers: ServerFactory) -> Server:
    return module_servers.start("filewrapper:application", "-w", "1", "--threads", "1", *binds())


@pytest.mark.parametrize("proto", ["uwsgi", "fastcgi"])
def test_the_thread_is_free_while_the_front_sends_a_file(
    one_thread: Server, huge: Path, proto: str
) -> None:
    port = ports(one_thread)[proto]
    params = params_with(PATH_INFO=b"/", QUERY_STRING=f"path={huge}".encode())
    request = uwsgi_packet(params) if proto == "uwsgi" else fcgi_request(1, params)
    with Client(port, timeout=30.0) as slow:
        slow.send(request)  # and read nothing for now: the front holds the rest
        with Client(ports(one_thread)["uwsgi"]) as other:  # needs the only thread
            other.send(uwsgi_packet(params_with(PATH_INFO=b"/", QUERY_STRING=b"")))
            assert other.until_close().startswith(b"HTTP/1.1 200 OK")
        if proto == "uwsgi":
            body = slow.until_close().partition(b"\r\n\r\n")[2]
        else:
            records = slow.until_end(1)
            body = cgi_response(stdout_of(records, 1))[2]
            # As few records as they can be (each write of the front's is one): the head,
            # full ones, the rest, the end of the stream.
            written = sum(kind == fastcgi.STDOUT for kind, _, _ in records)
            assert written <= HUGE_SIZE // fastcgi.MAX_CONTENT + 4, written
    assert body == huge.read_bytes()


# The gateway listeners share the HTTP listener's connection timeouts (front/timeouts.py).
GATEWAY_KEEPALIVE = 1.0
GATEWAY_HEADER_TIMEOUT = 2.0
TIMEOUT_SLACK = 2.0  # the sweep's granularity plus a loaded machine's scheduling delays


@pytest.fixture(scope="module")
def timed(module_servers: ServerFactory) -> Server:
    return module_servers.start(
        "echo:application",
        *binds(),
        "--keepalive", str(GATEWAY_KEEPALIVE),
        "--header-timeout", str(GATEWAY_HEADER_TIMEOUT),
    )  # fmt: skip


def closed_after(client: Client) -> tuple[bytes, float]:
    """What the server sent until it closed the connection, and the seconds that took."""
    started = time.monotonic()
    data = client.until_close()
    return data, time.monotonic() - started


def test_fastcgi_an_idle_kept_connection_is_closed_after_the_keepalive(timed: Server) -> None:
    with Client(ports(timed)["fastcgi"], GATEWAY_KEEPALIVE + TIMEOUT_SLACK) as client:
        client.send(fcgi_request(1, params_with(), keep_conn=True))
        assert end_status(client.until_end(1), 1) == fastcgi.REQUEST_COMPLETE
        client.take()
        data, after = closed_after(client)
    assert data == b""  # silently, as an idle HTTP connection
    assert GATEWAY_KEEPALIVE - 0.1 <= after <= GATEWAY_KEEPALIVE + TIMEOUT_SLACK, after


@pytest.mark.parametrize("proto", ["uwsgi", "fastcgi"])
def test_a_connection_that_sends_nothing_is_closed_after_the_keepalive(
    timed: Server, proto: str
) -> None:
    with Client(ports(timed)[proto], GATEWAY_KEEPALIVE + TIMEOUT_SLACK) as client:
        data, after = closed_after(client)
    assert data == b""
    assert GATEWAY_KEEPALIVE - 0.1 <= after <= GATEWAY_KEEPALIVE + TIMEOUT_SLACK, after


@pytest.mark.parametrize("proto", ["uwsgi", "fastcgi"])
def test_a_half_sent_request_is_dropped_after_the_header_timeout(timed: Server, proto: str) -> None:
    whole = (
        uwsgi_packet(params_with())
        if proto == "uwsgi"
        else fcgi_request(1, params_with(), keep_conn=True)
    )
    with Client(ports(timed)[proto], GATEWAY_HEADER_TIMEOUT + TIMEOUT_SLACK) as client:
        client.send(whole[: len(whole) // 2])
        data, after = closed_after(client)
    # No request to frame an answer in: closed with a log line, as a bad packet is.
    assert data == b""
    assert GATEWAY_HEADER_TIMEOUT - 0.1 <= after <= GATEWAY_HEADER_TIMEOUT + TIMEOUT_SLACK, after
    named = {"uwsgi": "uwsgi", "fastcgi": "FastCGI"}[proto]
    line = rf"closing a {named} connection from 127\.0\.0\.1: request head too slow"
    assert timed.wait_for_log(line), timed.stderr
