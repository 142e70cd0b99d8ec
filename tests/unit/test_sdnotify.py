"""The sd_notify protocol (maitred.sdnotify) and --shutdown-delay's bookkeeping."""

from __future__ import annotations

import os
import signal
import socket
import uuid
from pathlib import Path

import pytest

from maitred import sdnotify
from maitred.children import FrontChild
from maitred.shutdowndelay import ShutdownDelay


def listen(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + address[1:] if address.startswith("@") else address)
    sock.settimeout(5)
    return sock


def test_a_message_reaches_a_path_and_an_abstract_socket(tmp_path: Path) -> None:
    for address in (str(tmp_path / "notify"), f"@maitred-test-{uuid.uuid4().hex}"):
        with listen(address) as sock:
            sdnotify.Notifier(address).ready("serving x")
            assert sock.recv(4096) == b"READY=1\nSTATUS=serving x"


def test_take_empties_the_environment_and_honours_watchdog_pid() -> None:
    env = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}
    notifier = sdnotify.Notifier.take(env)
    assert env == {} and notifier.address == "@x" and notifier.interval == 1.5
    other = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}
    assert sdnotify.Notifier.take(other).interval == 0  # another process's watchdog
    assert sdnotify.Notifier.take({"WATCHDOG_USEC": "5"}).interval == 0  # nobody listens


def test_the_new_master_gets_the_socket_and_the_watchdog_as_its_own() -> None:
    notifier = sdnotify.Notifier("@x", 2_000_000)
    assert notifier.env_for_new_master(42) == {
        "NOTIFY_SOCKET": "@x",
        "WATCHDOG_USEC": "2000000",
        "WATCHDOG_PID": "42",
    }
    assert sdnotify.Notifier().env_for_new_master(42) == {}


def test_reloading_only_after_ready_and_nothing_after_a_handover(tmp_path: Path) -> None:
    address = str(tmp_path / "notify")
    with listen(address) as sock:
        notifier = sdnotify.Notifier(address)
        notifier.reloading()  # still starting: the coming READY says it all
        notifier.ready("s")
        notifier.reloading()
        assert sock.recv(4096) == b"READY=1\nSTATUS=s"
        assert sock.recv(4096).startswith(b"RELOADING=1\nMONOTONIC_USEC=")
        notifier.main_pid(7)
        assert sock.recv(4096).startswith(b"MAINPID=7\n")
        notifier.stopping()
        sock.settimeout(0.01)
        with pytest.raises(TimeoutError):
            sock.recv(4096)


def test_the_watchdog_pings_at_its_interval_only_while_the_fronts_answer(tmp_path: Path) -> None:
    address = str(tmp_path / "notify")
    with listen(address) as sock:
        notifier = sdnotify.Notifier(address, 2_000_000)
        start = notifier.next_ping
        notifier.watchdog(start, alive=False)  # the fronts are silent: no ping, next one later
        assert notifier.timeout(start) == 1.0
        notifier.watchdog(start + 0.5, alive=True)  # not due
        notifier.watchdog(start + 1.0, alive=True)
        notifier.watchdog(start + 2.0, alive=True)
        sock.settimeout(0.5)
        assert [sock.recv(64), sock.recv(64)] == [b"WATCHDOG=1"] * 2
        assert notifier.timeout(start + 2.5) == 0.5
    assert sdnotify.fronts_answer([9.0, 10.0], 11.0, 3.0)
    assert not sdnotify.fronts_answer([7.0, 10.0], 11.0, 3.0)
    assert not sdnotify.fronts_answer([], 11.0, 3.0)


def test_the_delay_tells_each_front_once_and_only_once_its_loop_beat(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(FrontChild, "send", lambda self, signum: sent.append((self.pid, signum)))
    beating = FrontChild(pid=1, started=0.0, last_seen=5.0)
    starting = FrontChild(pid=2, started=5.0, last_seen=5.0)
    delay = ShutdownDelay()
    delay.tell([beating])
    assert sent == []  # no delay under way
    delay.begin(3.0, [beating, starting])
    assert sent == [(1, signal.SIGUSR2)]
    starting.last_seen = 6.0
    delay.tell([beating, starting])
    assert sent == [(1, signal.SIGUSR2), (2, signal.SIGUSR2)]
    assert delay.running and not delay.due(0.0)
    assert delay.deadline is not None and delay.due(delay.deadline)
    delay.end()
    assert not delay.running and delay.timeout(0.0) is None
