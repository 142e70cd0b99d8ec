"""Apps: several WSGI apps in one server, each with its own pool of workers and its routing.

Theory of operation
-------------------
A server without ``[apps.NAME]`` tables runs one app, the one its settings name (the command
line's APP): :func:`resolve` makes it the implicit app ``main``, which serves every request and
whose log lines name no app, as they did before there were several.

In a config file each ``[apps.NAME]`` table is one app. :func:`read_tables` reads the tables
with the file: a key is one of the settings declared ``per_app`` in maitred.config (parsed as
the top level parses it), or a routing key (``hosts``, ``path``, ``default``); any other key
is an error naming the closest one, and a setting of the whole server (``bind``, ``fronts``)
says so. :func:`resolve` turns the tables into :class:`App` records: the server's settings
with the table's values over them (``Config.replace``). An app is thus a whole Config, which
its pool, its workers and the fronts use as they use the server's; the top-level values are
every app's defaults (``env`` merges, key by key).

Paths: an app's ``chdir`` is relative to the server's directory (its chdir, where the master
runs); the pythonpath, virtualenv and static directories of its table to its own chdir, the
inherited ones to the server's directory. `resolve` makes them all absolute, so that a worker,
which changes to its app's directory, and the front, which stays in the master's, read them
alike. An app's ``root-path`` becomes the server's (or its own) followed by its ``path``: the
SCRIPT_NAME of its requests.

Which app serves a request is the front's business (maitred.front.routes); here the tables are
checked so that no two apps claim the same Host and path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from maitred import config
from maitred.config import Config, ConfigError
from maitred.locations import Location, check_files, read_locations
from maitred.worker import warmup

IMPLICIT = "main"  # the pool of the one app of a server without tables
HOSTS, PATH, DEFAULT = "hosts", "path", "default"
ROUTING = (HOSTS, PATH, DEFAULT)
LOCATIONS = config.LOCATIONS_TABLE  # [[apps.NAME.locations]]: its rules per path
# An app's name goes into socket paths, process titles and log lines: keep it plain and short.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
# A host name (lower case, no port), `*.` and a name for its subdomains, or an IP literal.
_LABEL = r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?"
HOST = re.compile(rf"(\*\.)?{_LABEL}(\.{_LABEL})*|\[[0-9a-f:.]+\]")
PREFIX = re.compile(r"(/[A-Za-z0-9._~!$&'()*+,;=:@-]+)*")  # segments, no trailing slash

PER_APP = {f.name: f for f in config.SETTINGS if f.metadata["per_app"]}
_SERVER_WIDE = {f.name for f in config.SETTINGS} - set(PER_APP)


@dataclass(frozen=True)
class Route:
    """Which requests an app takes: by Host, then by path prefix (maitred.front.routes)."""

    hosts: tuple[str, ...] = ()  # lower case; `*.example.com`: its subdomains
    path: str = ""  # URL prefix without a trailing slash; "" takes every path
    default: bool = False  # it also takes a Host no app names

    @property
    def any_host(self) -> bool:
        """Whether it takes the requests whose Host no app names (no hosts: every Host)."""
        return self.default or not self.hosts


@dataclass(frozen=True)
class Table:
    """One ``[apps.NAME]`` table as read: its settings, parsed, and its routing."""

    name: str
    settings: tuple[tuple[str, Any], ...]  # (setting name, value) as the table gives them
    route: Route
    locations: tuple[Location, ...] = ()  # its [[apps.NAME.locations]] (maitred.locations)


@dataclass(frozen=True)
class App:
    """One app: its name, its whole settings and its routing."""

    name: str
    cfg: Config
    route: Route
    implicit: bool = False  # the one app of a server without tables
    locations: tuple[Location, ...] = ()  # its own; the server's are in cfg.locations

    @property
    def label(self) -> str:
        """How log lines name the app: not at all when it is the server's only one."""
        return "" if self.implicit else self.name

    @property
    def warmup_host(self) -> str:
        """The Host of its --warmup requests: its first host name that is no wildcard."""
        named = [host for host in self.route.hosts if not host.startswith("*.")]
        return named[0] if named else warmup.HOST

    @property
    def prefix(self) -> str:
        """The URL prefix routed to it ("" for every path); its requests' SCRIPT_NAME."""
        return self.cfg.root_path if self.route.path else ""


# --- reading the tables (with the config file) ---


def read_tables(value: Any, origin: str) -> tuple[Table, ...]:
    """The ``[apps.NAME]`` tables of a config file; ConfigError names what is wrong."""
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"{origin}: [apps] holds one table per app, [apps.NAME]")
    return tuple(_table(name, body, f"{origin} [apps.{name}]") for name, body in value.items())


def _table(name: str, body: Any, origin: str) -> Table:
    if not NAME.fullmatch(name):
        raise ConfigError(f"{origin}: an app's name is 1-32 letters, digits, '-' or '_'")
    if not isinstance(body, dict):
        raise ConfigError(f"{origin}: expected a table of settings")
    settings: dict[str, Any] = {}
    routing: dict[str, Any] = {}
    locations: tuple[Location, ...] = ()
    for key, value in body.items():
        if key == LOCATIONS:
            locations = read_locations(value, f"{origin} [[locations]]", name)
            continue
        if key in ROUTING:
            routing[key] = value
            continue
        f = PER_APP.get(key.replace("-", "_"))
        if f is None:
            raise ConfigError(f"{origin}: {_unknown(key)}")
        settings[f.name] = config.parse_value(f, value, origin)
    return Table(name, tuple(settings.items()), _route(routing, origin), locations)


def _unknown(key: str) -> str:
    if key.replace("-", "_") in _SERVER_WIDE:
        return f"{key!r} is a setting of the whole server, not of one app: set it at the top level"
    keys = [*ROUTING, LOCATIONS, *(config.key_of(f) for f in PER_APP.values())]
    return f"unknown setting {key!r}{config.closest(key, keys, repr)}"


def _route(routing: Mapping[str, Any], origin: str) -> Route:
    hosts = routing.get(HOSTS, [])
    if isinstance(hosts, str):
        hosts = [hosts]
    if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
        raise ConfigError(f"{origin}: 'hosts' is a list of host names")
    names = tuple(h.strip().lower().rstrip(".") for h in hosts)
    for host in names:
        if not HOST.fullmatch(host):
            raise ConfigError(
                f"{origin}: invalid host {host!r}: expected a name without port "
                "(shop.example.com), *. and a name (*.example.com) or an IP address"
            )
    path = routing.get(PATH, "/")
    if not isinstance(path, str) or not path.startswith("/"):
        raise ConfigError(f"{origin}: 'path' is a URL prefix starting with /")
    path = path.rstrip("/")
    if not PREFIX.fullmatch(path) or any(s in (".", "..") for s in path.split("/")):
        raise ConfigError(f"{origin}: invalid path {routing[PATH]!r}: expected /prefix")
    default = routing.get(DEFAULT, False)
    if not isinstance(default, bool):
        raise ConfigError(f"{origin}: 'default' is true or false")
    return Route(names, path, default)


# --- resolving them into apps ---


def names(cfg: Config) -> tuple[str, ...]:
    """The names of the apps (and so of the pools) the settings run."""
    return tuple(table.name for table in cfg.apps) if cfg.apps else (IMPLICIT,)


def resolve(cfg: Config, base: str | None = None) -> tuple[App, ...]:
    """The apps `cfg` runs; `base` is the server's directory as an absolute path (its chdir;
    default: this process's directory, which is the master's after it changed to it)."""
    if not cfg.apps:
        return (App(IMPLICIT, cfg, Route(default=True), implicit=True),)
    if cfg.preload:
        raise ConfigError(
            "preload is for a server of one app: with [apps] tables the master would import "
            "every app into one process, where two can collide (two Django projects, two "
            "modules of one name)"
        )
    server = cfg.replace(apps=())
    where = os.getcwd() if base is None else base
    found = tuple(_app(server, table, where) for table in cfg.apps)
    check_files(loc for table in cfg.apps for loc in table.locations)
    _check_routes(found)
    return found


def _app(server: Config, table: Table, base: str) -> App:
    given = dict(table.settings)
    chdir = _under(base, given.get("chdir", ""))
    # The table's own paths are under the app's directory, the inherited ones under the server's.
    own = chdir if "pythonpath" in given else base
    pythonpath = tuple(_under(own, p) for p in given.get("pythonpath", server.pythonpath))
    own = chdir if "static" in given else base
    static = tuple((prefix, _under(own, d)) for prefix, d in given.get("static", server.static))
    own = chdir if "virtualenv" in given else base
    venv = given.get("virtualenv", server.virtualenv)
    env = dict(server.env)
    env.update(given.get("env", ()))
    changes = {
        **given,
        "chdir": chdir,
        "env": tuple(env.items()),
        "pythonpath": pythonpath,
        "virtualenv": _under(own, venv) if venv else "",
        "static": static,
        "root_path": given.get("root_path", server.root_path).rstrip("/") + table.route.path,
    }
    try:
        cfg = config.check(server.replace(**changes))
        app = App(table.name, cfg, table.route, locations=table.locations)
    except ConfigError as exc:
        raise ConfigError(f"app {table.name}: {exc}") from None
    for prefix, _ in app.cfg.static:
        if app.prefix and not _within(prefix, app.prefix):
            raise ConfigError(
                f"app {app.name}: static mount {prefix} is outside its path {app.prefix}: "
                "none of its requests would reach it"
            )
    return app


def _under(directory: str, path: str) -> str:
    return os.path.normpath(os.path.join(directory, path))


def _within(path: str, prefix: str) -> bool:
    """On a segment boundary: /shop covers /shop and /shop/x, not /shopping."""
    return path == prefix or path.startswith(prefix + "/")


def _check_routes(found: tuple[App, ...]) -> None:
    """No two apps may claim the same Host and path: one of them would never be reached."""
    claimed: dict[tuple[str, str], str] = {}  # (host, or "" for any other Host; prefix) -> app
    for app in found:
        hosts = [*app.route.hosts, *([""] if app.route.any_host else [])]
        for host in hosts:
            other = claimed.setdefault((host, app.prefix), app.name)
            if other != app.name:
                raise ConfigError(
                    f"apps {other} and {app.name} both serve {host or 'any other Host'} at "
                    f"{app.prefix or '/'}: give one of them other hosts or another path"
                )
