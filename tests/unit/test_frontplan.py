"""How a server is divided among its fronts (maitred.frontplan): pure functions."""

from __future__ import annotations

import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maitred import frontplan, sockets, upgrade
from maitred.config import Config, ConfigError, check


@given(total=st.integers(0, 100_000), count=st.integers(1, 64))
def test_shares_add_up_to_the_server_wide_limit(total: int, count: int) -> None:
    parts = [frontplan.share(total, count, n) for n in frontplan.numbers(count)]
    if total == 0:
        assert parts == [0] * count  # no limit stays no limit
    elif total >= count:
        assert sum(parts) == total
        assert max(parts) - min(parts) <= 1
    else:
        assert min(parts) == 1  # every front may hold something


def test_a_single_front_is_plain_front_and_gets_everything() -> None:
    assert frontplan.numbers(1) == [0]
    assert frontplan.name(0) == "front"
    assert frontplan.share(1000, 1, 0) == 1000
    assert {frontplan.of_worker(w, 1) for w in range(1, 9)} == {0}


def test_workers_are_dealt_to_fronts_in_turn() -> None:
    assert frontplan.numbers(3) == [1, 2, 3]
    assert [frontplan.of_worker(w, 3) for w in range(1, 8)] == [1, 2, 3, 1, 2, 3, 1]
    assert frontplan.name(2) == "front 2"


def test_each_front_runs_with_its_share_and_its_spool() -> None:
    cfg = Config(fronts=3, workers=6, max_connections=10, max_queue=0, max_connections_per_ip=7)
    second = frontplan.front_config(cfg, 2, "/spool/2")
    assert (second.max_connections, second.max_queue, second.body_temp_dir) == (3, 0, "/spool/2")
    assert second.max_connections_per_ip == 2
    assert (
        frontplan.front_config(cfg.replace(max_connections_per_ip=0), 2, "").max_connections_per_ip
        == 0
    )
    assert frontplan.front_config(cfg, 1, "/spool/1").max_connections == 4
    chosen = cfg.replace(body_temp_dir="/var/tmp/bodies")
    assert frontplan.front_config(chosen, 2, "/spool/2").body_temp_dir == "/var/tmp/bodies"


def test_more_fronts_than_workers_is_refused() -> None:
    assert check(Config(fronts=2, workers=2)).fronts == 2
    with pytest.raises(ConfigError, match=r"fronts \(3\) must not exceed workers \(2\)"):
        check(Config(fronts=3, workers=2))


@given(sockets=st.integers(1, 8), count=st.integers(1, 8))
def test_every_listener_is_served_and_every_front_serves(sockets: int, count: int) -> None:
    group = list(range(sockets))  # an upgrade may hand over more or fewer than there are fronts
    served = [frontplan.listeners_of(n, count, group) for n in frontplan.numbers(count)]
    assert all(served)
    assert {sock for mine in served for sock in mine} == set(group)
    if sockets == count:
        assert served == [[sock] for sock in group]  # one each


def test_a_group_shares_one_port_and_travels_whole_to_a_new_master() -> None:
    address = sockets.parse_address("127.0.0.1:0")
    group = sockets.bind_group(address, 16, 3)
    single = sockets.bind_group(address, 16, 1)
    adopted: list[list[socket.socket]] = []
    try:
        assert len({sock.getsockname()[1] for sock in group}) == 1
        assert all(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) for sock in group)
        # Alone, a server keeps its port to itself: a second one on it is refused.
        assert not single[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        with pytest.raises(OSError):
            sockets.bind(sockets.parse_address(f"127.0.0.1:{single[0].getsockname()[1]}"), 16)
        passed = [[sock.dup() for sock in group], [single[0].dup()]]
        text = upgrade.listen_fds(passed)
        fds = [[sock.detach() for sock in passed_group] for passed_group in passed]  # exec'd
        adopted = upgrade.inherited_listeners({upgrade.LISTEN_FDS: text})
        assert [[sock.fileno() for sock in adopted_group] for adopted_group in adopted] == fds
    finally:
        for sock in [*group, *single, *(s for adopted_group in adopted for s in adopted_group)]:
            sock.close()
