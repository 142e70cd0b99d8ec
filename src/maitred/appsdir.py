"""--apps-dir: a directory of apps, one ``NAME.toml`` each, watched while the server runs.

Theory of operation
-------------------
Watching. The master's loop calls :meth:`AppsDir.poll` on every turn; at most once per
POLL_INTERVAL it lists the directory and stats each ``NAME.toml``. Polling, not inotify: it
needs no thread and no dependency in the master, it sees every way a file can change (an
editor's rename, a Kubernetes ConfigMap's symlink swap, a file on NFS), and a listdir plus one
stat per file each second costs nothing a hundred apps would notice. A file is known by its
:class:`Stamp` (inode, size, times, owner, mode): a write, a rename over it or a chown changes
it. A file is read only once its stamp held still over one poll, so one caught half-written is
read after its writer is done (writing to another name and renaming it into place is still the
way to deploy); a file missing from two polls in a row is gone. So a change is applied one to
two seconds after it is made.

Reading. A file holds the keys of an ``[apps.NAME]`` table (maitred.apps.read_table), without
the prefix; its name is the app's. A relative ``chdir`` is under the directory. With
--apps-dir-owner (uWSGI's tyrant mode) the app runs as its file's owner and group: a file owned
by root is refused, and so is one whose own user or group keys name someone else
(:func:`parse`, pure but for the user lookup).

Validating. A new or changed file is tried with the apps that run: the config file's tables
and the directory's accepted ones, this one in its place, resolved together (maitred.apps
.resolve: each app's settings checked, no two apps on one Host and path, no name taken by the
config file). A file that fails is logged in one line naming it and its error, and changes
nothing: the app it would have replaced serves on as it was, the others are not touched. It is
said once per version of the file; the next version is tried again (:func:`settle`).

Applying is the arbiter's: it gets the settings with every table (:meth:`AppsDir.merge`) and
diffs the apps they resolve to (maitred.apps.diff) into apps to start, reload and stop, and
also reloads an app whose file was read again unchanged (:class:`Polled`): `touch NAME.toml`
loads the app's new code, the way to reload an app that --reload does not watch. An app
of the directory that cannot be imported is given up (:meth:`AppsDir.forget`) until its file
changes, rather than stopping the server.

Owned by the master's loop.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import stat
import time
from collections.abc import Mapping
from typing import NamedTuple

from maitred import apps, privileges
from maitred.apps import Table
from maitred.config import Config, ConfigError, toml

log = logging.getLogger("maitred.error")

POLL_INTERVAL = 1.0  # seconds between two looks at the directory
SUFFIX = ".toml"
ROOT = 0


class Stamp(NamedTuple):
    """One version of a file, as stat sees it: any change to the file changes it."""

    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int
    uid: int
    gid: int
    mode: int


def stamp_of(st: os.stat_result) -> Stamp:
    return Stamp(
        st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_uid, st.st_gid, st.st_mode
    )


class Polled(NamedTuple):
    """What a poll changed: the settings with the directory's apps, and the apps whose file
    was read and accepted (each is reloaded, even when its file says what it said: touching
    the file reloads the app's code)."""

    cfg: Config
    reread: tuple[str, ...]


class Pending(NamedTuple):
    """What a poll found to do."""

    read: tuple[str, ...]  # new or changed files, held still since the last poll
    gone: tuple[str, ...]  # files of apps that are no longer there


def pending(
    handled: Mapping[str, Stamp], previous: Mapping[str, Stamp], current: Mapping[str, Stamp]
) -> Pending:
    """The files to read and the apps gone (pure): `handled` holds the version of each file
    applied or refused, `previous` and `current` what the last two polls saw."""
    read = [
        name
        for name, seen in current.items()
        if previous.get(name) == seen and handled.get(name) != seen
    ]
    gone = [name for name in handled if name not in current and name not in previous]
    return Pending(tuple(sorted(read)), tuple(sorted(gone)))


def parse(name: str, text: str, stamp: Stamp, directory: str, owner: bool) -> Table:
    """The table of the file `name`.toml of `directory`; ConfigError says what is wrong."""
    origin = os.path.join(directory, name + SUFFIX)  # opens every error said here
    if not apps.NAME.fullmatch(name):
        raise ConfigError(f"{origin}: the file's name is the app's: 1-32 letters, digits, - or _")
    tomllib = toml()
    try:
        body = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin}: not valid TOML: {exc}") from None
    table = apps.read_table(name, body, origin)
    settings = dict(table.settings)
    if settings.get("chdir") is not None:  # relative: under the directory
        settings["chdir"] = os.path.join(directory, settings["chdir"])
    if owner:
        try:
            settings.update(_owner(settings, stamp))
        except ConfigError as exc:
            raise ConfigError(f"{origin}: {exc}") from None
    return dataclasses.replace(table, settings=tuple(settings.items()), source=origin)


def _owner(settings: Mapping[str, object], stamp: Stamp) -> dict[str, str]:
    """--apps-dir-owner: the file's owner and group, which its own keys may only repeat."""
    if not stat.S_ISREG(stamp.mode):
        raise ConfigError(
            "not a regular file (a symlink?): with --apps-dir-owner the app runs as the "
            "owner of the file itself"
        )
    if stamp.uid == ROOT:
        raise ConfigError(
            "owned by root: with --apps-dir-owner an app runs as the owner of its file, and "
            "never as root; chown it to the app's user"
        )
    user, group = str(settings.get("user", "")), str(settings.get("group", ""))
    if user or group:
        try:
            named = privileges.resolve(user or str(stamp.uid), group)
        except privileges.IdentityError as exc:
            raise ConfigError(str(exc)) from None
        assert named is not None
        if named.uid != stamp.uid or (group and named.gid != stamp.gid):
            raise ConfigError(
                f"user {user or '-'} and group {group or '-'} are not the file's owner "
                f"(uid {stamp.uid}, gid {stamp.gid}): with --apps-dir-owner the app runs as "
                "the owner of its file; drop the keys or chown the file"
            )
    return {"user": str(stamp.uid), "group": str(stamp.gid)}


Change = Table | ConfigError | None  # a file read, one that failed to read, or one gone


def settle(
    cfg: Config, accepted: Mapping[str, Table], changes: Mapping[str, Change]
) -> tuple[dict[str, Table], list[str]]:
    """The directory's tables once `changes` are tried one by one against the running apps
    (`cfg`'s config-file tables and `accepted`), and one error line per change refused."""
    tables = dict(accepted)
    errors = []
    own = {table.name for table in cfg.apps if not table.source}
    for name, change in sorted(changes.items()):
        if change is None:
            tables.pop(name, None)
            continue
        kept = "the app serves on as it was" if name in tables else "the app is not started"
        if isinstance(change, ConfigError):  # it names its file
            errors.append(f"apps-dir: {change}; not applied, {kept}")
            continue
        trial = {**tables, name: change}
        try:
            if name in own:
                raise ConfigError(f"the config file has an app named {name}")
            apps.resolve(merged(cfg, trial))
        except ConfigError as exc:
            errors.append(f"apps-dir: {change.source}: {exc}; not applied, {kept}")
            continue
        tables = trial
    return tables, errors


def merged(cfg: Config, tables: Mapping[str, Table]) -> Config:
    """`cfg` with its config-file tables and the directory's `tables`."""
    own = tuple(table for table in cfg.apps if not table.source)
    return cfg.replace(apps=own + tuple(tables[name] for name in sorted(tables)))


class AppsDir:
    """The apps of one directory as the master last accepted them, and its watch."""

    def __init__(self, directory: str, owner: bool) -> None:
        self.directory = os.path.abspath(directory)
        self.owner = owner
        self.tables: dict[str, Table] = {}  # accepted, by app name
        self._handled: dict[str, Stamp] = {}  # the version of each file applied or refused
        self._previous: dict[str, Stamp] = {}  # what the last poll saw
        self._next_poll = 0.0
        self._unreadable = False  # the last listing failed (said once)

    def merge(self, cfg: Config) -> Config:
        """`cfg` (a HUP's, say) with the directory's accepted apps."""
        return merged(cfg, self.tables)

    def start(self, cfg: Config) -> Config:
        """The first look, its refusals logged."""
        cfg, errors = self.survey(cfg)
        for line in errors:
            log.error("%s", line)
        return cfg

    def survey(self, cfg: Config) -> tuple[Config, list[str]]:
        """The first look: every file is read now (nothing runs yet to be half-replaced). The
        settings with the apps accepted, and one line per file refused (or the directory, when
        it cannot be listed): the master logs them, maitred check prints them."""
        current = self._list()
        if isinstance(current, OSError):
            self._unreadable = True  # said here, not again by the next poll
            return self.merge(cfg), [f"apps-dir: cannot list {self.directory}: {current}"]
        self._previous = current
        self._next_poll = time.monotonic() + POLL_INTERVAL
        cfg, errors, _ = self._apply(cfg, Pending(tuple(sorted(current)), ()), current)
        return cfg, errors

    def poll(self, cfg: Config, now: float) -> Polled | None:
        """What a poll found when it found a change, else None."""
        if now < self._next_poll:
            return None
        self._next_poll = now + POLL_INTERVAL
        current = self._scan()
        if current is None:
            return None  # unreadable for now: the apps serve on
        todo = pending(self._handled, self._previous, current)
        self._previous = current
        if not (todo.read or todo.gone):
            return None
        cfg, errors, reread = self._apply(cfg, todo, current)
        for line in errors:
            log.error("%s", line)
        return Polled(cfg, reread)

    def forget(self, name: str, cfg: Config) -> Config:
        """An app of the directory could not be imported: it is given up until its file
        changes. The settings without it."""
        self.tables.pop(name, None)
        return self.merge(cfg)

    def _apply(
        self, cfg: Config, todo: Pending, current: Mapping[str, Stamp]
    ) -> tuple[Config, list[str], tuple[str, ...]]:
        """The settings once `todo` is tried, the refusals, and the apps whose file was read
        and accepted."""
        changes: dict[str, Change] = dict.fromkeys(todo.gone)
        for name in todo.read:
            changes[name] = self._read(name, current[name])
            self._handled[name] = current[name]
        for name in todo.gone:
            del self._handled[name]
        self.tables, errors = settle(cfg, self.tables, changes)
        reread = tuple(name for name in todo.read if self.tables.get(name) is changes[name])
        return self.merge(cfg), errors, reread

    def _read(self, name: str, stamp: Stamp) -> Change:
        path = os.path.join(self.directory, name + SUFFIX)
        try:
            with open(path, "rb") as fh:
                text = fh.read().decode("utf-8")
            return parse(name, text, stamp, self.directory, self.owner)
        except (OSError, UnicodeDecodeError) as exc:
            return ConfigError(f"{path}: cannot read it: {exc}")
        except ConfigError as exc:
            return exc

    def _scan(self) -> dict[str, Stamp] | None:
        """The directory's listing; None when it cannot be listed (said once while it
        lasts)."""
        found = self._list()
        if isinstance(found, OSError):
            if not self._unreadable:
                log.error("apps-dir: cannot list %s: %s; the apps serve on", self.directory, found)
            self._unreadable = True
            return None
        self._unreadable = False
        return found

    def _list(self) -> dict[str, Stamp] | OSError:
        """The stamp of each NAME.toml (hidden files and others are not apps), or why the
        directory cannot be listed."""
        found: dict[str, Stamp] = {}
        try:
            with os.scandir(self.directory) as entries:
                for entry in entries:
                    name = entry.name
                    if name.startswith(".") or not name.endswith(SUFFIX):
                        continue
                    try:
                        st = entry.stat(follow_symlinks=not self.owner)
                    except OSError:
                        continue  # gone meanwhile
                    found[name.removesuffix(SUFFIX)] = stamp_of(st)
        except OSError as exc:
            return exc
        return found
