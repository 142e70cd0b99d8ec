"""systemd's notify protocol, heard on a datagram socket the test binds as $NOTIFY_SOCKET.

The fixture app `heldimport` waits in its import while the test holds a file, so the test
decides when a worker is ready and can check that READY=1 waits for it.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import struct
import time
from pathlib import Path

import pytest

import procs
from harness import ServerFactory, wait_until
from rawhttp import fetch, unix_get, unix_listening

from .test_apps import quick_and_held, write_config
from .test_supervisor import versioned_app

WATCHDOG_USEC = 400_000  # a ping every 0.2 s
LONG = 15.0
# Linux's SO_TIMESTAMPNS (asm-generic/socket.h; the socket module does not name it): the
# kernel stamps each datagram as it arrives, so pings read in one batch keep their own times.
SO_TIMESTAMPNS = 35
TIMESPEC = struct.Struct("qq")


class NotifySocket:
    """The systemd end: every datagram the server sends, in order, with when it came."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.received: list[tuple[float, dict[str, str]]] = []

    def close(self) -> None:
        self.sock.close()

    def _read(self) -> None:
        while True:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(TIMESPEC.size))
            except BlockingIOError:
                return
            arrived = time.monotonic()  # on the monotonic clock: when the kernel stamped it
            for level, kind, payload in ancillary:
                if (level, kind) == (socket.SOL_SOCKET, SO_TIMESTAMPNS):
                    seconds, nanoseconds = TIMESPEC.unpack(payload[: TIMESPEC.size])
                    arrived -= time.time() - (seconds + nanoseconds / 1e9)
            fields = dict(line.split("=", 1) for line in data.decode().splitlines())
            self.received.append((arrived, fields))

    def messages(self, key: str) -> list[dict[str, str]]:
        self._read()
        return [fields for _, fields in self.received if key in fields]

    def wait_for(self, key: str, count: int = 1, timeout: float = LONG) -> dict[str, str]:
        """The `count`-th message carrying `key`, once it came."""
        wait_until(lambda: len(self.messages(key)) >= count, timeout, f"{key} #{count}")
        return self.messages(key)[count - 1]

    def said(self) -> list[str]:
        """Every key of every message so far, in order (WATCHDOG left out)."""
        self._read()
        return [key for _, fields in self.received for key in fields if key != "WATCHDOG"]


def held_app_env(tmp_path: Path) -> tuple[Path, NotifySocket, dict[str, str]]:
    """The file that holds the app's import (held from now), systemd's socket, and the
    server's environment naming both."""
    hold = tmp_path / "hold"
    hold.touch()
    notify = NotifySocket(tmp_path / "notify")
    env = {
        "HOLD_FILE": str(hold),
        "NOTIFY_SOCKET": notify.path,
        "WATCHDOG_USEC": str(WATCHDOG_USEC),
    }
    return hold, notify, env


def test_ready_reloading_watchdog_and_stopping(servers: ServerFactory, tmp_path: Path) -> None:
    hold, notify, env = held_app_env(tmp_path)
    try:
        spawned = servers.launch("heldimport:application", "-w", "1", env=env)
        # The master's loop runs and its front answers (the watchdog pings) while the app's
        # import is held: no READY yet.
        notify.wait_for("WATCHDOG", 3)
        assert notify.messages("READY") == []
        hold.unlink()
        server = servers.serving(spawned)
        ready = notify.wait_for("READY")
        assert f"127.0.0.1:{server.port}" in ready["STATUS"], ready
        assert "heldimport:application (1 worker)" in ready["STATUS"], ready
        # Neither the app nor any child of the master sees systemd's socket.
        assert fetch(server.port, "GET", "/").body == b"none"

        # The pings keep their interval: none twice as fast as asked.
        count = len(notify.messages("WATCHDOG"))
        notify.wait_for("WATCHDOG", count + 4)
        pings = [when for when, fields in notify.received if "WATCHDOG" in fields]
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert min(gaps) > WATCHDOG_USEC / 1e6 / 2 * 0.5, gaps

        # A reload: RELOADING=1 at once, READY=1 only once the new worker has imported the app.
        hold.touch()
        os.kill(server.pid, signal.SIGHUP)
        reloading = notify.wait_for("RELOADING")
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        assert 0 <= now_usec - int(reloading["MONOTONIC_USEC"]) < LONG * 1e6
        notify.wait_for("WATCHDOG", len(notify.messages("WATCHDOG")) + 3)
        assert len(notify.messages("READY")) == 1  # the new worker is still importing
        hold.unlink()
        notify.wait_for("READY", 2)
        assert server.wait_for_log(r"worker 1 \(pid \d+\) retired")

        os.kill(server.pid, signal.SIGTERM)
        notify.wait_for("STOPPING")
        spawned.proc.wait(LONG)
        assert notify.said()[-2:] == ["STOPPING", "STATUS"]
        assert [k for k in notify.said() if k in ("READY", "RELOADING", "STOPPING")] == [
            "READY",
            "RELOADING",
            "READY",
            "STOPPING",
        ]
    finally:
        hold.unlink(missing_ok=True)
        notify.close()


def test_upgrade_hands_mainpid_to_the_new_master(servers: ServerFactory, tmp_path: Path) -> None:
    hold, notify, env = held_app_env(tmp_path)
    hold.unlink()
    pidfile = tmp_path / "maitred.pid"
    try:
        server = servers.start("hello:application", "-w", "1", "--pidfile", str(pidfile), env=env)
        old_master = server.pid
        notify.wait_for("READY")
        os.kill(old_master, signal.SIGUSR2)
        handed = notify.wait_for("MAINPID")
        new_master = int(handed["MAINPID"])
        try:
            assert new_master != old_master
            server.spawned.proc.wait(LONG)  # the old master stops once the new one serves
            assert server.spawned.proc.returncode == 0
            wait_until(lambda: pidfile.read_text().strip() == str(new_master), what="pidfile")
            # The new master said READY with its own pid too (NotifyAccess=all lets it in).
            assert any(m.get("MAINPID") == str(new_master) for m in notify.messages("READY"))
            # The old master, handing over, never said it stops: systemd would stop the unit.
            assert notify.messages("STOPPING") == []
            # The new master talks to systemd from now on, watchdog included.
            count = len(notify.messages("WATCHDOG"))
            notify.wait_for("WATCHDOG", count + 2)
        finally:
            os.kill(new_master, signal.SIGTERM)
            wait_until(lambda: not procs_alive(new_master), what="the new master to stop")
        assert notify.wait_for("STOPPING")
    finally:
        notify.close()


def procs_alive(pid: int) -> bool:
    info = procs.read_proc(pid)
    return info is not None and info.state != "Z"


def test_the_watchdog_stops_while_the_front_does_not_answer(
    servers: ServerFactory, tmp_path: Path
) -> None:
    hold, notify, env = held_app_env(tmp_path)
    hold.unlink()
    try:
        server = servers.start("hello:application", "-w", "1", env=env)
        notify.wait_for("WATCHDOG", 2)
        [front] = procs.children_titled(server.pid, "maitred: front")
        os.kill(front, signal.SIGSTOP)  # alive, but its loop does not run
        try:
            # Its heartbeats stop; within a few seconds so do the pings.
            wait_until(lambda: time.monotonic() - last_ping(notify) > 1.0, what="pings to stop")
        finally:
            os.kill(front, signal.SIGCONT)
        count = len(notify.messages("WATCHDOG"))
        notify.wait_for("WATCHDOG", count + 2)  # it beats again: so do the pings
    finally:
        notify.close()


def last_ping(notify: NotifySocket) -> float:
    notify.messages("WATCHDOG")  # reads what came
    return max(when for when, fields in notify.received if "WATCHDOG" in fields)


def test_ready_waits_for_every_app_and_a_delayed_stop_says_stopping_at_once(
    servers: ServerFactory, tmp_path: Path
) -> None:
    """Two apps, one held in its import: READY=1 only once both serve, naming both. A TERM
    with --shutdown-delay says STOPPING=1 when the delay begins, while the server serves on."""
    hold, notify, env = held_app_env(tmp_path)
    sock_path = tmp_path / "s.sock"
    config = write_config(tmp_path, quick_and_held(hold))
    try:
        args = ["-c", str(config), "-b", f"unix:{sock_path}", "--shutdown-delay", "60"]
        spawned = servers.launch(None, *args, env=env)
        wait_until(lambda: unix_listening(sock_path), what="the unix socket")
        wait_until(lambda: unix_get(sock_path, "/quick/")[0] == 200, what="app quick serving")
        assert notify.messages("READY") == []
        hold.unlink()
        server = servers.serving(spawned)
        ready = notify.wait_for("READY")
        assert "whoami" in ready["STATUS"] and "heldimport" in ready["STATUS"], ready
        os.kill(server.pid, signal.SIGTERM)
        notify.wait_for("STOPPING")
        assert fetch(server.port, "GET", "/quick/").status == 200  # the delay: serving on
        os.kill(server.pid, signal.SIGTERM)
        assert spawned.proc.wait(LONG) == 0
    finally:
        hold.unlink(missing_ok=True)
        notify.close()


@pytest.mark.expect_errors(
    r"versioned\.py\", line 1\n +def broken\(:(.|\n)*SyntaxError: invalid syntax",
    r"the new app failed to load \(see above\); keeping worker 1",
)
def test_a_reload_whose_new_code_fails_is_over_for_systemd_too(
    servers: ServerFactory, tmp_path: Path
) -> None:
    """With Type=notify-reload, `systemctl reload` waits for READY=1 after RELOADING=1: a reload
    that cannot import the new code must still say it, with the old workers serving on."""
    notify = NotifySocket(tmp_path / "notify")
    try:
        args = ["-w", "1", *versioned_app(tmp_path, "good")]
        server = servers.start("versioned:application", *args, env={"NOTIFY_SOCKET": notify.path})
        notify.wait_for("READY")
        (tmp_path / "versioned.py").write_text("def broken(:\n")
        os.kill(server.pid, signal.SIGHUP)
        notify.wait_for("RELOADING")
        notify.wait_for("READY", 2)
        assert server.wait_for_log("keeping worker 1")
        assert fetch(server.port, "GET", "/").body.startswith(b"good ")
    finally:
        notify.close()
