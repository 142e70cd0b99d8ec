"""The settings the master serves with, and every way they change while it runs.

Theory of operation
-------------------
At start the master enters the server's directory, sets --env and reads --apps-dir
(maitred.appsdir); the apps of the settings then get their pools (maitred.poolset).

A HUP replaces every worker of every app, make-before-break; when it changes a setting of the
fronts, it replaces the fronts too, as a new generation (maitred.frontset says how), and then
it may not add or remove apps. Otherwise the apps it adds, removes or changes reach the running
fronts as a new table (maitred.frontapps), as the changes of --apps-dir do (polled from the
master's loop): a new app starts its pool, an app gone stops routing and its workers drain and
go, a changed one (of the directory) reloads alone; no other app's workers, and no connection,
notice. A HUP also loads the TLS certificate again (maitred.tls).

Two things undo a change. An app of --apps-dir that cannot be imported goes (until its file
changes) and the server serves on; any other app that cannot be imported stops the server
(the master decides that). New fronts of a reload whose workers cannot start are dropped: the
running fronts keep their settings, and so do the pools.

Nothing here forks or signals: the pools do that through the master (maitred.pool.Spawner), and
the master tells this object the fronts once it has bound their sockets. Owned by the master's
loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from maitred import apps, appsdir, logs, runtime, tls
from maitred.appload import prepare_path
from maitred.config import Config, ConfigError, reloaded
from maitred.frontset import FrontSet
from maitred.poolset import PoolSet, same_apps

log = logging.getLogger("maitred.error")


class MasterSettings:
    """The settings in use (`cfg`), how to read them again, --apps-dir and --env."""

    def __init__(
        self,
        cfg: Config,
        read: Callable[[], Config] | None,
        poolset: PoolSet,
        announce: Callable[[], None],
    ) -> None:
        self.cfg = cfg
        self._read = read  # the settings a HUP reads again; None: a HUP keeps them
        self._poolset = poolset
        self._announce = announce  # once the apps changed: say where the server listens
        self.appsdir: appsdir.AppsDir | None = None  # --apps-dir
        self.env = runtime.Environment()
        self.fronts: FrontSet | None = None  # once the master bound the sockets

    def start(self) -> Config:
        """Enter the server's directory, set --env, read --apps-dir, and give each app its
        pool (not started yet). The settings, with the apps of --apps-dir."""
        cfg = self.cfg
        if cfg.apps_dir:  # named from where maitred started, read from the server's directory
            self.appsdir = appsdir.AppsDir(cfg.apps_dir, cfg.apps_dir_owner)
        # Several apps: each worker enters its app's virtualenv (maitred.worker.main).
        prepare_path(cfg.chdir, cfg.pythonpath, "" if apps.several(cfg) else cfg.virtualenv)
        self.env.set(cfg.env)
        if self.appsdir is not None:
            cfg = self.cfg = self.appsdir.start(cfg)
        self._poolset.use(cfg)
        return cfg

    def reload(self) -> None:
        """HUP: the settings read again, the apps' changes, the certificate; every worker
        (but those of the apps just started) replaced."""
        assert self.fronts is not None
        if self.fronts.next is not None:
            # The latest settings win, and a new worker stuck in its import cannot hold up
            # every later reload.
            log.warning("reload: dropping the new fronts that were waiting for their workers")
            self.drop_next()
        cfg = None
        started: tuple[str, ...] = ()
        if self._read is not None:
            try:
                cfg, new_fronts = reloaded(self.cfg, self._load_config)
                if new_fronts:
                    same_apps(self.cfg, cfg)
                tls.check_reload(self.cfg, cfg)
            except ConfigError as exc:
                log.error("reload: %s", exc)
                return
            self.env.set(cfg.env)
            logs.set_level(cfg.log_level)
            if new_fronts:
                self._poolset.use(cfg)
                self.cfg = cfg
                log.info("reload: the fronts' settings changed; new fronts start with new workers")
                self.fronts.open_next(cfg)
            else:
                started = self._change_apps(cfg).start
        self._reload_tls()
        if self.cfg.preload:
            log.warning(
                "reload: with --preload the app was imported by the master; "
                "send USR2 to load new code"
            )
        self._poolset.reload(cfg, started)

    def _load_config(self) -> Config:
        """The settings a HUP reads again, with the apps of --apps-dir as accepted."""
        assert self._read is not None
        cfg = self._read()
        return self.appsdir.merge(cfg) if self.appsdir is not None else cfg

    def _reload_tls(self) -> None:
        """Load the certificate again: new fronts start with it and the running ones load it
        too; one that cannot be loaded keeps the one in use (maitred.tls)."""
        assert self.fronts is not None
        if not tls.enabled(self.cfg):
            return
        try:
            self.fronts.tls_context = tls.build_context(self.cfg)
        except tls.TLSError as exc:
            log.error("reload: keeping the TLS certificate in use: %s", exc)
            return
        self.fronts.reload_tls()

    def _change_apps(self, cfg: Config) -> apps.Diff:
        """Serve the apps of `cfg` from now on, the fronts running as they are: the fronts
        take the new table, the new apps' pools start. What changed (the caller reloads)."""
        assert self.fronts is not None
        diff = self._poolset.use(cfg)
        self.cfg = cfg
        self.fronts.use_apps(cfg)  # first: the new pools' workers link to their listeners
        for name in diff.start:
            log.info("the app %s joins the server", name)
            self._poolset.pools[name].start()
        return diff

    def poll_apps_dir(self, now: float) -> None:
        """--apps-dir: apply what changed in the directory, unless a reload is replacing the
        fronts (then at a later poll)."""
        assert self.fronts is not None
        if self.appsdir is None or self.fronts.next is not None:
            return
        polled = self.appsdir.poll(self.cfg, now)
        if polled is not None:
            diff = self._change_apps(polled.cfg)
            # A file touched but unchanged reloads its app's code all the same.
            for name in sorted(set(diff.reload) | (set(polled.reread) - set(diff.start))):
                self._poolset.pools[name].reload(self._poolset.apps[name].cfg)
            self._announce()

    def give_up(self, name: str) -> bool:
        """An app that cannot be imported: one of --apps-dir goes (until its file changes)
        and the server serves on; any other stops the server. Whether it went."""
        table = self.appsdir.tables.get(name) if self.appsdir is not None else None
        if self.appsdir is None or table is None:
            return False
        log.error("apps-dir: %s: the app cannot be imported; not serving it", table.source)
        self._change_apps(self.appsdir.forget(name, self.cfg))
        self._announce()
        return True

    def drop_next(self) -> None:
        """The new fronts of a reload will not serve: the running ones keep their settings."""
        assert self.fronts is not None
        self.cfg = self.cfg.with_fronts_of(self.fronts.drop_next(self._poolset.pools.values()))
        self._poolset.keep(self.cfg)
