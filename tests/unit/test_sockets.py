"""Binding refuses an address another server holds: a port's SO_REUSEPORT group, a live unix
socket. Real sockets on 127.0.0.1 and under tmp_path; no server process."""

from __future__ import annotations

import errno
import os
import select
import socket
import stat
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from maitred import sockets
from rawhttp import server_end
from waiting import poll

BACKLOG = 16
WAIT = 5.0
TIME_WAIT = "06"  # the state column of /proc/net/tcp


@pytest.fixture
def held() -> Iterator[ExitStack]:
    """Closes the sockets a test binds."""
    with ExitStack() as stack:
        yield stack


def hold(stack: ExitStack, group: list[socket.socket]) -> list[socket.socket]:
    for sock in group:
        stack.enter_context(sock)
    return group


def tcp(port: int) -> sockets.Address:
    return sockets.parse_address(f"127.0.0.1:{port}")


def unix(path: Path) -> sockets.Address:
    return sockets.parse_address(f"unix:{path}")


def assert_in_use(exc: pytest.ExceptionInfo[OSError], address: sockets.Address) -> None:
    assert exc.value.errno == errno.EADDRINUSE
    assert str(exc.value) == f"[Errno {errno.EADDRINUSE}] Address already in use: '{address}'"


@pytest.mark.parametrize("count", [1, 2])
def test_a_group_is_refused_a_port_a_server_holds(held: ExitStack, count: int) -> None:
    first = hold(held, sockets.bind_group(tcp(0), BACKLOG, count))
    address = tcp(first[0].getsockname()[1])
    with pytest.raises(OSError) as exc:
        hold(held, sockets.bind_group(address, BACKLOG, 2))
    assert_in_use(exc, address)


def test_port_0_gives_a_whole_group_one_free_port(held: ExitStack) -> None:
    group = hold(held, sockets.bind_group(tcp(0), BACKLOG, 3))
    ports = {sock.getsockname()[1] for sock in group}
    assert len(ports) == 1 and 0 not in ports
    assert all(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) for sock in group)


def in_time_wait(port: int, client_port: int) -> bool:
    """True once our end (`port`) of the connection from `client_port` waits in TIME_WAIT (it
    gets there as the peer's FIN arrives)."""

    def waiting() -> bool:
        end = server_end(port, client_port)
        return end is not None and end.state == TIME_WAIT

    return poll(waiting, timeout=WAIT)


def test_a_group_binds_where_its_last_server_left_time_wait(held: ExitStack) -> None:
    gone = sockets.bind_group(tcp(0), BACKLOG, 2)
    port = gone[0].getsockname()[1]
    with socket.create_connection(("127.0.0.1", port)) as client:
        client_port = client.getsockname()[1]
        ready, _, _ = select.select(gone, [], [], WAIT)
        ready[0].accept()[0].close()  # the server closes first: its end waits in TIME_WAIT
        assert client.recv(1) == b""
    for sock in gone:
        sock.close()
    assert in_time_wait(port, client_port)
    group = hold(held, sockets.bind_group(tcp(port), BACKLOG, 2))  # SO_REUSEADDR, probe too
    assert {sock.getsockname()[1] for sock in group} == {port}


def test_a_live_unix_socket_is_refused_and_left_in_place(held: ExitStack, tmp_path: Path) -> None:
    address = unix(tmp_path / "s.sock")
    live = held.enter_context(sockets.bind(address, BACKLOG))
    inode = os.stat(address.path).st_ino
    with pytest.raises(OSError) as exc:
        hold(held, sockets.bind_group(address, BACKLOG, 2))
    assert_in_use(exc, address)
    assert os.stat(address.path).st_ino == inode
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(address.path)
        live.setblocking(True)
        held.enter_context(live.accept()[0])


def test_a_unix_socket_with_a_full_backlog_is_live(held: ExitStack, tmp_path: Path) -> None:
    address = unix(tmp_path / "s.sock")
    held.enter_context(sockets.bind(address, 0))
    waiting = held.enter_context(socket.socket(socket.AF_UNIX))
    waiting.connect(address.path)  # never accepted: the backlog of 0 holds just this one
    with pytest.raises(OSError) as exc:
        held.enter_context(sockets.bind(address, BACKLOG))
    assert_in_use(exc, address)


def test_a_bound_datagram_socket_is_live(held: ExitStack, tmp_path: Path) -> None:
    address = unix(tmp_path / "s.sock")
    held.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)).bind(address.path)
    with pytest.raises(OSError) as exc:
        held.enter_context(sockets.bind(address, BACKLOG))
    assert_in_use(exc, address)


def test_a_stale_unix_socket_is_replaced(held: ExitStack, tmp_path: Path) -> None:
    address = unix(tmp_path / "s.sock")
    with socket.socket(socket.AF_UNIX) as gone:
        gone.bind(address.path)
        gone.listen()
    assert Path(address.path).is_socket()  # the file outlives its socket
    new = held.enter_context(sockets.bind(address, BACKLOG))
    with socket.socket(socket.AF_UNIX) as client:  # the path leads to the new one
        client.connect(address.path)
        new.setblocking(True)
        held.enter_context(new.accept()[0])


def test_a_file_that_is_no_socket_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    path.write_text("data")
    with pytest.raises(OSError) as exc:
        sockets.bind(unix(path), BACKLOG)
    assert_in_use(exc, unix(path))
    assert path.read_text() == "data"


def test_a_socket_that_vanishes_before_the_check_is_bound_anew(
    held: ExitStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.sock"
    real_stat = os.stat

    def seen_as_socket(name: str | os.PathLike[str], **options: bool) -> os.stat_result:
        if name == str(path):  # as if another server removed it right after the stat
            fields = list(real_stat(tmp_path))
            fields[stat.ST_MODE] = stat.S_IFSOCK | 0o755
            return os.stat_result(fields)
        return real_stat(name, **options)

    monkeypatch.setattr(os, "stat", seen_as_socket)
    held.enter_context(sockets.bind(unix(path), BACKLOG))
    monkeypatch.undo()
    assert path.is_socket()


def test_a_socket_we_may_not_connect_to_is_left_alone(
    held: ExitStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = unix(tmp_path / "s.sock")
    with socket.socket(socket.AF_UNIX) as gone:
        gone.bind(address.path)
    inode = os.stat(address.path).st_ino

    def refuse(sock: socket.socket, where: object) -> None:  # root may connect to any socket
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(socket.socket, "connect", refuse)
    with pytest.raises(PermissionError) as exc:
        held.enter_context(sockets.bind(address, BACKLOG))
    monkeypatch.undo()
    assert str(address) in str(exc.value)
    assert os.stat(address.path).st_ino == inode


@pytest.mark.parametrize(
    ("text", "protocol", "family", "place"),
    [
        ("127.0.0.1:9000", sockets.HTTP, socket.AF_INET, "127.0.0.1:9000"),
        ("http://127.0.0.1:9000", sockets.HTTP, socket.AF_INET, "127.0.0.1:9000"),
        ("uwsgi://127.0.0.1:9000", sockets.UWSGI, socket.AF_INET, "127.0.0.1:9000"),
        ("fastcgi://[::1]:9001", sockets.FASTCGI, socket.AF_INET6, "[::1]:9001"),
        ("uwsgi://unix:/run/app.sock", sockets.UWSGI, socket.AF_UNIX, "unix:/run/app.sock"),
        ("fastcgi://unix:/run/app.sock", sockets.FASTCGI, socket.AF_UNIX, "unix:/run/app.sock"),
    ],
)
def test_a_bind_address_names_its_protocol(
    text: str, protocol: str, family: socket.AddressFamily, place: str
) -> None:
    address = sockets.parse_address(text)
    assert (address.protocol, address.family) == (protocol, family)
    scheme = "" if protocol == sockets.HTTP else f"{protocol}://"
    assert str(address) == scheme + place  # as --bind takes it, in error messages


@pytest.mark.parametrize("text", ["scgi://127.0.0.1:9000", "uwsgi://unix:", "fastcgi://:x"])
def test_an_unknown_protocol_or_a_bad_address_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        sockets.parse_address(text)


def test_the_url_of_a_gateway_listener_says_its_protocol(held: ExitStack) -> None:
    address = sockets.parse_address("uwsgi://127.0.0.1:0")
    sock = held.enter_context(sockets.bind(address, 16))
    assert address.url(sock) == f"uwsgi://127.0.0.1:{sock.getsockname()[1]}"


def test_a_bind_address_may_say_its_scheme() -> None:
    secure = sockets.parse_address("https://[::1]:8443")
    assert (secure.scheme, secure.family, secure.host, secure.port) == (
        "https",
        socket.AF_INET6,
        "::1",
        8443,
    )
    assert sockets.parse_address("HTTP://unix:/run/x.sock").path == "/run/x.sock"
    assert sockets.parse_address("127.0.0.1:80").scheme == ""
    with pytest.raises(ValueError, match="unknown scheme"):
        sockets.parse_address("uwsgi-ish://127.0.0.1:80")


def test_the_url_of_a_listener_carries_its_scheme(held: ExitStack, tmp_path: Path) -> None:
    groups, urls = sockets.bind_all(
        ["https://127.0.0.1:0", f"unix:{tmp_path / 's'}"], BACKLOG, 1, schemes=["https", "http"]
    )
    for group in groups:
        hold(held, group)
    assert urls == [f"https://127.0.0.1:{groups[0][0].getsockname()[1]}", f"unix:{tmp_path / 's'}"]
