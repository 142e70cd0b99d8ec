"""TLS in the front: HTTPS next to plain HTTP, silent and broken clients, certificate rotation on
HUP, client certificates, and the start-time check of the files.

Every server here listens twice: on the harness's plain 127.0.0.1:0 and on
https://127.0.0.1:0, so the same server answers both ways; the TLS port is read from its
"Listening at: https://..." line. The certificates come from a CA made for each test
(tests/certs.py).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from certs import Issued, TestCA, serial_of
from harness import SRC_DIR, TESTS_DIR, Server, ServerFactory, run_cli, wait_until
from rawhttp import (
    RawConnection,
    read_to_close,
    request_bytes,
    send_closing_get,
    server_ends,
    unix_get,
)
from slowclients import descriptors_for

TLS_LISTENING = re.compile(r"Listening at: https://127\.0\.0\.1:(\d+)")
# tests/shadow hides uvloop from the server, which then runs the standard asyncio loop.
LOOPS = {"uvloop": None, "asyncio": {"PYTHONPATH": f"{SRC_DIR}:{TESTS_DIR / 'shadow'}"}}
TIMEOUT = 10.0
SILENT = 200  # connections that never send a ClientHello
HANDSHAKE_TIMEOUT = 2.0  # short, so the silent ones are closed within the test
# A request on a 2-core machine shared with other test runs: well under this unless it waits
# behind the silent connections, which is what the test looks for.
PROMPT = 2.0
HANDSHAKE_FAILED = "TLS handshake with 127.0.0.1 failed"


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path)


@pytest.fixture
def server_cert(ca: TestCA) -> Issued:
    return ca.issue("server", "127.0.0.1")


def tls_args(cert: Issued, *more: str) -> list[str]:
    files = ["--certfile", str(cert.cert), "--keyfile", str(cert.key)]
    return ["-b", "https://127.0.0.1:0", *files, *more]


def tls_port(server: Server) -> int:
    match = TLS_LISTENING.search(server.stderr)
    assert match is not None, server.stderr
    return int(match.group(1))


def https(port: int, ctx: ssl.SSLContext) -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=TIMEOUT)


def get_json(conn: http.client.HTTPConnection, path: str = "/") -> dict[str, object]:
    conn.request("GET", path)
    response = conn.getresponse()
    assert response.status == 200
    result: dict[str, object] = json.loads(response.read())
    return result


def environ_of(conn: http.client.HTTPConnection, path: str = "/") -> dict[str, object]:
    environ = get_json(conn, path)["environ"]
    assert isinstance(environ, dict)
    return environ


def peer_serial(port: int, ctx: ssl.SSLContext) -> int:
    """The serial number of the certificate a new connection to `port` is shown."""
    with (
        socket.create_connection(("127.0.0.1", port), TIMEOUT) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        der = sock.getpeercert(binary_form=True)
    assert der is not None
    return serial_of(der)


@pytest.mark.parametrize("loop", LOOPS)
def test_https_and_http_listeners_side_by_side(
    servers: ServerFactory, ca: TestCA, server_cert: Issued, loop: str
) -> None:
    server = servers.start("echo:application", *tls_args(server_cert), env=LOOPS[loop])
    port = tls_port(server)
    secure = https(port, ca.client_context())
    try:
        first = environ_of(secure, "/a")
        second = environ_of(secure, "/b")  # the same connection, kept alive
        assert first["wsgi.url_scheme"] == second["wsgi.url_scheme"] == "https"
        assert first["REMOTE_PORT"] == second["REMOTE_PORT"]
        assert first["SERVER_PORT"] == str(port)
        assert "SSL_CLIENT_S_DN" not in first  # no client certificate asked for
        secure.request("POST", "/up", body=b"x" * 300_000)
        posted = json.loads(secure.getresponse().read())
        assert posted["body_length"] == 300_000
    finally:
        secure.close()
    plain = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        assert environ_of(plain)["wsgi.url_scheme"] == "http"
    finally:
        plain.close()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_over_https_with_the_test_ca(
    servers: ServerFactory, ca: TestCA, server_cert: Issued
) -> None:
    server = servers.start("hello:application", *tls_args(server_cert))
    url = f"https://127.0.0.1:{tls_port(server)}/"
    done = subprocess.run(
        ["curl", "-sS", "--cacert", str(ca.path), url],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Hello, world!\n"


def open_silent(port: int, count: int) -> Iterator[tuple[socket.socket, float]]:
    for _ in range(count):
        yield socket.create_connection(("127.0.0.1", port), TIMEOUT), time.monotonic()


def wait_closed(sock: socket.socket, timeout: float) -> float:
    """When (time.monotonic()) the server closed `sock`; fails after `timeout`."""
    ready, _, _ = select.select([sock], [], [], timeout)
    assert ready, "the server kept a silent connection open past the handshake timeout"
    with contextlib.suppress(ConnectionResetError):  # an alert the client did not read
        assert sock.recv(1) == b""
    return time.monotonic()


def timed_request(conn: http.client.HTTPConnection) -> float:
    started = time.monotonic()
    get_json(conn)
    return time.monotonic() - started


@pytest.mark.parametrize("loop", LOOPS)
def test_silent_clients_cost_no_thread_and_are_closed_at_the_handshake_timeout(
    servers: ServerFactory, ca: TestCA, server_cert: Issued, loop: str
) -> None:
    args = tls_args(server_cert, "--handshake-timeout", str(HANDSHAKE_TIMEOUT))
    server = servers.start(
        "echo:application", *args, "-w", "1", "--threads", "2", "--log-level", "debug",
        env=LOOPS[loop],
    )  # fmt: skip
    port = tls_port(server)
    with descriptors_for(SILENT):
        silent = list(open_silent(port, SILENT))
        try:
            plain = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
            secure = https(port, ca.client_context())
            times = [timed_request(conn) for _ in range(10) for conn in (plain, secure)]
            plain.close()
            secure.close()
            assert max(times) < PROMPT, times
            closed = [wait_closed(sock, HANDSHAKE_TIMEOUT + TIMEOUT) - at for sock, at in silent]
        finally:
            for sock, _ in silent:
                sock.close()
    # Closed by the handshake timeout: not before it, and all of them.
    assert min(closed) >= HANDSHAKE_TIMEOUT * 0.9, min(closed)
    wait_until(lambda: server.stderr.count(HANDSHAKE_FAILED) >= SILENT, what="a line each")
    assert server.stderr.count(HANDSHAKE_FAILED) == SILENT
    assert "Traceback" not in server.stderr


GARBAGE = [
    b"\x16\x03\x01\x00\x10" + b"\xff" * 16,  # a handshake record that is no ClientHello
    # An SSLv2-style record that is no ClientHello (its third byte is not 1): for OpenSSL to
    # refuse at once, where a random one would now and then announce more bytes to wait for.
    b"\x80\x3f\x00" + os.urandom(61),
    b"\x00" + os.urandom(63),  # neither TLS nor HTTP
]


@pytest.mark.parametrize("loop", LOOPS)
def test_garbage_instead_of_a_client_hello_is_closed_with_one_debug_line(
    servers: ServerFactory, server_cert: Issued, loop: str
) -> None:
    server = servers.start(
        "hello:application", *tls_args(server_cert), "--log-level", "debug", env=LOOPS[loop]
    )
    port = tls_port(server)
    for garbage in GARBAGE:
        with socket.create_connection(("127.0.0.1", port), TIMEOUT) as sock:
            started = time.monotonic()
            sock.sendall(garbage)
            # Closed at once (an alert may come first), not at the handshake timeout.
            wait_closed(sock, TIMEOUT)
            assert time.monotonic() - started < PROMPT, garbage
    wait_until(lambda: server.stderr.count(HANDSHAKE_FAILED) == len(GARBAGE))
    assert "Traceback" not in server.stderr
    lines = [line for line in server.stderr.splitlines() if HANDSHAKE_FAILED in line]
    assert all("[DEBUG]" in line for line in lines), lines  # not for a production log


PLAIN_HTTP_ANSWER = b"The plain HTTP request was sent to HTTPS port"


@pytest.mark.parametrize("loop", LOOPS)
def test_plain_http_to_the_tls_port_gets_nginx_400(
    servers: ServerFactory, ca: TestCA, server_cert: Issued, tmp_path: Path, loop: str
) -> None:
    """As nginx answers it: a plain-text 400 that says so, which the client reads even when it
    sent a body the front never looks at; then the connection closes. The access log has it."""
    access = tmp_path / "access.log"
    args = tls_args(server_cert, "--log-level", "debug", "--access-logfile", str(access))
    server = servers.start("hello:application", *args, env=LOOPS[loop])
    port = tls_port(server)
    for body in (b"", b"x" * 200_000):
        with RawConnection(port, timeout=TIMEOUT) as conn:
            conn.send(request_bytes("POST" if body else "GET", "/", body=body))
            response = conn.read_response()
            assert response.status == 400
            assert PLAIN_HTTP_ANSWER in response.body
            assert response.header("Connection") == "close"
            assert conn.at_eof()
    wait_until(lambda: server.stderr.count("plain HTTP sent to the HTTPS port") == 2)
    wait_until(lambda: access.read_text().count('" 400 ') == 2, what="two access log lines")
    assert server.stderr.count(HANDSHAKE_FAILED) == 2
    assert "Traceback" not in server.stderr
    secure = https(port, ca.client_context())  # the port still speaks TLS
    try:
        secure.request("GET", "/")
        assert secure.getresponse().read() == b"Hello, world!\n"
    finally:
        secure.close()


def replace_files(source: Issued, target: Issued) -> None:
    """Put `source`'s certificate and key where the server reads `target`'s, each by rename
    (as certbot and Kubernetes do), so the server never reads half a file."""
    for src, dst in ((source.cert, target.cert), (source.key, target.key)):
        staged = dst.with_suffix(".new")
        shutil.copyfile(src, staged)
        os.replace(staged, dst)


RELOADED = "front: certificate loaded again"
FRONTS = 2
CONNECTIONS = 8  # new connections, spread over the fronts by the kernel


@pytest.mark.expect_errors("reload: keeping the TLS certificate in use")
def test_hup_rotates_the_certificate_and_keeps_open_connections(
    servers: ServerFactory, ca: TestCA, server_cert: Issued, tmp_path: Path
) -> None:
    """Two fronts (SO_REUSEPORT shares new connections between them): both load it."""
    args = tls_args(server_cert, "-w", "2", "--fronts", str(FRONTS))
    server = servers.start("slow:application", *args)
    port = tls_port(server)
    ctx = ca.client_context()
    assert peer_serial(port, ctx) == server_cert.serial
    # A request in flight on a connection made with the old certificate.
    old = https(port, ctx)
    mark = tmp_path / "running"
    old.request("GET", f"/?s=2&mark={mark}")
    wait_until(mark.exists, what="the slow request to run")
    newer = ca.issue("newer", "127.0.0.1")
    replace_files(newer, server_cert)
    os.kill(server.pid, signal.SIGHUP)
    wait_until(lambda: server.stderr.count(RELOADED) == FRONTS, what="every front to load it")
    assert {peer_serial(port, ctx) for _ in range(CONNECTIONS)} == {newer.serial}
    response = old.getresponse()
    assert response.status == 200
    response.read()
    old.close()
    # A bad certificate: the one in use stays, and the log says why.
    server_cert.cert.write_text("not a certificate\n")
    os.kill(server.pid, signal.SIGHUP)
    why = server.wait_for_log(r"keeping the TLS certificate in use: (.*)", TIMEOUT)
    assert why is not None and "server.crt" in why.group(1), server.stderr
    assert server.stderr.count(RELOADED) == FRONTS
    assert {peer_serial(port, ctx) for _ in range(CONNECTIONS)} == {newer.serial}


def handshake(port: int, ctx: ssl.SSLContext) -> tuple[str | None, str, str | None]:
    """The TLS version, cipher and ALPN protocol a new connection to `port` gets."""
    with (
        socket.create_connection(("127.0.0.1", port), TIMEOUT) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        cipher = sock.cipher()
        assert cipher is not None
        return sock.version(), cipher[0], sock.selected_alpn_protocol()


def tls12_client(ca: TestCA, ciphers: str = "") -> ssl.SSLContext:
    ctx = ca.client_context()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


def test_version_ciphers_and_alpn_reach_the_handshakes(
    servers: ServerFactory, ca: TestCA, server_cert: Issued
) -> None:
    """--ssl-min-version and --ssl-ciphers are what a client meets; ALPN picks http/1.1."""
    aes = "ECDHE-ECDSA-AES128-GCM-SHA256"  # the certificate's key is EC
    default = tls_port(servers.start("hello:application", *tls_args(server_cert)))
    assert handshake(default, tls12_client(ca, aes)) == ("TLSv1.2", aes, None)
    offering_h2 = ca.client_context()
    offering_h2.set_alpn_protocols(["h2", "http/1.1"])
    assert handshake(default, offering_h2)[2] == "http/1.1"  # no HTTP/2 yet

    only13 = tls_args(server_cert, "--ssl-min-version", "1.3")
    strict = tls_port(servers.start("hello:application", *only13, "--log-level", "debug"))
    with pytest.raises(ssl.SSLError):
        handshake(strict, tls12_client(ca))
    assert handshake(strict, ca.client_context())[0] == "TLSv1.3"

    chacha = tls_args(server_cert, "--ssl-ciphers", "ECDHE+CHACHA20")
    picky = tls_port(servers.start("hello:application", *chacha, "--log-level", "debug"))
    with pytest.raises(ssl.SSLError):
        handshake(picky, tls12_client(ca, aes))
    assert "CHACHA20" in handshake(picky, tls12_client(ca))[1]


def test_an_optional_client_certificate(
    servers: ServerFactory, ca: TestCA, server_cert: Issued
) -> None:
    """`optional`: a client without a certificate is served, and the app sees no subject; one
    with a certificate signed by the CAs is served with its subject."""
    args = tls_args(server_cert, "--ca-certs", str(ca.path), "--cert-reqs", "optional")
    port = tls_port(servers.start("echo:application", *args))
    anonymous = https(port, ca.client_context())
    alice = https(port, ca.client_context(ca.issue("alice", "alice", client=True)))
    try:
        assert "SSL_CLIENT_S_DN" not in environ_of(anonymous)
        assert environ_of(alice)["SSL_CLIENT_S_DN"] == "CN=alice,O=maitred tests"
    finally:
        anonymous.close()
        alice.close()


def test_a_certificate_alone_makes_tcp_listeners_tls_and_leaves_unix_ones_plain(
    servers: ServerFactory, ca: TestCA, server_cert: Issued, tmp_path: Path
) -> None:
    """As in gunicorn: --certfile without any https:// address serves HTTPS on every TCP
    listener (here the harness's bare 127.0.0.1:0); a unix socket's proxy speaks plain HTTP."""
    path = tmp_path / "plain.sock"
    files = ["--certfile", str(server_cert.cert), "--keyfile", str(server_cert.key)]
    spawned = servers.launch("hello:application", *files, "-b", f"unix:{path}")
    match = spawned.stderr.wait_for(TLS_LISTENING, TIMEOUT * 3)
    assert match is not None, spawned.output()
    secure = https(int(match.group(1)), ca.client_context())
    try:
        secure.request("GET", "/")
        assert secure.getresponse().read() == b"Hello, world!\n"
    finally:
        secure.close()
    assert unix_get(path, "/") == (200, b"Hello, world!\n")
    assert f"Listening at: unix:{path}" in spawned.stderr.text


def test_a_required_client_certificate(
    servers: ServerFactory, ca: TestCA, server_cert: Issued
) -> None:
    args = tls_args(server_cert, "--ca-certs", str(ca.path), "--cert-reqs", "required")
    server = servers.start("echo:application", *args, "--log-level", "debug")
    port = tls_port(server)
    anonymous = https(port, ca.client_context())
    with pytest.raises((ssl.SSLError, ConnectionError)):
        get_json(anonymous)  # TLS 1.3: the server's refusal arrives with the first read
    anonymous.close()
    alice = ca.issue("alice", "alice", client=True)
    known = https(port, ca.client_context(alice))
    try:
        environ = environ_of(known)
    finally:
        known.close()
    assert environ["SSL_CLIENT_S_DN"] == "CN=alice,O=maitred tests"
    assert environ["wsgi.url_scheme"] == "https"
    wait_until(lambda: HANDSHAKE_FAILED in server.stderr, what="the refusal in the log")


def test_unreadable_or_mismatched_files_stop_the_start_with_one_line(
    ca: TestCA, server_cert: Issued, tmp_path: Path
) -> None:
    other = ca.issue("other", "127.0.0.1")
    cases = {
        "cannot read it": [str(tmp_path / "missing.crt"), str(server_cert.key)],
        "do not match": [str(server_cert.cert), str(other.key)],
    }
    for why, (cert, key) in cases.items():
        args = ["-b", "https://127.0.0.1:0", "--certfile", cert, "--keyfile", key, "hello"]
        result = run_cli(args)
        assert result.returncode != 0
        errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
        assert len(errors) == 1 and why in errors[0], result.stderr
        assert "Traceback" not in result.stderr
        checked = run_cli(["check", *args])  # says the same before a deploy
        assert checked.returncode != 0 and why in checked.stderr, checked.stderr


@pytest.mark.parametrize("loop", LOOPS)
def test_files_go_out_encrypted(
    servers: ServerFactory, ca: TestCA, server_cert: Issued, tmp_path: Path, loop: str
) -> None:
    """Static files and wsgi.file_wrapper bodies: the front sends plain ones with sendfile(2),
    which must not write around TLS."""
    content = os.urandom(3 * 1024 * 1024 + 17)
    (tmp_path / "big.bin").write_bytes(content)
    args = tls_args(server_cert, "--static", f"/static={tmp_path}")
    server = servers.start("filewrapper:application", *args, env=LOOPS[loop])
    secure = https(tls_port(server), ca.client_context())
    try:
        # Each twice: the connection stays usable after.
        for path in ["/static/big.bin", f"/?path={tmp_path / 'big.bin'}"] * 2:
            secure.request("GET", path)
            response = secure.getresponse()
            assert response.status == 200
            assert response.read() == content
    finally:
        secure.close()


def test_a_stop_does_not_wait_for_idle_clients_that_read_nothing(
    servers: ServerFactory, ca: TestCA, server_cert: Issued
) -> None:
    """A client holding a kept-alive connection in its pool reads nothing, so it never answers
    the close_notify the front sends as it closes the connection: the front stops anyway."""
    server = servers.start("hello:application", *tls_args(server_cert, "--graceful-timeout", "60"))
    pooled = https(tls_port(server), ca.client_context())
    pooled.request("GET", "/")
    assert pooled.getresponse().read() == b"Hello, world!\n"
    started = time.monotonic()
    os.kill(server.pid, signal.SIGTERM)
    try:
        server.spawned.proc.wait(TIMEOUT)
    finally:
        pooled.close()
    assert time.monotonic() - started < TIMEOUT


def test_a_stop_serves_a_client_still_to_begin_its_handshake(
    servers: ServerFactory, ca: TestCA, server_cert: Issued
) -> None:
    """A TLS client that connected before the stop is served, as a plain one that has not sent
    its request yet is: its handshake is what it sends first."""
    server = servers.start("hello:application", *tls_args(server_cert))
    port = tls_port(server)
    with socket.create_connection(("127.0.0.1", port), TIMEOUT) as raw:
        ports = [raw.getsockname()[1]]
        wait_until(  # accepted, so a handshake under way when the stop comes
            lambda: all(end.inode for end in server_ends(port, ports).values()),
            what="the front to take it",
        )
        os.kill(server.pid, signal.SIGTERM)
        assert server.wait_for_log("front: stopping", TIMEOUT), server.stderr
        with ca.client_context().wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            send_closing_get(sock, "/")
            assert read_to_close(sock) == (200, b"Hello, world!\n")
    assert server.spawned.proc.wait(TIMEOUT) == 0


@pytest.mark.expect_errors("reload: keeping the TLS certificate in use")
def test_new_fronts_of_a_reload_serve_the_last_good_certificate(
    servers: ServerFactory, ca: TestCA, server_cert: Issued, tmp_path: Path
) -> None:
    """A HUP that changes a setting of the fronts starts new ones: they serve the certificate
    the master last loaded without error, whatever the files hold now."""
    settings = tmp_path / "maitred.toml"
    settings.write_text("keepalive = 5\n")
    args = tls_args(server_cert, "-c", str(settings), "-w", "1")
    server = servers.start("hello:application", *args)
    port = tls_port(server)
    ctx = ca.client_context()
    server_cert.cert.write_text("not a certificate\n")
    settings.write_text("keepalive = 6\n")
    os.kill(server.pid, signal.SIGHUP)
    assert server.wait_for_log("new fronts serve", TIMEOUT), server.stderr
    assert peer_serial(port, ctx) == server_cert.serial  # the old one, from the master
    newer = ca.issue("newer", "127.0.0.1")
    replace_files(newer, server_cert)
    settings.write_text("keepalive = 7\n")
    os.kill(server.pid, signal.SIGHUP)
    wait_until(lambda: server.stderr.count("new fronts serve") == 2, what="the second swap")
    # The old fronts, told to stop as that line is written, may take a connection or two more.
    wait_until(lambda: peer_serial(port, ctx) == newer.serial, what="the newer certificate")


def test_handshakes_under_way_count_against_max_connections(
    servers: ServerFactory, server_cert: Issued
) -> None:
    """At --max-connections, silent TLS clients make the front stop accepting (new clients
    wait in the backlog) until their handshakes time out: descriptors never run out."""
    limit = 10
    args = tls_args(server_cert, "--handshake-timeout", str(HANDSHAKE_TIMEOUT))
    server = servers.start("hello:application", *args, "--max-connections", str(limit))
    port = tls_port(server)
    silent = list(open_silent(port, limit))
    try:
        ports = [sock.getsockname()[1] for sock, _ in silent]
        wait_until(  # all taken by the front (an accept batch could take the next one too)
            lambda: all(end.inode for end in server_ends(port, ports).values()),
            what="the front to accept the silent connections",
        )
        plain = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
        plain.request("GET", "/")
        assert plain.getresponse().read() == b"Hello, world!\n"
        plain.close()
        # It was answered only once a handshake under way had timed out and freed its slot.
        # Timed from the silent clients' connect, not from the request: on a loaded machine
        # the wait for their accepts can take most of the handshake timeout.
        (first, opened), *_ = silent
        waited = time.monotonic() - opened
        assert wait_closed(first, 0.0)
    finally:
        for sock, _ in silent:
            sock.close()
    assert waited >= HANDSHAKE_TIMEOUT * 0.5, waited
