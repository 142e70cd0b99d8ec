"""Response paths of PEP 3333 beyond a plain list: write(), wsgi.file_wrapper, exc_info."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

import excinfo
import filewrapper
import pytest
import writer

from harness import Server, ServerFactory
from rawhttp import RawConnection, fetch

# Bigger than any socket buffer, so a sendfile-style path must cope with partial writes.
FILE_SIZE = 3 * 1024 * 1024 + 17


@pytest.fixture(scope="module")
def writer_server(module_servers: ServerFactory) -> Server:
    return module_servers.start("writer:application", "-w", "1")


@pytest.fixture(scope="module")
def file_server(module_servers: ServerFactory) -> Server:
    return module_servers.start("filewrapper:application", "-w", "1")


@pytest.fixture(scope="module")
def excinfo_server(module_servers: ServerFactory) -> Server:
    return module_servers.start("excinfo:application", "-w", "1")


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("files") / "payload.bin"
    path.write_bytes(os.urandom(FILE_SIZE))
    return path


def test_write_callable_output_comes_first_and_in_order(writer_server: Server) -> None:
    with RawConnection(writer_server.port) as conn:
        first = conn.request("GET", "/")
        second = conn.request("GET", "/")
    assert (first.status, first.body, first.complete) == (200, writer.BODY, True)
    assert second.body == writer.BODY


def test_file_wrapper_serves_a_file(file_server: Server, big_file: Path) -> None:
    response = fetch(file_server.port, "GET", f"/?path={quote(str(big_file))}")
    assert response.status == 200
    assert response.header("Content-Length") == str(FILE_SIZE)
    assert response.body == big_file.read_bytes()


def test_file_wrapper_without_length(file_server: Server, big_file: Path) -> None:
    response = fetch(file_server.port, "GET", f"/?nolength&path={quote(str(big_file))}")
    assert response.status == 200 and response.complete
    assert response.body == big_file.read_bytes()


def test_file_wrapper_default_file_then_keep_alive(file_server: Server) -> None:
    with RawConnection(file_server.port) as conn:
        first = conn.request("GET", "/")
        second = conn.request("GET", "/")
    source = Path(filewrapper.__file__).read_bytes()
    assert first.body == source
    assert second.body == source


def test_file_wrapper_around_object_without_fileno(file_server: Server) -> None:
    response = fetch(file_server.port, "GET", "/?bytesio")
    assert response.status == 200
    assert response.body == filewrapper.BYTESIO_PAYLOAD


def test_exc_info_before_head_replaces_the_response(excinfo_server: Server) -> None:
    response = fetch(excinfo_server.port, "GET", "/")
    assert response.status == 500
    assert response.header("X-Error-Page") == "app"
    assert response.body == excinfo.ERROR_PAGE


@pytest.mark.expect_errors(r"error handling GET /after-head")
def test_exc_info_after_head_cuts_the_response(excinfo_server: Server) -> None:
    response = fetch(excinfo_server.port, "GET", "/after-head")
    assert response.status == 200
    assert not response.complete
    assert response.body == excinfo.FIRST_CHUNK
    assert excinfo_server.wait_for_log("replaced-by-error-page"), excinfo_server.stderr
