"""Matching systemd's sockets to --bind entries (maitred.inherit), and binding what is left."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from maitred import inherit, sockets


@pytest.fixture
def listening(tmp_path: Path) -> Iterator[dict[str, socket.socket]]:
    tcp = sockets.bind(sockets.parse_address("127.0.0.1:0"), 8)
    other = sockets.bind(sockets.parse_address("127.0.0.1:0"), 8)
    unix = sockets.bind(sockets.parse_address(f"unix:{tmp_path}/u.sock"), 8)
    named = sockets.bind(sockets.parse_address(f"unix:{tmp_path}/named.sock"), 8)
    made = {"tcp": tcp, "other": other, "unix": unix, "named": named}
    yield made
    for sock in made.values():
        sock.close()


def test_entries_take_sockets_by_name_or_by_address(
    listening: dict[str, socket.socket], tmp_path: Path
) -> None:
    port = listening["tcp"].getsockname()[1]
    activated = [
        ("unknown", listening["tcp"]),
        ("web", listening["named"]),
        ("unknown", listening["unix"]),
        ("spare", listening["other"]),
    ]
    texts = ["127.0.0.1:0", f"127.0.0.1:{port}", "fd://web", f"unix:{tmp_path}/u.sock"]
    groups, unused = inherit.match(texts, activated)
    assert groups == {
        1: [listening["tcp"]],
        2: [listening["named"]],
        3: [listening["unix"]],
    }
    assert unused == [("spare", listening["other"])]


def test_a_host_name_or_another_port_never_matches(listening: dict[str, socket.socket]) -> None:
    port = listening["tcp"].getsockname()[1]
    activated = [("unknown", listening["tcp"])]
    texts = [f"localhost:{port}", f"127.0.0.1:{port + 1}", f"[::1]:{port}", "fd://unknown2"]
    assert inherit.match(texts, activated) == ({}, activated)


def test_bind_all_uses_what_is_passed_and_binds_the_rest(
    listening: dict[str, socket.socket],
) -> None:
    groups, urls = sockets.bind_all(["fd://web", "127.0.0.1:0"], 8, 1, {0: [listening["named"]]})
    try:
        assert groups[0] == [listening["named"]]
        assert urls[0] == f"unix:{listening['named'].getsockname()}"
        assert urls[1].startswith("http://127.0.0.1:")
    finally:
        for sock in groups[1]:
            sock.close()
    with pytest.raises(OSError, match="fd://nothing"):
        sockets.bind_all(["fd://nothing"], 8, 1, {})


def test_fd_names_are_checked_like_systemd_does() -> None:
    assert sockets.parse_address("fd://web-1.http").name == "web-1.http"
    for bad in ("fd://", "fd://a:b", "fd://a b"):
        with pytest.raises(ValueError):
            sockets.parse_address(bad)


def test_the_variables_are_taken_and_only_our_own_count() -> None:
    env = {"LISTEN_FDS": "2", "LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDNAMES": "a:b"}
    assert inherit.from_systemd(env) == []  # another process's (LISTEN_PID)
    assert env == {}
    assert inherit.from_systemd({"LISTEN_PID": str(os.getpid())}) == []


def test_a_new_master_knows_which_inherited_sockets_are_systemds(
    listening: dict[str, socket.socket], tmp_path: Path
) -> None:
    mine, systemds = listening["tcp"], listening["unix"]
    env = {
        "MAITRED_LISTEN_FDS": f"{mine.fileno()},{systemds.fileno()}",
        **inherit.env_for_new_master([systemds]),
    }
    texts = ["127.0.0.1:0", f"unix:{tmp_path}/u.sock"]
    inherited = inherit.listeners(texts, env)
    for sock in (mine, systemds):
        sock.detach()  # the inherited socket objects own the descriptors now
    try:
        [[_], [new_systemds]] = inherited.groups.values()
        assert inherited.systemd == [new_systemds]
        assert "MAITRED_SYSTEMD_FDS" not in env
    finally:
        for group in inherited.groups.values():
            for sock in group:
                sock.close()
