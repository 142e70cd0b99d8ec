"""Socket activation: listeners passed by systemd (here systemd-socket-activate, which binds
them, waits for a first connection, and execs maitred in its place with LISTEN_FDS)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
from pathlib import Path

import pytest

from certs import TestCA
from harness import ServerFactory, wait_until
from rawhttp import fetch, read_to_close, send_closing_get, unix_get
from waiting import poll

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-socket-activate") is None,
    reason="systemd-socket-activate (Debian's systemd package) is not installed",
)

PASSED_ENV = ("PATH", "HOME", "PYTHONPATH", "PYTHONUNBUFFERED")


def connected(path: Path) -> socket.socket | None:
    """A connection to the unix socket at `path`, once one listens there (the file appears
    at bind, before listen)."""
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(15)
    try:
        sock.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        return None
    return sock


def test_two_named_sockets_are_served_beside_a_bound_one(
    servers: ServerFactory, tmp_path: Path
) -> None:
    web, admin = tmp_path / "web.sock", tmp_path / "admin.sock"
    activate = ["systemd-socket-activate", "-l", str(web), "-l", str(admin), "--fdname=web:admin"]
    for name in PASSED_ENV:  # it passes nothing of its environment unless told
        activate += ["-E", name]
    # fd://web by name, the admin socket by its address; -b 127.0.0.1:0 is bound as usual.
    spawned = servers.launch(
        "hello:application", "-w", "1", "-b", "fd://web", "-b", f"unix:{admin}", wrapper=activate
    )
    first = poll(lambda: connected(web))
    assert first is not None, "systemd-socket-activate did not listen"
    with first:  # starts maitred, and waits in the backlog meanwhile
        send_closing_get(first, "/first")
        server = servers.serving(spawned)
        assert read_to_close(first) == (200, b"Hello, world!\n")
    assert unix_get(web, "/")[0] == 200
    assert unix_get(admin, "/")[0] == 200
    assert fetch(server.port, "GET", "/").status == 200
    assert f"Listening at: unix:{web} " in server.stderr
    assert f"Listening at: unix:{admin} " in server.stderr
    server.stop()
    # The socket unit owns the paths: maitred leaves them for its next start.
    assert web.exists() and admin.exists()


def test_after_an_upgrade_the_new_master_serves_them_and_leaves_their_paths(
    servers: ServerFactory, tmp_path: Path
) -> None:
    web = tmp_path / "web.sock"
    pidfile = tmp_path / "maitred.pid"
    activate = ["systemd-socket-activate", "-l", str(web), "--fdname=web"]
    for name in PASSED_ENV:
        activate += ["-E", name]
    args = ("-w", "1", "-b", "fd://web", "--pidfile", str(pidfile))
    spawned = servers.launch("hello:application", *args, wrapper=activate)
    first = poll(lambda: connected(web))
    assert first is not None, "systemd-socket-activate did not listen"
    first.close()  # it started maitred
    old = servers.serving(spawned)
    os.kill(old.pid, signal.SIGUSR2)
    assert old.spawned.proc.wait(15) == 0  # the old master stops once the new one serves
    new_master = int(pidfile.read_text())
    try:
        assert new_master != old.pid
        assert unix_get(web, "/")[0] == 200
    finally:
        os.kill(new_master, signal.SIGTERM)
        wait_until(lambda: not pidfile.exists(), what="the new master to stop")
    assert web.exists()  # the socket unit's, still


def test_a_scheme_before_a_name_says_which_passed_socket_is_tls(
    servers: ServerFactory, tmp_path: Path
) -> None:
    """`-b https://fd://secure -b http://fd://web`: HTTPS on one named socket, HTTP on the
    other, as with addresses (here unix sockets, which are TLS only when they say so)."""
    ca = TestCA(tmp_path)
    cert = ca.issue("server", "127.0.0.1")
    web, secure = tmp_path / "web.sock", tmp_path / "secure.sock"
    activate = ["systemd-socket-activate", "-l", str(web), "-l", str(secure)]
    activate += ["--fdname=web:secure", *(f"-E{name}" for name in PASSED_ENV)]
    files = ["--certfile", str(cert.cert), "--keyfile", str(cert.key)]
    binds = ["-b", "https://fd://secure", "-b", "http://fd://web"]
    spawned = servers.launch("hello:application", "-w", "1", *binds, *files, wrapper=activate)
    first = poll(lambda: connected(web))
    assert first is not None, "systemd-socket-activate did not listen"
    first.close()  # it started maitred
    servers.serving(spawned)
    assert unix_get(web, "/") == (200, b"Hello, world!\n")
    ctx = ca.client_context()
    with (
        socket.socket(socket.AF_UNIX) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1", do_handshake_on_connect=False) as tls,
    ):
        tls.settimeout(15)
        tls.connect(str(secure))
        tls.do_handshake()
        send_closing_get(tls, "/")
        assert read_to_close(tls) == (200, b"Hello, world!\n")
    assert f"Listening at: https://unix:{secure} " in spawned.stderr.text
