"""HTTP/1.1 on the wire: persistence, pipelining, HEAD, 100-continue, chunking, streaming."""

from __future__ import annotations

import email.utils
import json
import re
from datetime import datetime, timezone
from pathlib import Path

import hello
import pytest
import streaming

from harness import Server, ServerFactory
from rawhttp import ConnectionClosed, RawConnection, chunked, fetch, request_bytes

IMF_FIXDATE = re.compile(r"^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$")


@pytest.fixture(scope="module")
def hello_server(module_servers: ServerFactory) -> Server:
    return module_servers.start("hello:application", "-w", "1")


@pytest.fixture(scope="module")
def echo_server(module_servers: ServerFactory) -> Server:
    return module_servers.start("echo:application", "-w", "1")


@pytest.fixture(scope="module")
def slow_server(module_servers: ServerFactory) -> Server:
    return module_servers.start("slow:application", "-w", "1", "--threads", "4")


@pytest.fixture(scope="module")
def streaming_server(module_servers: ServerFactory) -> Server:
    return module_servers.start("streaming:application", "-w", "1", "--threads", "2")


def test_pipelined_requests_get_responses_in_order(slow_server: Server) -> None:
    # The first request is the slowest, so a server that answers in completion order fails.
    sleeps = [0.6, 0.0, 0.3]
    batch = b"".join(request_bytes("GET", f"/?s={s}&n={n}") for n, s in enumerate(sleeps))
    with RawConnection(slow_server.port) as conn:
        conn.send(batch)
        queries = [json.loads(conn.read_response().body)["query"] for _ in sleeps]
        assert queries == [f"s={s}&n={n}" for n, s in enumerate(sleeps)]
        assert conn.request("GET", "/?n=after").status == 200


def test_http11_keeps_the_connection_open_by_default(hello_server: Server) -> None:
    with RawConnection(hello_server.port) as conn:
        first = conn.request("GET", "/")
        assert (first.header("Connection") or "").lower() != "close"
        second = conn.request("GET", "/")
    assert (first.status, first.body) == (200, hello.BODY)
    assert (second.status, second.body) == (200, hello.BODY)


def test_http10_closes_by_default(hello_server: Server) -> None:
    with RawConnection(hello_server.port) as conn:
        response = conn.request("GET", "/", version="HTTP/1.0")
        assert (response.status, response.body) == (200, hello.BODY)
        assert conn.at_eof(), "HTTP/1.0 without keep-alive must close the connection"


def test_http10_keep_alive_is_honoured(hello_server: Server) -> None:
    keep_alive = [("Connection", "keep-alive")]
    with RawConnection(hello_server.port) as conn:
        first = conn.request("GET", "/", keep_alive, version="HTTP/1.0")
        assert (first.header("Connection") or "").lower() == "keep-alive"
        second = conn.request("GET", "/", keep_alive, version="HTTP/1.0")
    assert (first.body, second.body) == (hello.BODY, hello.BODY)


def test_connection_close_closes(hello_server: Server) -> None:
    with RawConnection(hello_server.port) as conn:
        response = conn.request("GET", "/", [("Connection", "close")])
        assert (response.status, response.body) == (200, hello.BODY)
        assert conn.at_eof(), "Connection: close must close the connection"


def test_head_has_get_headers_and_no_body(hello_server: Server) -> None:
    with RawConnection(hello_server.port) as conn:
        get = conn.request("GET", "/")
        head = conn.request("HEAD", "/")
        # Any body bytes sent after the HEAD response would corrupt this next response.
        after = conn.request("GET", "/")
    assert head.status == 200
    assert head.header("Content-Length") == str(len(hello.BODY))

    def without_date(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        varying = ("date", "x-request-id")  # the request id is new for every request
        return sorted((k.lower(), v) for k, v in headers if k.lower() not in varying)

    assert without_date(head.headers) == without_date(get.headers)
    assert (after.status, after.body) == (200, hello.BODY)


def test_head_of_a_streamed_response_has_no_body(streaming_server: Server) -> None:
    with RawConnection(streaming_server.port) as conn:
        head = conn.request("HEAD", "/?n=3&delay=0")
        after = conn.request("GET", "/?n=2&delay=0")
    assert head.status == 200
    assert (after.status, after.body) == (200, b"chunk 0\nchunk 1\n")


def test_expect_100_continue(echo_server: Server) -> None:
    body = b"sent after 100"
    head = request_bytes("POST", "/", [("Expect", "100-continue")], body)[: -len(body)]
    with RawConnection(echo_server.port, timeout=5.0) as conn:
        conn.send(head)
        interim = conn.read_response()
        assert (interim.version, interim.status, interim.reason) == ("HTTP/1.1", 100, "Continue")
        conn.send(body)
        final = conn.read_response()
    assert final.status == 200
    assert json.loads(final.body)["body"] == body.decode()


def test_chunked_request_body(echo_server: Server) -> None:
    body = chunked(b"hello ", b"chunked ", b"world")
    # A chunk extension is legal and must be ignored.
    body = body.replace(b"6\r\nhello ", b"6;name=value\r\nhello ", 1)
    response = fetch(echo_server.port, "POST", "/", [("Transfer-Encoding", "chunked")], body)
    report = json.loads(response.body)
    assert response.status == 200
    assert report["body"] == "hello chunked world"
    assert report["environ"]["wsgi.input_terminated"] is True


def test_date_and_server_headers(hello_server: Server) -> None:
    response = fetch(hello_server.port, "GET", "/")
    date = response.header("Date")
    assert date is not None and IMF_FIXDATE.match(date), date
    skew = datetime.now(timezone.utc) - email.utils.parsedate_to_datetime(date)
    assert abs(skew.total_seconds()) < 60
    assert "maitred" in (response.header("Server") or "").lower()


def test_response_without_length_is_chunked(streaming_server: Server) -> None:
    response = fetch(streaming_server.port, "GET", "/?n=3&delay=0")
    assert response.is_chunked and response.complete
    assert response.header("Content-Length") is None
    assert response.body == b"chunk 0\nchunk 1\nchunk 2\n"


def test_response_without_length_to_http10_is_close_delimited(streaming_server: Server) -> None:
    with RawConnection(streaming_server.port) as conn:
        response = conn.request("GET", "/?n=3&delay=0", version="HTTP/1.0")
        assert not response.is_chunked
        assert response.body == b"chunk 0\nchunk 1\nchunk 2\n"
        assert conn.at_eof()


def test_streaming_reaches_the_client_before_the_generator_ends(
    streaming_server: Server, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    try:
        with RawConnection(streaming_server.port, timeout=5.0) as conn:
            conn.send(request_bytes("GET", f"/?gate={gate}"))
            head = conn.read_head()
            assert head.status == 200 and head.is_chunked
            received = b""
            while len(received) < len(streaming.FIRST):
                chunk = conn.read_chunk()
                assert chunk, f"body ended early after {received!r}"
                received += chunk
            assert received == streaming.FIRST
            gate.touch()
            while chunk := conn.read_chunk():
                received += chunk
            assert chunk == b"", "no terminating chunk"
        assert received == streaming.FIRST + streaming.SECOND
    finally:
        gate.touch()  # never leave the app's thread waiting


@pytest.mark.parametrize(
    "request_line",
    [b"HELLO\r\n", b"GET / HTTP/1.1 trailing-garbage\r\n", b"GET /\x00 HTTP/1.1\r\n"],
)
def test_malformed_request_line_gets_400_and_close(
    hello_server: Server, request_line: bytes
) -> None:
    with RawConnection(hello_server.port, timeout=5.0) as conn:
        conn.send(request_line + b"Host: 127.0.0.1\r\n\r\n")
        response = conn.read_response()
        assert response.status == 400
        assert conn.at_eof(), "the connection must close after a 400"


def test_tls_handshake_on_plain_port_is_rejected(hello_server: Server) -> None:
    with RawConnection(hello_server.port, timeout=5.0) as conn:
        conn.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64)
        try:
            response = conn.read_response()
        except ConnectionClosed:
            pass  # closing without a response is fine for bytes that are not HTTP at all
        else:
            assert response.status == 400
        assert conn.at_eof()
    assert fetch(hello_server.port, "GET", "/").body == hello.BODY
