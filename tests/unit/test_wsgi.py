"""The worker's WSGI layer, against a fake link: environ, start_response, frames out."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from maitred import link
from maitred.http.errors import error_for
from maitred.http.response import DateCache
from maitred.worker import wsgi
from maitred.worker.environ import EnvironBuilder
from maitred.worker.wsgi import HeadWriter, Response, run_app


def request(
    target: bytes = b"/",
    headers: list[tuple[bytes, bytes]] | None = None,
    method: bytes = b"GET",
    body: bytes | memoryview = b"",
) -> link.Request:
    return link.Request(
        method,
        target,
        "1.1",
        headers or [(b"Host", b"h")],
        body,
        False,
        "10.0.0.1",
        "5555",
        "127.0.0.1",
        "8000",
        "http",
        0.25,
        "",
        "",
    )


class FakeChannel:
    """Records the frames a response sends; unlimited credit."""

    rid = 1
    frame_size = link.MAX_BODY_FRAME
    body: Any = None  # a spooled body's file

    def __init__(self) -> None:
        self.buffer = link.FrameBuffer()
        self.frames: list[tuple[int, Any]] = []

    def send(self, data: bytes) -> None:
        for kind, rid, payload in self.buffer.feed(data):
            assert rid == self.rid
            # A BODY as its bytes, as the front's receiver gets it.
            value = payload if kind == link.Kind.BODY else link.decode(kind, payload)
            self.frames.append((kind, value))

    def write_body(self, data: bytes, prefix: bytes = b"") -> None:
        step = self.frame_size
        self.send(
            prefix
            + b"".join(
                link.encode_body(self.rid, data[i : i + step]) for i in range(0, len(data), step)
            )
        )

    @property
    def kinds(self) -> list[int]:
        return [kind for kind, _ in self.frames]


def serve(app: Any, req: link.Request | None = None) -> FakeChannel:
    fake = FakeChannel()
    req = req or request()
    environ = EnvironBuilder("", 4, 2).build(req)
    run_app(app, environ, Response(fake, HeadWriter(DateCache()), req.method == b"HEAD"))
    return fake


def test_environ() -> None:
    builder = EnvironBuilder("/pre", 4, 2)
    env = builder.build(
        request(
            b"/pre/caf%C3%A9?x=%20y",
            [
                (b"Host", b"h:1"),
                (b"X-A", b"1 \t"),
                (b"X-A", b"2"),
                (b"Content-Type", b"text/x"),
                (b"X_Sneaky", b"1"),
                (b"Cookie", b"a=1"),
                (b"Cookie", b"b=2"),
            ],
            b"POST",
            b"body",
        )
    )
    assert env["SCRIPT_NAME"] == "/pre"
    assert env["PATH_INFO"] == "/caf\xc3\xa9"
    assert env["QUERY_STRING"] == "x=%20y"
    assert env["HTTP_X_A"] == "1,2"
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["CONTENT_TYPE"] == "text/x" and "HTTP_CONTENT_TYPE" not in env
    assert env["CONTENT_LENGTH"] == "4"
    assert "HTTP_X_SNEAKY" not in env
    assert env["wsgi.input"].read() == b"body"
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("10.0.0.1", "5555")
    assert env["wsgi.multithread"] and env["wsgi.multiprocess"]
    assert env["maitred.queue_time"] == 0.25


@pytest.mark.parametrize(
    ("target", "script_name", "path_info"),
    [
        (b"/pre", "/pre", ""),
        (b"/pre/", "/pre", "/"),
        (b"/pre/a?q", "/pre", "/a"),
        (b"/prefix/a", "", "/prefix/a"),  # a segment boundary: /prefix is not under /pre
        (b"/other/a", "", "/other/a"),
        (b"/", "", "/"),
    ],
)
def test_root_path_applies_only_to_paths_under_it(
    target: bytes, script_name: str, path_info: str
) -> None:
    env = EnvironBuilder("/pre/", 1, 1).build(request(target))
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == (script_name, path_info)


def test_absolute_form_target() -> None:
    env = EnvironBuilder("", 1, 1).build(request(b"http://example.com/a/b?q"))
    assert (env["PATH_INFO"], env["QUERY_STRING"]) == ("/a/b", "q")


def hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def test_list_becomes_one_full_frame_with_length() -> None:
    fake = serve(hello)
    assert fake.kinds == [link.Kind.FULL]
    status, length, head, body = fake.frames[0][1]
    assert (status, length, body) == (200, 5, b"hello")
    assert b"Content-Length: 5\r\n" in head and b"Date: " in head and b"Server: maitred" in head


def test_a_body_received_in_a_buffer_of_its_own_is_read_from_it() -> None:
    """A large body arrives as a view of the link's receive buffer (maitred.link.codec);
    wsgi.input reads it there, with everything PEP 3333 asks of the stream."""
    lines = b"".join(b"line %d\n" % n for n in range(20_000))
    received = bytearray(b"head" + lines)
    body = memoryview(received)[4:]
    env = EnvironBuilder("", 1, 1).build(request(method=b"POST", body=body))
    stream = env["wsgi.input"]
    assert env["CONTENT_LENGTH"] == str(len(lines))
    assert stream.readline() == b"line 0\n" and stream.readline(3) == b"lin"
    assert stream.read(70_000) == lines[10:70_010]
    stream.seek(0)
    assert list(stream)[:2] == [b"line 0\n", b"line 1\n"]
    stream.seek(len(lines) - 16)
    assert stream.readlines() == [b"9998\n", b"line 19999\n"]
    stream.seek(5)
    assert stream.read() == lines[5:] and stream.read(10) == b""
    received[4:8] = b"LINE"  # read where it lies: the buffer is the body, never a copy
    stream.seek(0)
    assert stream.read(4) == b"LINE"
    stream.close()


class OverItsList:
    """A response object as Django's HttpResponse is: it iterates a list of its own chunks."""

    def __init__(self, chunks: list[bytes] | tuple[bytes, ...]) -> None:
        self.chunks = chunks
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.chunks)

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("chunks", [[b"hel", b"lo"], (b"hello",)])
def test_an_object_over_a_list_goes_out_whole_in_one_frame(
    chunks: list[bytes] | tuple[bytes, ...],
) -> None:
    """Its chunks all exist: one FULL (one send, one message for the front), not HEAD+BODY,
    END; with its Content-Length, and closed."""
    response = OverItsList(chunks)

    def app(environ: dict[str, Any], start_response: Any) -> OverItsList:
        start_response("200 OK", [("Content-Type", "text/html")])
        return response

    fake = serve(app)
    assert fake.kinds == [link.Kind.FULL]
    status, length, head, body = fake.frames[0][1]
    assert (status, length, body) == (200, 5, b"hello")
    assert b"Content-Length: 5\r\n" in head
    assert response.closed


def test_a_flask_response_goes_out_in_one_frame() -> None:
    """Werkzeug's response iterable is a ClosingIterator over a generator, not a list: its
    one chunk is its whole Content-Length, so head, body and end go in one FULL frame."""
    from tests.apps.flaskapp import app

    fake = serve(app)
    assert fake.kinds == [link.Kind.FULL]
    status, length, head, body = fake.frames[0][1]
    assert (status, length, body) == (200, 16, b"Hello from Flask")
    assert b"Content-Length: 16" in head


def test_a_first_chunk_of_its_whole_length_is_sent_before_the_iterable_stops() -> None:
    """The client has its whole response while the iterable still runs; what the iterable
    yields after its Content-Length is dropped, and it is still run to its end and closed."""
    fake = FakeChannel()
    seen_by_client: list[list[int]] = []
    closed = []

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Length", "5")])
        try:
            yield b"hello"
            seen_by_client.append(fake.kinds)
            yield b"excess"
        finally:
            closed.append(True)

    req = request()
    environ = EnvironBuilder("", 4, 2).build(req)
    run_app(app, environ, Response(fake, HeadWriter(DateCache()), False))
    assert seen_by_client == [[link.Kind.FULL]]  # before the app's next step
    assert fake.kinds == [link.Kind.FULL] and fake.frames[0][1][3] == b"hello"
    assert closed == [True]


def test_a_failure_after_the_response_ended_sends_nothing_more() -> None:
    """The front no longer holds a request once its FULL went out: an ABORT after it would
    break the link (a protocol violation), and every request on it with it."""
    from maitred.config import Config
    from maitred.worker.main import Worker

    class FailsToClose(OverItsList):
        def close(self) -> None:
            raise RuntimeError("close failed")

    def app(environ: dict[str, Any], start_response: Any) -> FailsToClose:
        start_response("200 OK", [])
        return FailsToClose([b"hello"])

    worker = Worker(Config(), 1, "/nonexistent", app, -1, 0)
    fake = FakeChannel()
    worker._handle(request(), fake)  # type: ignore[arg-type]
    assert fake.kinds == [link.Kind.FULL]


def test_head_request_keeps_length_drops_body() -> None:
    fake = serve(hello, request(method=b"HEAD"))
    _status, length, head, body = fake.frames[0][1]
    assert (length, body) == (5, b"") and b"Content-Length: 5" in head


def test_generator_streams_and_is_closed() -> None:
    closed = []

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        try:
            yield b""
            yield b"a"
            yield b"b"
        finally:
            closed.append(True)

    fake = serve(app)
    assert fake.kinds == [link.Kind.HEAD, link.Kind.BODY, link.Kind.BODY, link.Kind.END]
    assert fake.frames[0][1][1] == -1
    assert closed == [True]


def test_write_callable_sends_immediately() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        write = start_response("200 OK", [("Content-Length", "6")])
        write(b"abc")
        return [b"def"]

    fake = serve(app)
    assert fake.kinds == [link.Kind.HEAD, link.Kind.BODY, link.Kind.BODY, link.Kind.END]


def test_short_content_length_aborts() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Length", "10")])
        yield b"abc"

    assert serve(app).kinds == [link.Kind.HEAD, link.Kind.BODY, link.Kind.ABORT]


def test_big_list_bodies_stream_within_flow_control() -> None:
    body = b"y" * (link.MAX_BODY_FRAME + 1)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [body]

    fake = serve(app)
    assert fake.kinds == [link.Kind.HEAD, link.Kind.BODY, link.Kind.BODY, link.Kind.END]
    assert fake.frames[0][1][1] == len(body)  # Content-Length still declared


def test_big_chunks_are_split_into_bounded_frames() -> None:
    data = b"x" * (link.MAX_BODY_FRAME * 2 + 1)

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield data

    fake = serve(app)
    bodies = [value for kind, value in fake.frames if kind == link.Kind.BODY]
    assert len(bodies) == 3 and b"".join(bodies) == data


@pytest.mark.parametrize(
    "headers",
    [
        [("Connection", "close")],
        [("Transfer-Encoding", "chunked")],
        [("X-Bad", "a\r\nInjected: 1")],
        [("Bad Name", "v")],
        [("X", 1)],
        "not a list",
    ],
)
def test_invalid_headers_are_refused(headers: Any) -> None:
    response = Response(FakeChannel(), HeadWriter(DateCache()), False)
    with pytest.raises(AssertionError):
        response.start_response("200 OK", headers)


def test_exc_info_semantics() -> None:
    response = Response(FakeChannel(), HeadWriter(DateCache()), False)
    response.start_response("200 OK", [])
    with pytest.raises(AssertionError):
        response.start_response("500 Oops", [])  # twice without exc_info
    try:
        raise ValueError("boom")
    except ValueError:
        response.start_response("500 Oops", [], sys.exc_info())  # head not sent: replaces
    assert response.status_code == 500
    response.write(b"x")
    try:
        raise KeyError("late")
    except KeyError:
        with pytest.raises(KeyError):
            response.start_response("500 Oops", [], sys.exc_info())  # head sent: re-raised


def test_no_body_statuses() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("304 Not Modified", [])
        return [b"ignored"]

    status, _length, head, body = serve(app).frames[0][1]
    assert (status, body) == (304, b"") and b"Content-Length" not in head


def test_a_request_that_cannot_be_built_is_still_answered() -> None:
    from maitred.config import Config
    from maitred.worker.main import Worker

    worker = Worker(Config(), 1, "/nonexistent", hello, -1, 0)
    fake = FakeChannel()
    fake.body = open(os.devnull, "rb")  # noqa: SIM115
    fake.body.close()  # a spooled body's file that cannot be read
    gone = request()._replace(spooled=True)
    worker._handle(gone, fake)  # type: ignore[arg-type]
    assert fake.kinds == [link.Kind.FULL] and fake.frames[0][1][0] == 500  # the thread is free


def test_the_worker_adds_the_request_id_unless_the_app_did() -> None:
    def app_with_id(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("x-request-id", "mine")])
        return [b""]

    for app, expected in ((hello, b"X-Request-ID: abc\r\n"), (app_with_id, b"x-request-id: mine")):
        fake = FakeChannel()
        response = Response(fake, HeadWriter(DateCache(), "X-Request-ID"), False, "abc")
        run_app(app, EnvironBuilder("", 1, 1).build(request()), response)
        head = fake.frames[0][1][2]
        assert expected in head and head.lower().count(b"x-request-id") == 1


class FixedDate(DateCache):
    def get(self) -> bytes:
        return b"Mon, 23 Nov 2026 02:00:00 GMT"


def test_head_writer_gives_the_same_head_from_its_cache() -> None:
    heads = HeadWriter(FixedDate(), "X-Request-ID")
    headers = [("Content-Type", "text/plain"), ("Vary", "Accept")]
    expected = (
        b"HTTP/1.1 200 OK\r\nServer: maitred\r\nContent-Type: text/plain\r\nVary: Accept"
        b"\r\nDate: Mon, 23 Nov 2026 02:00:00 GMT\r\nX-Request-ID: id1\r\n",
        200,
        -1,
    )
    assert heads.head("200 OK", headers, "id1") == expected
    assert heads.head("200 OK", list(headers), "id1") == expected  # from the cache now


def test_head_writer_acts_on_its_own_headers_every_time() -> None:
    heads = HeadWriter(DateCache(), "X-Request-ID")
    for length in (5, 7):
        head, _, got = heads.head("200 OK", [("Content-Length", str(length))], "")
        assert got == length and head.count(b"Content-Length") == 1
    for _ in range(2):
        head, _, _ = heads.head("200 OK", [("Date", "then"), ("Server", "app/1")])
        assert b"\r\nDate: then\r\n" in head and head.count(b"Date:") == 1
        assert b"\r\nServer: app/1\r\n" in head and head.count(b"Server:") == 1
    # The app's own request id header, first where no id was assigned, then where one was.
    heads.head("200 OK", [("x-request-id", "mine")], "")
    head, _, _ = heads.head("200 OK", [("x-request-id", "mine")], "assigned")
    assert head.lower().count(b"x-request-id") == 1 and b"assigned" not in head


def test_head_writer_checks_a_content_length_once_and_still_reads_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Most responses have a Content-Length, and the same few: its line is kept with its
    value, so the next response with it is not checked again, and still declares its length."""
    heads = HeadWriter(DateCache())
    first = heads.head("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "14")])
    monkeypatch.setattr(heads, "_line", None)  # any check now fails
    again = heads.head("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "14")])
    assert again == first and again[2] == 14 and again[0].count(b"Content-Length: 14") == 1


class Text(str):
    pass


def test_head_writer_checks_what_its_cache_does_not_vouch_for() -> None:
    heads = HeadWriter(DateCache())
    heads.head("200 OK", [("X-A", "1")])
    for status, headers in (
        ("200 OK", [("X-A", Text("1"))]),  # equal to a cached header, but not a str
        ("200 OK", [(Text("X-A"), "1")]),
        ("200 OK", [("X-A", "1", "2")]),
        ("200 OK", [("X-A", ["1"])]),
        ("200 OK", [("X-A", "1\r\nX-B: 2")]),
        (Text("200 OK"), [("X-A", "1")]),
        ("200\r\nX: 1", []),
    ):
        with pytest.raises(AssertionError):
            heads.head(status, headers)  # type: ignore[arg-type]


def test_head_writer_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wsgi, "CACHED_LINES", 3)
    heads = HeadWriter(DateCache())
    for n in range(10):
        head, status, length = heads.head(
            f"{200 + n} Fine", [("ETag", f'"{n}"'), ("Content-Length", str(n))]
        )
        assert status == 200 + n and f'ETag: "{n}"'.encode() in head and length == n
    assert len(heads._lines) == len(heads._statuses) == len(heads._lengths) == 3


def test_environ_header_keys_are_the_same_from_the_cache() -> None:
    builder = EnvironBuilder("", 1, 1)
    req = request(headers=[(b"X-A", b"1"), (b"X_Sneaky", b"1"), (b"Content-Type", b"t")])
    for _ in range(2):
        env = builder.build(req)
        assert (env["HTTP_X_A"], env["CONTENT_TYPE"]) == ("1", "t")
        assert "HTTP_X_SNEAKY" not in env and "HTTP_CONTENT_TYPE" not in env


def test_a_workers_error_page_is_the_fronts() -> None:
    """The worker's own 500 (the app failed) has the page of the front's own errors."""
    fake = FakeChannel()
    Response(fake, HeadWriter(DateCache()), False).error(500)
    status, length, head, body = fake.frames[0][1]
    page = error_for(500)
    assert (status, length, body) == (500, len(page.body), page.body)
    assert head.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    lines = head.split(b"\r\n")
    assert all(line in lines for line in page.fields().split(b"\r\n"))  # type and length
