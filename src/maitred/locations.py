"""Locations: rules per URL path, as nginx's ``location`` blocks. Pure; no I/O.

Theory of operation
-------------------
A location is one table of an array in the config file: ``[[locations]]`` for the whole
server, ``[[apps.NAME.locations]]`` for one app's requests. Each has a ``path`` and rules
(who may enter, how big a body may be, which headers the answer carries, where to redirect).
:func:`read_locations` reads an array into :class:`Location` records; every key is a field of
:class:`Location` whose metadata says how its TOML value is parsed (:func:`key`), so a new rule
is one new field here and its use where requests are judged (maitred.front.rules); `maitred
check` and the docs show it from the same field (maitred.locationtext).

Which location a request falls in (:class:`LocationTable`, asked once per request head):

* ``path = "= /login"`` is an exact match, as nginx's ``location =``: that path only;
* any other path is a prefix matched on a segment boundary: ``/admin`` and ``/admin/`` both
  take ``/admin``, ``/admin/`` and ``/admin/users``, never ``/administrator`` (nginx's plain
  string prefix would take it); so a guard on ``/admin/`` cannot be walked around by dropping
  the slash. ``/`` takes every path;
* an exact match wins; else the longest prefix wins; the rest are not consulted (one location
  judges a request, its keys are not merged with another's: as nginx, write a rule again in
  each location that needs it);
* the path compared is the request's, percent-decoded (as the app's PATH_INFO), with dot
  segments resolved and repeated slashes folded (:func:`normal_path`), so ``/%61dmin/`` and
  ``/static/../admin/`` fall in ``/admin/`` as the app would read them.

Server-wide and per-app locations combine: a request's candidates are the server-wide ones and
those of the app that serves it; the winner is chosen among them all as above, and where both
name the same path the app's location replaces the server's. Paths are the request's whole
path, not relative to an app's ``path``.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import unquote_to_bytes

from maitred.config import (
    ConfigError,
    client_addresses,
    closest,
    parse_bool,
    parse_size,
    parse_str,
)
from maitred.front.limits import RateKeys, parse_key, parse_rate_text, parse_status

T = TypeVar("T")
EXACT = "="
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
# The only substitutions of `redirect`: nginx's names, values from the request.
REDIRECT_VARIABLES = ("$scheme", "$host", "$request_uri")
_VARIABLE = re.compile(r"\$[a-z_]+")
# A response header's name (RFC 9110 token) and a value without control characters.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
# Fields the front writes itself and an app may not set (framing, hop-by-hop).
FRAMING_FIELDS = frozenset(
    {"content-length", "transfer-encoding", "connection", "keep-alive", "date", "server"}
)


# --- parsers of the keys' TOML values: each raises ValueError with what was expected ---


def _body_size(value: Any) -> int:
    """size in bytes, with an optional K, M or G suffix; 0 for no limit"""
    return parse_size(value)


def _count(value: Any) -> int:
    """integer >= 0"""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError
    return value


def _headers(value: Any) -> tuple[tuple[str, str], ...]:
    """table of header names and values"""
    if not isinstance(value, dict):
        raise ValueError
    result = []
    for name, text in value.items():
        if not _TOKEN.fullmatch(name) or name.lower() in FRAMING_FIELDS:
            raise ValueError
        if not isinstance(text, str) or not _FIELD_VALUE.fullmatch(text):
            raise ValueError
        result.append((name, text.strip()))
    return tuple(result)


def _redirect(value: Any) -> str:
    """URL, with $scheme, $host and $request_uri as its only substitutions"""
    text = parse_str(value).strip()
    if not text or any(c.isspace() or ord(c) < 0x21 for c in text):
        raise ValueError
    if any(v not in REDIRECT_VARIABLES for v in _VARIABLE.findall(text)):
        raise ValueError
    return text


def _redirect_status(value: Any) -> int:
    """one of 301, 302, 303, 307, 308"""
    if isinstance(value, bool) or value not in REDIRECT_STATUSES:
        raise ValueError
    return int(value)


def key(default: Any, parse: Callable[[Any], Any], help: str) -> Any:
    """Declare one key of a location: its default (what a location without it does), how its
    TOML value is parsed, and what it does (maitred check and the docs show it)."""
    return field(default=default, metadata={"parse": parse, "help": help})


@dataclass(frozen=True)
class Location:
    """One location as the config file gives it. ``None`` for allow/deny: not given, the
    server's --allow/--deny apply."""

    path: str  # the prefix, or the exact path, without the "= "
    exact: bool = False
    origin: str = ""  # where it was declared, for messages and `maitred check`
    app: str = ""  # the app whose table declared it; "": the whole server's
    # --- the keys (their TOML names: the field names with "-" for "_") ---
    allow: tuple[str, ...] | None = key(
        None,
        client_addresses,
        "Client addresses and CIDR blocks let in; with allow alone, anyone else gets 403. The "
        "most specific entry of allow and deny that holds the address decides, deny on a tie. "
        "Not given: the server's allow and deny.",
    )
    deny: tuple[str, ...] | None = key(
        None,
        client_addresses,
        "Client addresses and CIDR blocks refused with 403 (see allow). Not given: the "
        "server's allow and deny.",
    )
    auth_basic: str = key(
        "",
        parse_str,
        "An htpasswd file (bcrypt, SHA-256/512-crypt; apr1 and {SHA} with a warning): a "
        "request needs a user and password of it, else 401. Read again when it changes.",
    )
    auth_basic_realm: str = key("maitred", parse_str, "The realm the 401 names.")
    max_body_size: int | None = key(
        None,
        _body_size,
        "Largest request body in the location, over limit-request-body: 413 from "
        "Content-Length, or as soon as a chunked body passes it. Not given: "
        "limit-request-body.",
    )
    headers: tuple[tuple[str, str], ...] = key(
        (),
        _headers,
        "Response header fields put on every answer of the location (the app's, static "
        "files, errors), replacing the response's own of those names: "
        '`{ Strict-Transport-Security = "max-age=63072000" }`.',
    )
    access_log: bool = key(
        True, parse_bool, "false keeps the location's requests out of the access log."
    )
    redirect: str = key(
        "",
        _redirect,
        "Answer every request with a redirect to this URL; $scheme, $host (without the "
        "port) and $request_uri are the request's.",
    )
    redirect_status: int = key(301, _redirect_status, "The status of the redirect.")
    # nginx's limit_req and limit_conn (maitred.front.limits). None: not given, the server's
    # --rate (with its burst, nodelay, delay), --limit-conn, --limit-key, --limit-status apply.
    rate: str | None = key(
        None,
        parse_rate_text,
        "Requests a second (5r/s) or a minute (30r/m) one client may send here, as nginx's "
        "limit_req: a leaky bucket per client (limit-key) in a table every front shares. Past "
        "the rate and the burst: limit-status (429) with Retry-After, before the body is read. "
        "Its bucket is the location's own. Not given: the server's --rate, if any, whose "
        'bucket every location without a rate shares; "": none here.',
    )
    burst: int = key(
        0,
        _count,
        "Requests past the rate that are let in: they wait in the front (no thread, no place "
        "in the queue) until the rate lets them on, unless nodelay or delay.",
    )
    nodelay: bool = key(
        False, parse_bool, "The burst goes on at once, though it is spent all the same."
    )
    delay: int = key(
        0,
        _count,
        "nginx's two-stage limiting: the first N requests of a burst go on at once, the rest "
        "wait for the rate (at most burst).",
    )
    limit_conn: int | None = key(
        None,
        _count,
        "Requests of one client (limit-key) in progress at once here, across the fronts, as "
        "nginx's limit_conn; past it, limit-status with Retry-After: 1. Not given: the "
        "server's --limit-conn.",
    )
    limit_key: str | None = key(
        None,
        parse_key,
        'What rate and limit-conn count per: "address" (the client after the proxy rules) or '
        '"header:X-Api-Key" (a request without it is not counted). Not given: --limit-key.',
    )
    limit_status: int | None = key(
        None,
        parse_status,
        "The status of a request refused by rate or limit-conn. Not given: --limit-status (429).",
    )

    @property
    def rate_keys(self) -> RateKeys:
        return RateKeys(self.rate or "", self.burst, self.nodelay, self.delay)

    @property
    def shown_path(self) -> str:
        return f"{EXACT} {self.path}" if self.exact else self.path

    @property
    def place(self) -> tuple[bool, str]:
        """Which requests it takes: "/admin" and "/admin/" take the same ones."""
        return (self.exact, self.path if self.exact else self.path.rstrip("/"))


KEYS: dict[str, dataclasses.Field[Any]] = {
    f.name.replace("_", "-"): f for f in dataclasses.fields(Location) if "parse" in f.metadata
}
PATH = "path"


def read_locations(value: Any, origin: str, app: str = "") -> tuple[Location, ...]:
    """The locations of one ``[[locations]]`` array (of the server, or of `app`)."""
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise ConfigError(f"{origin}: locations is an array of tables, [[locations]]")
    found = tuple(_location(t, f"{origin} #{n}", app) for n, t in enumerate(value, 1))
    seen: dict[tuple[bool, str], str] = {}
    for loc in found:
        other = seen.setdefault(loc.place, loc.origin)
        if other != loc.origin:
            raise ConfigError(f"{loc.origin}: path {loc.shown_path!r} is given twice ({other})")
    return found


def _location(table: Mapping[str, Any], origin: str, app: str) -> Location:
    values: dict[str, Any] = {}
    for name, value in table.items():
        if name == PATH:
            continue
        f = KEYS.get(name)
        if f is None:
            raise ConfigError(f"{origin}: unknown key {name!r}{closest(name, [PATH, *KEYS], repr)}")
        try:
            values[f.name] = f.metadata["parse"](value)
        except (ValueError, TypeError):
            doc = (f.metadata["parse"].__doc__ or "value").strip()
            raise ConfigError(f"{origin}: invalid {name} {value!r}: expected {doc}") from None
    exact, path = parse_path(table.get(PATH), origin)
    if values.get("redirect_status") and not values.get("redirect"):
        raise ConfigError(f"{origin}: redirect-status without redirect")
    location = Location(path, exact, f"{origin} {table.get(PATH)!r}", app, **values)
    try:
        location.rate_keys.rule()
    except ValueError as exc:
        raise ConfigError(f"{origin}: {exc}") from None
    return location


def parse_path(value: Any, origin: str) -> tuple[bool, str]:
    """(exact, path) from a location's `path`: "/prefix/" or "= /exact"."""
    if not isinstance(value, str):
        raise ConfigError(f"{origin}: a location needs a path, '/prefix/' or '= /exact'")
    text = value.strip()
    exact = text.startswith(EXACT)
    path = text.removeprefix(EXACT).strip() if exact else text
    if not path.startswith("/") or any(c.isspace() or ord(c) < 0x21 or c in "?#" for c in path):
        raise ConfigError(f"{origin}: invalid path {value!r}: expected /prefix or = /exact")
    if normal_path(path.encode()) != path.encode():
        raise ConfigError(f"{origin}: path {value!r} has dot segments or repeated slashes")
    return exact, path


# --- matching ---


def normal_path(path: bytes) -> bytes:
    """`path` as a location is matched against it: dot segments resolved, repeated slashes
    folded (the trailing slash kept). Most paths have neither, and cost one search each."""
    if b"//" not in path and b"/." not in path:
        return path
    normal = posixpath.normpath(path)
    if normal.startswith(b"//"):
        normal = b"/" + normal.lstrip(b"/")  # normpath keeps a leading "//" (POSIX leaves it)
    if path.endswith((b"/", b"/.", b"/..")) and normal != b"/":
        normal += b"/"
    return normal


def request_path(target: bytes) -> bytes:
    """A request target's path as locations match it: no query, no scheme and authority,
    percent-decoded, normalised."""
    path = target.partition(b"?")[0]
    if path[:1] != b"/":
        _, sep, rest = path.partition(b"://")
        path = b"/" + rest.partition(b"/")[2] if sep else path
    if b"%" in path:
        path = unquote_to_bytes(path)
    if b"//" in path or b"/." in path:  # normal_path's test, inline: most paths pass it
        return normal_path(path)
    return path


class LocationTable(Generic[T]):
    """The locations of one app's requests (the server's and its own), each with a value
    (what the front made of it); :meth:`match` finds the value for a path."""

    def __init__(self, server: Iterable[tuple[Location, T]], own: Iterable[tuple[Location, T]]):
        chosen: dict[tuple[bool, str], tuple[Location, T]] = {}
        for loc, value in (*server, *own):  # the app's own replace the server's on a path
            chosen[loc.place] = (loc, value)
        self.exact: dict[bytes, T] = {}
        prefixes: list[tuple[bytes, bytes, T]] = []
        for (exact, path), (_, value) in chosen.items():
            raw = path.encode()
            if exact:
                self.exact[raw] = value
            else:
                prefixes.append((raw, raw + b"/", value))
        # Longest first: the first that matches is the most specific.
        self.prefixes = sorted(prefixes, key=lambda p: len(p[0]), reverse=True)
        self.locations = tuple(loc for loc, _ in chosen.values())

    def __bool__(self) -> bool:
        return bool(self.exact or self.prefixes)

    def match(self, path: bytes) -> T | None:
        """The value of the location `path` (as :func:`request_path` gives it) falls in."""
        value = self.exact.get(path)
        if value is not None:
            return value
        for prefix, under, value in self.prefixes:
            if not prefix or path == prefix or path.startswith(under):
                return value
        return None


def ordered(locations: Sequence[Location]) -> list[Location]:
    """Locations in the order a request consults them: exact ones, then longest prefix first
    (how `maitred check` lists them)."""
    return sorted(locations, key=lambda loc: (not loc.exact, -len(loc.path.rstrip("/"))))


def check_files(locations: Iterable[Location]) -> None:
    """Read each htpasswd file the locations name, so a missing or malformed one stops
    maitred at start with its name (ConfigError), not in a front."""
    from maitred import htpasswd  # local: it builds on maitred.config, as this module does

    for loc in locations:
        if loc.auth_basic:
            try:
                htpasswd.load(loc.auth_basic)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"{loc.origin}: auth-basic: {exc}") from None
