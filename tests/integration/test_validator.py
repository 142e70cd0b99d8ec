"""Apps wrapped in wsgiref.validate.validator see nothing the validator objects to.

A validator assertion inside the worker becomes a 500 plus a traceback, a validator warning or
an unclosed iterable shows up in stderr; so each case checks the response, then stops its own
server (so every late message is flushed) and checks stderr is clean.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import validated

from harness import ServerFactory
from rawhttp import RawConnection, chunked

BAD_OUTPUT = ("Traceback", "AssertionError", "WSGIWarning", "Exception ignored")
LINES_BODY = b"first line\nsecond line\nthird\nfourth\nlast without newline"


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    expected: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


CASES = {
    "get": Case("GET", "/hello", validated.HELLO),
    "head": Case("HEAD", "/hello", b""),
    "get-with-query": Case("GET", "/hello?a=1&b=2", validated.HELLO),
    "post": Case("POST", "/echo", b"posted body", [("Content-Type", "text/plain")], b"posted body"),
    "post-empty": Case("POST", "/echo", b"", [("Content-Length", "0")]),
    "post-chunked": Case(
        "POST",
        "/echo",
        b"chunked body",
        [("Transfer-Encoding", "chunked")],
        chunked(b"chunked ", b"body"),
    ),
    "post-lines": Case("POST", "/lines", LINES_BODY, body=LINES_BODY),
    "streaming": Case("GET", "/stream", b"".join(validated.STREAM_CHUNKS)),
    "file-wrapper": Case("GET", "/file", Path(validated.__file__).read_bytes()),
    "write": Case("GET", "/write", b"".join(validated.WRITE_PARTS) + validated.WRITE_RETURNED),
    "wsgi-errors": Case("GET", "/errors", validated.HELLO),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_validator_raises_nothing(servers: ServerFactory, case: Case) -> None:
    server = servers.start("validated:application", "-w", "1", "--threads", "2")
    with RawConnection(server.port) as conn:
        response = conn.request(case.method, case.path, case.headers, case.body)
        # The same connection serves a second request: the first left it in a clean state.
        again = conn.request(case.method, case.path, case.headers, case.body)
    server.stop()
    assert (response.status, response.body, response.complete) == (200, case.expected, True)
    assert (again.status, again.body) == (200, case.expected)
    found = [marker for marker in BAD_OUTPUT if marker in server.stderr]
    assert not found, server.stderr
    if case.path == "/errors":
        assert validated.ERRORS_LINE.strip() in server.stderr
