"""What the master tells the world about the server: where it listens, and to systemd how it is.

Theory of operation
-------------------
The "Listening at" lines are said once, when every app imports (a worker of each pool imported
it: maitred.poolset), or at once when none is to be (an empty --apps-dir): whoever reads them
may send requests at once, and they are served. Apps that join later do not say it again.

At the same moment systemd hears READY, with a STATUS= line of what serves where (and MAINPID
after a USR2: systemd follows the new master from then), and the old master of a USR2 hears
that this one serves (maitred.upgrade). Around a HUP systemd heard RELOADING; it hears READY
again once no pool waits for new workers and no new fronts wait to serve. The watchdog is fed
while the fronts beat, or while the loop runs once stopping (the fronts then go on purpose).

systemd hears from the master alone (maitred.sdnotify); the master takes its address from the
environment at start, before any child or app sees it. Owned by the master's loop.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping

from maitred import sdnotify, upgrade
from maitred.frontset import FrontSet
from maitred.masterbinds import Bindings
from maitred.poolset import PoolSet

log = logging.getLogger("maitred.error")


class Announcer:
    """Says once where the server listens; keeps systemd told (`notify`)."""

    def __init__(
        self, pid: int, environ: Mapping[str, str], poolset: PoolSet, bound: Bindings, fresh: float
    ) -> None:
        self._pid = pid
        self._environ = environ  # the master's: whether a USR2 started it
        self._poolset = poolset
        self._bound = bound
        self._fresh = fresh  # seconds a front may be silent and still answer (the watchdog)
        self.notify = sdnotify.Notifier()  # systemd, when it listens (taken at start)
        self.announced = False  # "Listening at" was said

    def take(self, environ: MutableMapping[str, str]) -> None:
        """systemd's address, taken out of `environ` so that no child or app sees it."""
        self.notify = sdnotify.Notifier.take(environ)

    def announce(self) -> None:
        """Once every app imports (or none is to be): say where the server listens, once."""
        if self.announced or not self._poolset.imported():
            return
        self.announced = True
        for url in self._bound.addresses:  # said only now that every app can be served
            log.info("Listening at: %s (%d)", url, self._pid)
        upgraded = upgrade.UPGRADE_FD in self._environ  # USR2: systemd follows us now
        self.notify.ready(self._status_line(), self._pid if upgraded else 0)
        upgrade.notify_old_master(self._environ)

    def turn(self, now: float, fronts: FrontSet, stopping: bool) -> None:
        """Once per turn of the loop: the watchdog, and READY once a reload is over."""
        beats = (front.last_seen for front in fronts.fronts())
        # While stopping the fronts go away on purpose; the loop running is what counts then.
        alive = stopping or sdnotify.fronts_answer(beats, now, self._fresh)
        self.notify.watchdog(now, alive)
        if self.notify.phase is sdnotify.Phase.RELOADING and not self._reload_pending(fronts):
            self.notify.ready(self._status_line())

    def _reload_pending(self, fronts: FrontSet) -> bool:
        """Whether a reload still waits for new workers (or new fronts) to be ready."""
        return self._poolset.replacing() or fronts.next is not None

    def _status_line(self) -> str:
        """What serves where, for systemd's STATUS= (`systemctl status` shows it)."""
        return f"serving {self._poolset.summary()} at {', '.join(self._bound.addresses)}"
