"""Telling systemd how the server is doing: the sd_notify protocol, without libsystemd.

Theory of operation
-------------------
systemd hands a service it runs with Type=notify (or notify-reload) the address of a datagram
socket in $NOTIFY_SOCKET (a path, or an abstract name written with a leading `@`); the service
sends it newline-separated `KEY=VALUE` lines. That is the whole protocol, so it needs no library.

The master is the one process that talks to systemd (NotifyAccess=main, the default): it takes
$NOTIFY_SOCKET and the watchdog variables out of its environment at start (:meth:`Notifier.take`),
so that no child, and no app, talks to systemd by accident. What the master says, and when:

* ``READY=1`` with a ``STATUS=`` line saying what serves where, once every app pool's first
  worker has imported the app (a unit ordered after maitred finds it serving);
* ``RELOADING=1`` with ``MONOTONIC_USEC=`` on a HUP, then ``READY=1`` once the reload is over
  (every new worker ready, or given up): what Type=notify-reload waits for;
* ``STOPPING=1`` on TERM, INT and QUIT;
* ``WATCHDOG=1`` every half of $WATCHDOG_USEC (when systemd set it for this very process,
  $WATCHDOG_PID), from the master's loop and only while the fronts answer: a master whose loop
  hangs, or whose fronts stopped beating, is restarted by systemd;
* after USR2, ``MAINPID=`` naming the new master, from the old one once the new one serves, and
  from the new master itself with its own ``READY=1`` (whichever NotifyAccess lets through).

Sending never fails the server: a notification that cannot be sent is logged at debug level.
"""

from __future__ import annotations

import enum
import logging
import os
import socket
import time
from collections.abc import Iterable, MutableMapping

log = logging.getLogger("maitred.error")

NOTIFY_SOCKET = "NOTIFY_SOCKET"
WATCHDOG_USEC = "WATCHDOG_USEC"
WATCHDOG_PID = "WATCHDOG_PID"
_TAKEN = (NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID)
USEC = 1_000_000
# systemd's own advice: ping at half the watchdog timeout, so one late turn is not fatal.
WATCHDOG_SHARE = 0.5


class Phase(enum.Enum):
    """Where the server is, as systemd was last told."""

    STARTING = "starting"
    READY = "ready"
    RELOADING = "reloading"
    STOPPING = "stopping"


def send(address: str, message: str) -> None:
    """One datagram to the notify socket at `address` (`@name`: an abstract socket)."""
    target = "\0" + address[1:] if address.startswith("@") else address
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.sendto(message.encode("utf-8", "replace"), target)


class Notifier:
    """What the master tells systemd; every method is a no-op when systemd is not listening."""

    def __init__(self, address: str = "", watchdog_usec: int = 0) -> None:
        self.address = address
        self.watchdog_usec = watchdog_usec
        self.interval = watchdog_usec * WATCHDOG_SHARE / USEC  # seconds; 0: no watchdog
        self.next_ping = time.monotonic()
        self.phase = Phase.STARTING

    @classmethod
    def take(cls, environ: MutableMapping[str, str]) -> Notifier:
        """The notifier of this process, from (and out of) its environment."""
        address = environ.get(NOTIFY_SOCKET, "")
        usec_text = environ.get(WATCHDOG_USEC, "")
        pid_text = environ.get(WATCHDOG_PID, "")
        for name in _TAKEN:
            environ.pop(name, None)
        usec = int(usec_text) if usec_text.isdigit() else 0
        if pid_text and pid_text != str(os.getpid()):
            usec = 0  # the watchdog is another process's (the one systemd started, say)
        return cls(address, usec if address else 0)

    def env_for_new_master(self, pid: int) -> dict[str, str]:
        """What a new master (USR2, pid `pid`) needs to talk to systemd in our place."""
        if not self.address:
            return {}
        env = {NOTIFY_SOCKET: self.address}
        if self.watchdog_usec:
            env[WATCHDOG_USEC] = str(self.watchdog_usec)
            env[WATCHDOG_PID] = str(pid)
        return env

    def _say(self, *lines: str) -> None:
        if not self.address:
            return
        try:
            send(self.address, "\n".join(lines))
        except OSError as exc:
            log.debug("cannot notify systemd at %s: %s", self.address, exc)

    def ready(self, status: str, main_pid: int = 0) -> None:
        """The server serves (at start, or again after a reload)."""
        self.phase = Phase.READY
        lines = ["READY=1", f"STATUS={status}"]
        if main_pid:
            lines.append(f"MAINPID={main_pid}")
        self._say(*lines)

    def reloading(self) -> None:
        """A HUP: systemd waits for READY=1 again (Type=notify-reload)."""
        if self.phase is not Phase.READY:
            return  # before the first READY, that READY says it all; while stopping, nothing
        self.phase = Phase.RELOADING
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._say("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading")

    def stopping(self) -> None:
        if self.phase is Phase.STOPPING:
            return
        self.phase = Phase.STOPPING
        self._say("STOPPING=1", "STATUS=stopping")

    def main_pid(self, pid: int) -> None:
        """A new master (USR2) serves in our place: systemd follows it from now on, and this
        master says nothing more."""
        self._say(f"MAINPID={pid}", f"STATUS=handed over to the new master (pid {pid})")
        self.address = ""

    def watchdog(self, now: float, alive: bool) -> None:
        """Once per turn of the master's loop: ping when due, if `alive` (the fronts answer)."""
        if not self.interval or now < self.next_ping:
            return
        # Due either way: a silent turn waits a whole interval too, so the master's loop,
        # which wakes for the ping, never spins while the fronts are silent.
        self.next_ping = now + self.interval
        if alive:
            self._say("WATCHDOG=1")

    def timeout(self, now: float) -> float | None:
        """Seconds until the next ping is due, if a watchdog runs."""
        return max(0.0, self.next_ping - now) if self.interval else None


def fronts_answer(last_seen: Iterable[float], now: float, fresh: float) -> bool:
    """Whether the fronts answer: there is one, and every one beat within `fresh` seconds."""
    seen = list(last_seen)
    return bool(seen) and all(now - when <= fresh for when in seen)
