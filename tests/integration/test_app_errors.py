"""An app that raises: before the head a 500, after it a cut connection; the thread lives on.

The server has a single worker thread, so a request that succeeds after a failure proves that
the same thread survived it.
"""

from __future__ import annotations

import failing
import pytest

from harness import Server, ServerFactory
from rawhttp import RawConnection, fetch


@pytest.fixture(scope="module")
def server(module_servers: ServerFactory) -> Server:
    return module_servers.start("failing:application", "-w", "1", "--threads", "1")


def assert_still_serving(server: Server) -> None:
    response = fetch(server.port, "GET", "/ok")
    assert response.status == 200 and response.body.startswith(b"alive in ")


@pytest.mark.expect_errors(r"error handling GET /before\n(.|\n)*RuntimeError: boom-before-head")
def test_exception_before_head_gives_500_and_traceback(server: Server) -> None:
    response = fetch(server.port, "GET", "/before")
    assert response.status == 500
    assert b"boom-before-head" not in response.body, "details must not leak to the client"
    logged = server.wait_for_log(r"Traceback[\s\S]*RuntimeError: boom-before-head")
    assert logged, server.stderr
    assert_still_serving(server)


@pytest.mark.expect_errors(
    r"error handling GET /after-length\n(.|\n)*RuntimeError: boom-after-head"
)
def test_exception_after_head_with_length_cuts_the_body(server: Server) -> None:
    with RawConnection(server.port) as conn:
        response = conn.request("GET", "/after-length")
        assert response.status == 200
        assert response.header("Content-Length") == str(failing.DECLARED_LENGTH)
        assert not response.complete
        assert response.body == failing.PARTIAL
    assert server.wait_for_log("boom-after-head"), server.stderr
    assert_still_serving(server)


@pytest.mark.expect_errors(
    r"error handling GET /after-chunked\n(.|\n)*RuntimeError: boom-after-head"
)
def test_exception_after_head_chunked_has_no_last_chunk(server: Server) -> None:
    with RawConnection(server.port) as conn:
        response = conn.request("GET", "/after-chunked")
        assert response.status == 200 and response.is_chunked
        assert not response.complete, "the terminating chunk must not be sent"
        assert response.body == failing.PARTIAL
    assert_still_serving(server)
