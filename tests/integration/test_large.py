"""50 MiB request and response bodies arrive intact (checked by sha256)."""

from __future__ import annotations

import hashlib
import random

import big
import pytest
import requests

from harness import Server, ServerFactory

SIZE = 50 * 1024 * 1024
TIMEOUT = 60.0
READ_SIZE = 1024 * 1024


@pytest.fixture(scope="module")
def echo_server(module_servers: ServerFactory) -> Server:
    return module_servers.start("echo:application", "-w", "1")


@pytest.fixture(scope="module")
def big_server(module_servers: ServerFactory) -> Server:
    return module_servers.start("big:application", "-w", "1")


@pytest.fixture(scope="module")
def expected_big_sha256() -> str:
    digest = hashlib.sha256()
    for chunk in big.payload():
        digest.update(chunk)
    return digest.hexdigest()


def test_50_mib_post_received_intact(echo_server: Server) -> None:
    payload = random.Random(50).randbytes(SIZE)
    response = requests.post(echo_server.url("/upload"), data=payload, timeout=TIMEOUT)
    assert response.status_code == 200
    report = response.json()
    assert report["body_length"] == SIZE
    assert report["body_sha256"] == hashlib.sha256(payload).hexdigest()


def test_50_mib_chunked_post_received_intact(echo_server: Server) -> None:
    parts = [random.Random(i).randbytes(READ_SIZE) for i in range(SIZE // READ_SIZE)]
    expected = hashlib.sha256(b"".join(parts)).hexdigest()
    # A generator body makes requests send Transfer-Encoding: chunked.
    response = requests.post(echo_server.url("/upload"), data=iter(parts), timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.json()["body_sha256"] == expected


@pytest.mark.parametrize("query", ["", "?chunked"])
def test_50_mib_streamed_response_arrives_intact(
    big_server: Server, expected_big_sha256: str, query: str
) -> None:
    digest, size = hashlib.sha256(), 0
    with requests.get(big_server.url("/" + query), stream=True, timeout=TIMEOUT) as response:
        assert response.status_code == 200
        if query:
            assert response.headers.get("Transfer-Encoding") == "chunked"
        else:
            assert response.headers["Content-Length"] == str(big.TOTAL_SIZE)
        for block in response.iter_content(READ_SIZE):
            digest.update(block)
            size += len(block)
    assert size == big.TOTAL_SIZE
    assert digest.hexdigest() == expected_big_sha256
