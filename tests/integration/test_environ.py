"""The PEP 3333 environ the app sees, reported back by the echo app."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from harness import Server, ServerFactory
from rawhttp import RawConnection

PREFIX = "/prefix"


@pytest.fixture(scope="module")
def echo_server(module_servers: ServerFactory) -> Server:
    return module_servers.start("echo:application", "-w", "2", "--threads", "2")


@pytest.fixture(scope="module")
def prefixed_server(module_servers: ServerFactory) -> Server:
    return module_servers.start("echo:application", "-w", "1", "--root-path", PREFIX)


def report(
    server: Server,
    path: str,
    headers: list[tuple[str, str]] | None = None,
    method: str = "GET",
    body: bytes = b"",
) -> dict[str, Any]:
    with RawConnection(server.port) as conn:
        response = conn.request(method, path, headers, body)
        assert response.status == 200, response
        result: dict[str, Any] = json.loads(response.body)
        result["client_port"] = conn.local_port
    return result


def test_path_info_is_percent_decoded_as_latin1(echo_server: Server) -> None:
    seen = report(echo_server, "/caf%C3%A9/x%20y")
    # The UTF-8 bytes of "é" (C3 A9) each become one latin-1 character, as PEP 3333 says.
    assert seen["path"] == "/caf\u00c3\u00a9/x y"
    assert seen["script_name"] == ""


def test_query_string_is_raw(echo_server: Server) -> None:
    seen = report(echo_server, "/q?a=1&b=%20x+y&c=caf%C3%A9&d")
    assert seen["query"] == "a=1&b=%20x+y&c=caf%C3%A9&d"
    assert seen["path"] == "/q"


def test_empty_query_string_is_present(echo_server: Server) -> None:
    assert report(echo_server, "/")["environ"]["QUERY_STRING"] == ""


def test_script_name_from_root_path(prefixed_server: Server) -> None:
    seen = report(prefixed_server, f"{PREFIX}/caf%C3%A9?x=1")
    assert seen["script_name"] == PREFIX
    assert seen["path"] == "/caf\u00c3\u00a9"
    assert seen["query"] == "x=1"


@pytest.mark.parametrize("path", ["/elsewhere/x", f"{PREFIX}ed/x"])
def test_a_path_outside_the_root_path_keeps_it_all(prefixed_server: Server, path: str) -> None:
    seen = report(prefixed_server, f"{path}?x=1")
    assert seen["script_name"] == ""
    assert seen["path"] == path


def test_repeated_headers_are_comma_joined(echo_server: Server) -> None:
    seen = report(echo_server, "/", [("X-Multi", "a"), ("X-Other", "o"), ("X-Multi", "b")])
    assert [v.strip() for v in seen["environ"]["HTTP_X_MULTI"].split(",")] == ["a", "b"]
    assert seen["environ"]["HTTP_X_OTHER"] == "o"


def test_header_names_become_http_keys(echo_server: Server) -> None:
    seen = report(echo_server, "/", [("X-Custom-Header", "value with  spaces")])
    assert seen["environ"]["HTTP_X_CUSTOM_HEADER"] == "value with  spaces"
    assert seen["environ"]["HTTP_HOST"] == "127.0.0.1"


def test_remote_addr_and_port(echo_server: Server) -> None:
    seen = report(echo_server, "/")
    assert seen["environ"]["REMOTE_ADDR"] == "127.0.0.1"
    assert seen["environ"]["REMOTE_PORT"] == str(seen["client_port"])


def test_server_name_and_port(echo_server: Server) -> None:
    host = f"127.0.0.1:{echo_server.port}"
    environ = report(echo_server, "/", [("Host", host)])["environ"]
    assert environ["SERVER_PORT"] == str(echo_server.port)
    names = {"127.0.0.1", "localhost", socket.gethostname(), socket.getfqdn()}
    assert environ["SERVER_NAME"] in names


def test_wsgi_keys(echo_server: Server) -> None:
    environ = report(echo_server, "/")["environ"]
    assert environ["wsgi.version"] == [1, 0]
    assert environ["wsgi.url_scheme"] == "http"
    assert environ["wsgi.input_terminated"] is True
    # Two worker processes with two threads each.
    assert environ["wsgi.multithread"] is True
    assert environ["wsgi.multiprocess"] is True
    assert environ["wsgi.run_once"] is False
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["REQUEST_METHOD"] == "GET"


def test_content_type_and_length_have_no_http_prefix(echo_server: Server) -> None:
    body = b"a=1&b=2"
    content_type = "application/x-www-form-urlencoded"
    seen = report(echo_server, "/form", [("Content-Type", content_type)], "POST", body)
    environ = seen["environ"]
    assert environ["CONTENT_TYPE"] == content_type
    assert environ["CONTENT_LENGTH"] == str(len(body))
    assert "HTTP_CONTENT_TYPE" not in environ
    assert "HTTP_CONTENT_LENGTH" not in environ
    assert seen["method"] == "POST"
    assert seen["body"] == body.decode()
