"""Who the client is behind a proxy: forwarded headers and PROXY protocol, from trusted peers only.

The test client connects from 127.0.0.1, which the default --forwarded-allow-ips trusts; the
"untrusted" servers trust only a network the client is not in. The echo app reports the environ.
"""

from __future__ import annotations

import ipaddress
import json
import struct
from typing import Any

import pytest

from harness import SRC_DIR, TESTS_DIR, Server, ServerFactory
from rawhttp import ConnectionClosed, RawConnection, fetch, request_bytes

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
# tests/shadow hides uvloop from the server, which then runs the standard asyncio loop.
LOOPS = {"uvloop": None, "asyncio": {"PYTHONPATH": f"{SRC_DIR}:{TESTS_DIR / 'shadow'}"}}


@pytest.fixture(scope="module")
def trusted(module_servers: ServerFactory) -> Server:
    return module_servers.start("echo:application", "-w", "1")


@pytest.fixture(scope="module")
def untrusted(module_servers: ServerFactory) -> Server:
    return module_servers.start(
        "echo:application", "-w", "1", "--forwarded-allow-ips", "10.0.0.0/8"
    )


@pytest.fixture(scope="module", params=sorted(LOOPS))
def proxied(module_servers: ServerFactory, request: pytest.FixtureRequest) -> Server:
    """On both loops: the connection's protocol is swapped once the PROXY header is in."""
    env = LOOPS[request.param]
    return module_servers.start("echo:application", "-w", "1", "--proxy-protocol", env=env)


@pytest.fixture(scope="module")
def proxied_untrusted(module_servers: ServerFactory) -> Server:
    return module_servers.start(
        "echo:application", "-w", "1", "--proxy-protocol", "--forwarded-allow-ips", "10.0.0.1"
    )


def environ_of(server: Server, *headers: tuple[str, str]) -> dict[str, Any]:
    response = fetch(server.port, "GET", "/", list(headers))
    assert response.status == 200
    environ: dict[str, Any] = json.loads(response.body)["environ"]
    return environ


def peer(environ: dict[str, Any]) -> tuple[str, str, str]:
    return environ["REMOTE_ADDR"], environ["wsgi.url_scheme"], environ["HTTP_HOST"]


# --- forwarded headers ---


def test_x_forwarded_headers_from_a_trusted_peer(trusted: Server) -> None:
    environ = environ_of(
        trusted,
        ("X-Forwarded-For", "203.0.113.7"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "www.example.com"),
    )
    assert peer(environ) == ("203.0.113.7", "https", "www.example.com")


def test_x_forwarded_for_is_read_from_the_right(trusted: Server) -> None:
    """The client is the rightmost address that is not a trusted proxy: anything left of it
    could have been written by the client itself."""
    environ = environ_of(trusted, ("X-Forwarded-For", "6.6.6.6, 203.0.113.7, 127.0.0.1"))
    assert environ["REMOTE_ADDR"] == "203.0.113.7"


def test_lists_line_up_with_the_client(trusted: Server) -> None:
    environ = environ_of(
        trusted,
        ("X-Forwarded-For", "198.51.100.1, 127.0.0.1"),
        ("X-Forwarded-Proto", "https, http"),
        ("X-Forwarded-Host", "outer.example, inner.example"),
    )
    assert peer(environ) == ("198.51.100.1", "https", "outer.example")


def test_repeated_x_forwarded_for_headers_form_one_list(trusted: Server) -> None:
    environ = environ_of(
        trusted, ("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "203.0.113.9")
    )
    assert environ["REMOTE_ADDR"] == "203.0.113.9"


def test_forwarded_header(trusted: Server) -> None:
    environ = environ_of(
        trusted, ("Forwarded", 'for="[2001:db8::17]:4711";proto=https;host=example.org')
    )
    assert peer(environ) == ("2001:db8::17", "https", "example.org")
    assert environ["REMOTE_PORT"] == "4711"


def test_forwarded_elements_read_from_the_right(trusted: Server) -> None:
    environ = environ_of(
        trusted, ("Forwarded", "for=6.6.6.6;proto=http, for=192.0.2.60;proto=https, for=127.0.0.1")
    )
    assert (environ["REMOTE_ADDR"], environ["wsgi.url_scheme"]) == ("192.0.2.60", "https")


@pytest.mark.parametrize(
    "header",
    [
        ("X-Forwarded-For", "not-an-address"),
        ("X-Forwarded-Proto", "gopher"),
        ("X-Forwarded-Host", "bad host/"),
        ("Forwarded", "for=unknown"),
    ],
)
def test_unusable_values_change_nothing(trusted: Server, header: tuple[str, str]) -> None:
    assert peer(environ_of(trusted, header)) == ("127.0.0.1", "http", "127.0.0.1")


def test_untrusted_peers_change_nothing(untrusted: Server) -> None:
    environ = environ_of(
        untrusted,
        ("X-Forwarded-For", "203.0.113.7"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "evil.example"),
        ("Forwarded", "for=198.51.100.1;proto=https;host=evil.example"),
    )
    assert peer(environ) == ("127.0.0.1", "http", "127.0.0.1")


def test_without_forwarded_headers_the_peer_is_the_client(trusted: Server) -> None:
    environ = environ_of(trusted)
    assert peer(environ) == ("127.0.0.1", "http", "127.0.0.1")
    assert environ["REMOTE_PORT"] not in ("", "0")


# --- PROXY protocol ---


def v2_header(source: str, port: int, command: int = 1) -> bytes:
    ip = ipaddress.ip_address(source)
    if ip.version == 4:
        family = 0x11
        body = ip.packed + bytes(4) + struct.pack("!HH", port, 80)
    else:
        family = 0x21
        body = ip.packed + bytes(16) + struct.pack("!HH", port, 80)
    body += b"\x04\x00\x02ab"  # a TLV, which the front must step over
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


def environ_via(server: Server, preface: bytes, requests: int = 1) -> list[dict[str, Any]]:
    with RawConnection(server.port) as conn:
        conn.send(preface + request_bytes("GET", "/"))
        environs = [json.loads(conn.read_response().body)["environ"]]
        for _ in range(requests - 1):
            environs.append(json.loads(conn.request("GET", "/").body)["environ"])
    return environs


def test_proxy_protocol_v1(proxied: Server) -> None:
    environs = environ_via(proxied, b"PROXY TCP4 192.0.2.1 192.0.2.2 5555 80\r\n", requests=2)
    for environ in environs:  # for the whole connection
        assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == ("192.0.2.1", "5555")


def test_proxy_protocol_v1_ipv6_and_unknown(proxied: Server) -> None:
    (environ,) = environ_via(proxied, b"PROXY TCP6 2001:db8::5 2001:db8::6 4000 443\r\n")
    assert environ["REMOTE_ADDR"] == "2001:db8::5"
    (environ,) = environ_via(proxied, b"PROXY UNKNOWN\r\n")
    assert environ["REMOTE_ADDR"] == "127.0.0.1"


@pytest.mark.parametrize("source", ["198.51.100.20", "2001:db8::20"])
def test_proxy_protocol_v2(proxied: Server, source: str) -> None:
    (environ,) = environ_via(proxied, v2_header(source, 6000))
    assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == (source, "6000")


def test_proxy_protocol_v2_local_keeps_the_peer(proxied: Server) -> None:
    (environ,) = environ_via(proxied, v2_header("198.51.100.20", 6000, command=0))
    assert environ["REMOTE_ADDR"] == "127.0.0.1"


def test_proxy_protocol_header_in_pieces(proxied: Server) -> None:
    preface = v2_header("198.51.100.30", 7000)
    with RawConnection(proxied.port) as conn:
        for i in range(0, len(preface), 5):
            conn.send(preface[i : i + 5])
        response = conn.request("GET", "/")
    assert json.loads(response.body)["environ"]["REMOTE_ADDR"] == "198.51.100.30"


@pytest.mark.parametrize(
    "preface", [b"", b"PROXY TCP4 nonsense\r\n", b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 80\r\n"]
)
def test_proxy_protocol_required(proxied: Server, preface: bytes) -> None:
    with RawConnection(proxied.port) as conn:
        conn.send(preface + request_bytes("GET", "/"))
        with pytest.raises((ConnectionClosed, ConnectionResetError)):
            conn.read_response()


def test_proxy_protocol_from_an_untrusted_peer_changes_nothing(
    proxied_untrusted: Server,
) -> None:
    (environ,) = environ_via(proxied_untrusted, b"PROXY TCP4 192.0.2.1 192.0.2.2 5555 80\r\n")
    assert environ["REMOTE_ADDR"] == "127.0.0.1"


def test_proxy_protocol_then_forwarded_headers_of_the_real_client(proxied: Server) -> None:
    """After PROXY the peer is the real client, which is not a trusted proxy."""
    with RawConnection(proxied.port) as conn:
        conn.send(
            b"PROXY TCP4 192.0.2.1 192.0.2.2 5555 80\r\n"
            + request_bytes("GET", "/", [("X-Forwarded-For", "6.6.6.6")])
        )
        environ = json.loads(conn.read_response().body)["environ"]
    assert environ["REMOTE_ADDR"] == "192.0.2.1"


def test_proxy_protocol_is_off_by_default(trusted: Server) -> None:
    with RawConnection(trusted.port) as conn:
        conn.send(b"PROXY TCP4 192.0.2.1 192.0.2.2 5555 80\r\n" + request_bytes("GET", "/"))
        assert conn.read_response().status == 400
