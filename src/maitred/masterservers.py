"""The servers the master's loop drives: --stats-bind's and the control socket.

Theory of operation
-------------------
Both are small non-blocking servers (maitred.loopserver) that the master's loop turns with its
own descriptors, so that a scraper or a `maitred ctl` never holds up supervision. The control
socket always listens (maitred.mastercommands); --stats-bind's only when asked
(maitred.masterstats, imported then: prometheus_client is what only such a master uses).

After a USR2 the old master still holds --stats-bind's address until it stops: the new one
then tries it again on every turn (:meth:`MasterServers.retry`) and takes it over as soon as it
is free, instead of failing at start. A front is forked without these sockets: a scraper's
connection held open by a front would never see its end.

Owned by the master's loop.
"""

from __future__ import annotations

import errno
import logging
from typing import TYPE_CHECKING

from maitred import mastercommands
from maitred.control import ControlServer
from maitred.loopserver import LoopServer
from maitred.processes import Closable
from maitred.statsserver import StatsServer

if TYPE_CHECKING:
    from maitred.arbiter import Arbiter

log = logging.getLogger("maitred.error")


class MasterServers:
    """--stats-bind's server, when asked for, and the control socket's."""

    def __init__(self, fresh: float) -> None:
        self._fresh = fresh  # seconds a front may be silent and still answer (the health check)
        self.stats: StatsServer | None = None
        self.stats_waiting = False  # for the old master of a USR2 to free --stats-bind
        self.control: ControlServer | None = None
        self.commands: mastercommands.MasterCommands | None = None

    def start(self, arbiter: Arbiter, upgraded: bool) -> bool:
        """Listen on both; False (and one line said why) when one cannot."""
        if arbiter.cfg.stats_bind and not self.serve_stats(arbiter, may_wait=upgraded):
            return False
        try:
            self.control, self.commands = mastercommands.start(arbiter)
        except OSError as exc:
            log.error("cannot serve the control socket: %s", exc)
            return False
        return True

    def serve_stats(self, arbiter: Arbiter, may_wait: bool) -> bool:
        """Listen at --stats-bind; False when it cannot. After a USR2 the old master holds
        the address until it stops (`may_wait`): then it is tried again every turn."""
        address = arbiter.cfg.stats_bind
        from maitred import masterstats

        try:
            self.stats = masterstats.start(arbiter, address, self._fresh)
        except OSError as exc:
            if may_wait and exc.errno == errno.EADDRINUSE:
                if not self.stats_waiting:
                    log.info("--stats-bind %s: taken once the old master stops", address)
                self.stats_waiting = True
                return True
            log.error("cannot serve --stats-bind %s: %s", address, exc)
            self.stats_waiting = False
            return False
        self.stats_waiting = False
        log.info("Stats at: %s (%d)", self.stats.url, arbiter.pid)
        return True

    def retry(self, arbiter: Arbiter) -> None:
        """Once per turn: take --stats-bind over once the old master of a USR2 freed it."""
        if self.stats_waiting:
            self.serve_stats(arbiter, may_wait=True)

    def servers(self) -> list[LoopServer]:
        """The servers that listen now, for the loop to turn."""
        return [server for server in (self.stats, self.control) if server is not None]

    def sockets(self) -> list[Closable]:
        """Every socket they hold: what a child must close."""
        return [sock for server in self.servers() for sock in server.sockets()]

    def close_stats(self) -> None:
        """Free --stats-bind's address (for the new master of a USR2, or at the end)."""
        if self.stats is not None:
            self.stats.close()
            self.stats = None

    def close(self) -> None:
        self.close_stats()
        if self.control is not None:
            self.control.close()
            self.control = None
