"""USR2: start a new master from the current code that inherits the listening sockets.

The old master execs `python -m maitred` with the same arguments, passing its listeners as
inherited file descriptors (MAITRED_LISTEN_FDS) and the write end of a pipe
(MAITRED_UPGRADE_FD). The new master adopts the listeners instead of binding, so no connection
attempt is refused, and writes one byte on the pipe once its first worker is ready; the old
master then stops gracefully. The fronts of both accept on the same sockets in between.

Listeners travel in groups, one per bind address (several sockets when the old master ran
several fronts, see maitred.sockets): ``3+4,5`` is two sockets for the first address, one for
the second.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from maitred import sdnotify
    from maitred.masterbinds import Bindings

log = logging.getLogger("maitred.error")

LISTEN_FDS = "MAITRED_LISTEN_FDS"
UPGRADE_FD = "MAITRED_UPGRADE_FD"
ExtraEnv = Callable[[int], Mapping[str, str]]


def start_new_master(
    groups: Sequence[Sequence[socket.socket]], argv: Sequence[str], extra_env: ExtraEnv
) -> tuple[int, int]:
    """Fork and exec the new master; returns (its pid, the read end of its ready pipe).
    `extra_env(pid)` is what the new master needs beyond our environment (systemd's
    variables, which the master keeps out of its own: maitred.sdnotify)."""
    read_fd, write_fd = os.pipe()
    fds = [sock.fileno() for group in groups for sock in group]
    pid = os.fork()
    if pid:
        os.close(write_fd)
        return pid, read_fd
    try:
        os.close(read_fd)
        for fd in (*fds, write_fd):
            os.set_inheritable(fd, True)
        env = dict(os.environ)
        env.update(extra_env(os.getpid()))  # exec keeps the pid
        env[LISTEN_FDS] = listen_fds(groups)
        env[UPGRADE_FD] = str(write_fd)
        os.execve(sys.executable, [sys.executable, "-m", "maitred", *argv], env)
    finally:
        os._exit(1)  # exec failed; the old master keeps serving


def listen_fds(groups: Sequence[Sequence[socket.socket]]) -> str:
    """The groups of listening sockets as MAITRED_LISTEN_FDS says them: ``3+4,5``."""
    return ",".join("+".join(str(sock.fileno()) for sock in group) for group in groups)


def inherited_listeners(environ: Mapping[str, str]) -> list[list[socket.socket]]:
    """The groups of listening sockets an old master passed down, in its bind order."""
    groups = []
    for text in filter(None, environ.get(LISTEN_FDS, "").split(",")):
        group = []
        for fd in text.split("+"):
            sock = socket.socket(fileno=int(fd))
            sock.set_inheritable(False)
            sock.setblocking(False)
            group.append(sock)
        groups.append(group)
    return groups


def notify_old_master(environ: Mapping[str, str]) -> None:
    """Tell the master that started this one (if any) that we serve now."""
    text = environ.get(UPGRADE_FD, "")
    if text:
        with contextlib.suppress(OSError):
            os.write(int(text), b"R")
            os.close(int(text))


class Upgrade:
    """A new master that USR2 started, until it says whether it serves."""

    def __init__(self) -> None:
        self.fd = -1  # read end of the new master's ready pipe, while one starts
        self.pid = 0  # the new master's
        self.done = False  # a new master took over our sockets

    def start(
        self, groups: Sequence[Sequence[socket.socket]], argv: Sequence[str], extra_env: ExtraEnv
    ) -> None:
        if self.fd >= 0:
            log.warning("SIGUSR2: an upgrade is under way already")
            return
        log.info("SIGUSR2: starting a new master")
        self.pid, self.fd = start_new_master(groups, argv, extra_env)
        log.info("new master started (pid %d)", self.pid)

    def begin(self, bound: Bindings, argv: Sequence[str], notify: sdnotify.Notifier) -> None:
        """USR2: start a new master on `bound`'s listeners, with what it needs beyond our
        environment: systemd's variables, and which listeners systemd owns."""

        def new_master_env(pid: int) -> dict[str, str]:
            env = notify.env_for_new_master(pid)
            env.update(bound.env_for_new_master())
            return env

        self.start(bound.listeners, argv, new_master_env)

    def fds(self) -> list[int]:
        """What the master's loop waits on for the upgrade: the new master's pipe, if any."""
        return [self.fd] if self.fd >= 0 else []

    def turn(self, readable: Collection[int]) -> bool:
        """One turn of the master's loop: True once a new master serves in our place."""
        return self.fd >= 0 and self.fd in readable and self.finish()

    def finish(self) -> bool:
        """The new master said whether it serves (its pipe is readable): True if it does."""
        said = os.read(self.fd, 1)
        os.close(self.fd)
        self.fd = -1
        if said:
            log.info("the new master serves; stopping this one")
            self.done = True
        else:
            log.error("the new master failed to start; this one keeps serving")
        return self.done
