"""The apps a server runs, and a pool for each: which apps, which pool a worker is of.

Theory of operation
-------------------
The master holds one :class:`PoolSet`. :meth:`PoolSet.use` resolves the apps of a set of
settings (maitred.apps) and compares them with those that run: a new app gets a pool (its
caller starts it, once the fronts know the app), and the pool of an app gone is removed: the
fronts route nothing more to it, its workers finish what they hold and leave, and until the last
has left the pool stays among the departing ones, so that their exits still find their pool.
A HUP (`reload`) reloads every pool, or every one but those the same reload started.

Nothing here forks or signals: the pools ask the master (maitred.pool.Spawner). Nothing here
knows the fronts either: the master tells them the new table of apps (maitred.frontset).

Owned by the master's loop.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from maitred import apps
from maitred.children import WorkerChild
from maitred.config import Config, ConfigError
from maitred.pool import Pool, Spawner

log = logging.getLogger("maitred.error")


class PoolSet:
    """The apps of the server by name, the pool of each, and the pools of apps gone."""

    def __init__(self, spawner: Spawner) -> None:
        self._spawner = spawner
        self.apps: dict[str, apps.App] = {}
        self.pools: dict[str, Pool] = {}
        self.departing: list[Pool] = []  # of apps gone, until their workers are

    def use(self, cfg: Config) -> apps.Diff:
        """Serve the apps of `cfg` (resolved in the server's directory): a pool for each new
        one (not started yet), the pool of each app gone removed. What changed."""
        found = {app.name: app for app in apps.resolve(cfg)}
        diff = apps.diff(self.apps, found)
        self.apps = found
        for name in diff.stop:
            pool = self.pools.pop(name)
            log.info("the app %s left the server: its workers finish their requests", name)
            pool.remove()
            self.departing.append(pool)
        for name in diff.start:
            self.pools[name] = Pool(name, found[name].cfg, self._spawner)
        return diff

    def keep(self, cfg: Config) -> None:
        """The same apps with the settings of `cfg` (a reload that will not happen)."""
        self.apps = {app.name: app for app in apps.resolve(cfg)}
        for name, pool in self.pools.items():
            pool.use(self.apps[name].cfg)

    def reload(self, cfg: Config | None, started: Iterable[str] = ()) -> None:
        """HUP: every pool but those just `started` replaces its workers, with the settings
        of `cfg` when they were read again."""
        for name, pool in self.pools.items():
            if name not in started:
                pool.reload(self.apps[name].cfg if cfg is not None else None)

    def pool_of(self, child: WorkerChild) -> Pool | None:
        """The pool of a worker: of a running app, or of one gone whose workers are leaving."""
        for pool in [*self.pools.values(), *self.departing]:
            if pool.has(child):
                return pool
        return self.pools.get(child.pool)

    def exited(self) -> None:
        """A worker exited: a departing pool whose last worker it was is gone too."""
        self.departing = [pool for pool in self.departing if pool.workers]

    def scale(self, step: int, why: str) -> None:
        """TTIN (`step` 1) or TTOU (-1): scale the pool of a server of one app; with several,
        which pool the signal means is not said, so it is only logged."""
        if len(self.pools) > 1:
            log.warning(
                "%s: this server runs %d apps; scale one through its own settings and a HUP",
                why,
                len(self.pools),
            )
            return
        for pool in self.pools.values():
            pool.scale(step, why)

    def imported(self) -> bool:
        """Whether every app has been imported (by a worker of its pool) at least once."""
        return all(pool.app_imported for pool in self.pools.values())

    def replacing(self) -> bool:
        """Whether a pool still waits for new workers to be ready (a reload in progress)."""
        return any(pool.replacing() for pool in self.pools.values())

    def next_start(self) -> float | None:
        """When the next restart of a worker is due, if one waits."""
        starts = (pool.next_start() for pool in self.pools.values())
        return min((when for when in starts if when is not None), default=None)

    def summary(self) -> str:
        """What runs, for systemd's STATUS=: each app and its number of workers."""
        return ", ".join(
            f"{pool.cfg.app or 'the demo app'} ({pool.wanted} "
            f"{'worker' if pool.wanted == 1 else 'workers'})"
            for pool in self.pools.values()
        )


def same_apps(running: Config, loaded: Config) -> None:
    """A HUP reloads the apps that run: ConfigError when the new settings add or remove one."""
    added = set(apps.names(loaded)) - set(apps.names(running))
    removed = set(apps.names(running)) - set(apps.names(loaded))
    if added or removed:
        changes = [
            *(f"adds {n}" for n in sorted(added)),
            *(f"removes {n}" for n in sorted(removed)),
        ]
        raise ConfigError(
            f"the new configuration {', '.join(changes)}: a HUP reloads the apps that run; "
            "restart maitred (or upgrade it with USR2) to add or remove one"
        )
