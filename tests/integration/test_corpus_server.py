"""The raw request corpus sent to a real server: valid requests reach the app unchanged, every
rejection is answered with its status and a closed connection (and the server lives on)."""

from __future__ import annotations

import json

import pytest

from corpus import Case, load_cases
from harness import Server, ServerFactory
from rawhttp import RawConnection, fetch

CASES = load_cases()


@pytest.fixture(scope="module")
def server(module_servers: ServerFactory) -> Server:
    return module_servers.start("echo:application", "--log-level", "debug")


def expected_path(target: str) -> str:
    if target.startswith("http://"):
        return "/" + target.split("/", 3)[3].partition("?")[0]
    return target.partition("?")[0]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case_on_a_real_server(server: Server, case: Case) -> None:
    with RawConnection(server.port, timeout=5.0) as conn:
        conn.send(case.raw)
        for request in case.requests:
            response = conn.read_response(request["method"])
            assert response.status == 200, response
            report = json.loads(response.body)
            assert report["method"] == request["method"]
            assert report["path"] == expected_path(request["target"])
            assert report["body"] == request["body"]
        if case.status is not None:
            response = conn.read_response()
            assert response.status == case.status
            assert response.header("Connection") == "close"
            assert conn.at_eof()
    assert fetch(server.port, "GET", "/").status == 200


def test_underscore_headers_are_dropped_and_logged(server: Server) -> None:
    response = fetch(server.port, "GET", "/", [("X-Auth_User", "admin"), ("X-Auth-User", "me")])
    environ = json.loads(response.body)["environ"]
    assert environ["HTTP_X_AUTH_USER"] == "me"
    assert server.wait_for_log(r"dropped header b'X-Auth_User'")
