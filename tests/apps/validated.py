"""One app per WSGI feature, each wrapped in ``wsgiref.validate.validator``.

The validator asserts the server's side of PEP 3333 (environ keys and types, wsgi.input and
wsgi.errors methods, start_response arguments, write(), close() called on the iterable) and
warns about doubtful ones. Its failures surface as a 500 or as "AssertionError" / "WSGIWarning" /
"Exception ignored" in the server's stderr, which the tests check is free of them.

Routes (by PATH_INFO): /hello, /echo (body via read(n)), /lines (body via readline, readlines
and iteration), /stream (generator, no Content-Length), /file (wsgi.file_wrapper), /write
(the write() callable), /errors (writes to wsgi.errors).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from wsgiref.validate import validator

from apputil import Environ, StartResponse, WSGIApp, text_headers

BLOCK = 8192
HELLO = b"validated hello\n"
STREAM_CHUNKS = (b"s1\n", b"s2\n", b"s3\n")
WRITE_PARTS = (b"w1\n", b"w2\n")
WRITE_RETURNED = b"w3\n"
ERRORS_LINE = "validated app writes to wsgi.errors\n"


def read_all(environ: Environ) -> bytes:
    """The body by read(n): CONTENT_LENGTH bytes, or to the end for a chunked request."""
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    if length:
        return stream.read(int(length))  # type: ignore[no-any-return]
    parts = []
    while block := stream.read(BLOCK):
        parts.append(block)
    return b"".join(parts)


def read_lines(environ: Environ) -> bytes:
    """The body by readline(), readline(size), iteration and readlines(): each once."""
    stream = environ["wsgi.input"]
    parts = [stream.readline(), stream.readline(3)]
    for line in stream:
        parts.append(line)
        break
    parts.extend(stream.readlines())
    return b"".join(parts)


def hello(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", text_headers(HELLO))
    return [HELLO]


def echo(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    body = read_all(environ)
    start_response("200 OK", text_headers(body))
    return [body]


def lines(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    body = read_lines(environ)
    start_response("200 OK", text_headers(body))
    return [body]


def stream(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    def chunks() -> Iterator[bytes]:
        for chunk in STREAM_CHUNKS:
            yield chunk
            time.sleep(0.01)

    start_response("200 OK", text_headers())
    return chunks()


def file(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    f = open(__file__, "rb")  # noqa: SIM115 - the file wrapper closes it
    start_response("200 OK", text_headers())
    return environ["wsgi.file_wrapper"](f)  # type: ignore[no-any-return]


def write(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    writer = start_response("200 OK", text_headers())
    for part in WRITE_PARTS:
        writer(part)
    return [WRITE_RETURNED]


def errors(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    log = environ["wsgi.errors"]
    log.write(ERRORS_LINE)
    log.writelines([ERRORS_LINE])
    log.flush()
    start_response("200 OK", text_headers(HELLO))
    return [HELLO]


ROUTES: dict[str, WSGIApp] = {
    f"/{app.__name__}": validator(app) for app in (hello, echo, lines, stream, file, write, errors)
}


def application(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    return ROUTES[environ["PATH_INFO"]](environ, start_response)
