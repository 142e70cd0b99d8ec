"""What the master binds and owns on disk: the listeners, their addresses, systemd's sockets, and
the runtime directory of the links and the spooled bodies.

Theory of operation
-------------------
The master binds every listener once (maitred.sockets), or takes those that systemd (socket
activation) or an old master (USR2) passes (maitred.inherit), and makes the runtime directory
(maitred.runtime) where the fronts' link sockets live and, unless --body-temp-dir says otherwise,
the spooled request bodies, so that it can remove what a killed front left behind. With --user,
the children's user is handed what it must reach (maitred.privileges).

A stopping server refuses new clients at once (a load balancer then tries another) rather than
leave them in a listen backlog nobody will accept from. A listener is closed only when its last
holder closes it, so each front holds only its own, no worker holds any, and the master closes
its copies (and removes a unix socket's path) before it signals the fronts: each front then
takes what its backlog holds and closes (maitred.front.accept), and the front is the last.
A HUP keeps the listeners in the master for the new fronts; a new master (USR2) holds its own,
and a path that systemd's socket unit owns is never removed.

Owned by the master's loop.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
from collections.abc import Iterable

from maitred import inherit, privileges, runtime, sockets, tls
from maitred.apps import App
from maitred.config import Config

log = logging.getLogger("maitred.error")


class Bindings:
    """The listeners per bind address, their URLs, systemd's sockets and the runtime directory."""

    def __init__(self) -> None:
        self.listeners: list[list[socket.socket]] = []  # per bind address (maitred.sockets)
        self.addresses: list[str] = []  # their URLs, for the "Listening at" lines
        self.systemd_sockets: list[socket.socket] = []  # activated: systemd owns their paths
        self.link_dir = ""

    def bind(self, cfg: Config, apps: Iterable[App]) -> tuple[str, str]:
        """Listen at every address of `cfg` and make the runtime directory, handed over to the
        children's users: the link directory and the spool directory."""
        inherited = inherit.listeners(cfg.bind, os.environ)  # USR2's, or systemd's
        self.systemd_sockets = inherited.systemd
        self.listeners, self.addresses = sockets.bind_all(
            cfg.bind, cfg.backlog, cfg.fronts, inherited.groups, tls.schemes(cfg)
        )
        self.link_dir = runtime.make_dir()
        # Spooled request bodies live under the master's own directory unless --body-temp-dir
        # says otherwise, so the master can remove what a killed front left behind.
        spool_dir = os.path.join(self.link_dir, "spool")
        os.mkdir(spool_dir, 0o700)
        dirs = (self.link_dir, spool_dir)
        _hand_over(cfg, apps, dirs)
        return dirs

    def sockets(self) -> list[socket.socket]:
        """Every listener the master holds."""
        return [sock for group in self.listeners for sock in group]

    def env_for_new_master(self) -> dict[str, str]:
        """Which listeners systemd owns, for the new master of an upgrade (USR2)."""
        return inherit.env_for_new_master(self.systemd_sockets)

    def close_listeners(self, upgraded: bool) -> None:
        """Hold the listening sockets no more; remove a unix socket's path unless a new
        master serves it (`upgraded`: USR2) or systemd's socket unit owns it."""
        sockets.close_all(self.listeners, upgraded, self.systemd_sockets)
        self.listeners = []

    def remove_dir(self) -> None:
        """The runtime directory goes, with what a killed front left in it."""
        if self.link_dir:
            shutil.rmtree(self.link_dir, ignore_errors=True)


def _hand_over(cfg: Config, apps: Iterable[App], dirs: tuple[str, str]) -> None:
    """--user: the children's user reaches its own files (maitred.privileges says which);
    one line says who runs as whom."""
    identity = privileges.resolve(cfg.user, cfg.group)  # checked with the settings
    workers = {app.label: privileges.resolve(app.cfg.user, app.cfg.group) for app in apps}
    someone = identity or next(filter(None, workers.values()), None)  # switches
    # --apps-dir: an app of another user may join at any time.
    privileges.share_runtime(someone is not None or bool(cfg.apps_dir), *dirs)
    privileges.hand_over_logs(cfg.user, cfg.group, cfg.error_logfile, cfg.access_logfile)
    line = privileges.master_line(identity, workers)
    if line is not None:
        log.info("%s", line)
