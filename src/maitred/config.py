"""Settings: each one declared once, as a field of :class:`Config`.

A field's metadata says everything about the setting: its CLI flags, its help text, how a string
(from the command line or the environment) or a TOML value becomes a typed value, and which
section of the docs it belongs to.  The command line, ``maitred.toml``, ``[tool.maitred]`` in
pyproject.toml, the ``MAITRED_*`` environment variables and docs/settings.md are all generated
from these fields, so a setting cannot exist in one place and be missing in another.

Precedence, lowest first: default < config file < environment < command line.
:func:`resolve` also says where each value came from (`maitred check` prints it) and warns of
each ``MAITRED_*`` variable that is no setting, which would otherwise be ignored in silence.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, NamedTuple

from maitred import privileges, upgrade
from maitred.front.limits import parse_key, parse_rate_text, parse_status

log = logging.getLogger("maitred.error")


def toml() -> ModuleType:
    """The TOML reader, imported when a config file or an apps directory is read, not before.

    Every process of the tree is forked from the master, so what the master imports is memory
    the whole tree keeps: a server started from the command line alone reads no TOML, and the
    reader's modules (about half a MiB) would be held for nothing.
    """
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    import tomli  # pragma: no cover - exercised on 3.10 only

    module: ModuleType = tomli  # pragma: no cover - tomli has no type hints
    return module  # pragma: no cover


ENV_PREFIX = "MAITRED_"
CONFIG_FILE = "maitred.toml"
APPS_TABLE = "apps"  # [apps.NAME]: one table per app (maitred.apps)
LOCATIONS_TABLE = "locations"  # [[locations]]: rules per URL path (maitred.locations)
PYPROJECT = "pyproject.toml"
# MAITRED_* variables that are no setting: an old master hands its sockets to a new one (USR2).
INTERNAL_ENV = (upgrade.LISTEN_FDS, upgrade.UPGRADE_FD)


class ConfigError(Exception):
    """A setting has an unknown name or a value of the wrong type; exit status 2."""


# --- value parsers: each takes a str (CLI, env) or a TOML value and returns the typed value ---

Parser = Callable[[Any], Any]


def _int(minimum: int) -> Parser:
    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError
        result = value if isinstance(value, int) else int(str(value).strip(), 10)
        if result < minimum:
            raise ValueError
        return result

    parse.__doc__ = f"integer >= {minimum}"
    return parse


def _seconds(value: Any) -> float:
    """number of seconds >= 0"""
    if isinstance(value, bool):
        raise ValueError
    result = float(value)
    if not result >= 0:  # also rejects NaN
        raise ValueError
    return result


def _size(value: Any) -> int:
    """size in bytes, with an optional K, M or G suffix (powers of 1024)"""
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int):
        result = value
    else:
        text = str(value).strip().upper().removesuffix("B").removesuffix("I")
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        result = int(text[:-1] if scale > 1 else text, 10) * scale
    if result < 0:
        raise ValueError
    return result


# A location's keys are read as the settings are (maitred.locations).
parse_size = _size


def _bool(value: Any) -> bool:
    """true or false"""
    if isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise ValueError
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError


def _str(value: Any) -> str:
    """string"""
    if not isinstance(value, str):
        raise ValueError
    return value


parse_bool, parse_str = _bool, _str


def _name_or_number(value: Any) -> str:
    """name or number"""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # `user = 33` in a TOML file
    return _str(value).strip()


def _choice(*choices: str) -> Parser:
    def parse(value: Any) -> str:
        text = _str(value).lower()
        if text not in choices:
            raise ValueError
        return text

    parse.__doc__ = "one of " + ", ".join(choices)
    return parse


def _key_value(value: Any) -> tuple[str, str]:
    text = _str(value)
    key, sep, val = text.partition("=")
    if not sep or not key:
        raise ValueError
    return key, val


def _env(value: Any) -> tuple[tuple[str, str], ...]:
    """list of KEY=VALUE, or a table of them"""
    if isinstance(value, dict):
        return tuple((str(key), _str(val)) for key, val in value.items())
    return _list_of(_key_value, "")(value)  # type: ignore[no-any-return]


def _bind(value: Any) -> str:
    from maitred.sockets import parse_address  # local: sockets imports nothing from here

    text = _str(value)
    parse_address(text)  # raises ValueError when malformed
    return text


def _mount(value: Any) -> tuple[str, str]:
    """URL prefix and directory of a static mount, `/prefix=dir`."""
    prefix, sep, directory = _str(value).partition("=")
    prefix = prefix.strip().rstrip("/")
    if not sep or not prefix.startswith("/") or not directory.strip():
        raise ValueError
    if any(c in prefix for c in "?#%\\") or "/." in prefix or "//" in prefix:
        raise ValueError
    return prefix, directory.strip()


def _cache_rule(value: Any) -> tuple[str, float]:
    """URL prefix and freshness of a cache rule, `/prefix=SECONDS`."""
    prefix, sep, seconds = _str(value).partition("=")
    prefix = prefix.strip()
    if not sep or not prefix.startswith("/") or any(c in prefix for c in "?# "):
        raise ValueError
    return prefix, _seconds(seconds.strip())


def _cookie_name(value: Any) -> str:
    """a cookie name"""
    text = _str(value).strip()
    if not text or any(c in text for c in ' ;=,"\t'):
        raise ValueError
    return text


def _optional_bind(value: Any) -> str:
    """an address, or empty"""
    text = _str(value).strip()
    return _bind(text) if text else ""


def _health_path(value: Any) -> str:
    """a path starting with /, or empty"""
    text = _str(value).strip()
    if text and (not text.startswith("/") or any(c in text for c in "?# ")):
        raise ValueError
    return text


def _log_format(value: Any) -> str:
    from maitred.front.accesslog import compile_format  # local: the front imports config

    text = _str(value)
    compile_format(text)  # raises ValueError on an unknown field
    return text


def _trusted_peer(value: Any) -> str:
    import ipaddress

    text = _str(value).strip()
    if text not in ("*", "unix"):
        ipaddress.ip_network(text, strict=False)  # raises ValueError when malformed
    return text


def _client_match(value: Any) -> str:
    import ipaddress

    text = _str(value).strip()
    if text not in ("all", "unix"):
        ipaddress.ip_network(text, strict=False)  # raises ValueError when malformed
    return text


def _header_name(value: Any) -> str:
    text = _str(value).strip()
    if text and not all(c.isalnum() or c in "-_" for c in text):
        raise ValueError
    return text


def _path(value: Any) -> str:
    """URL path starting with /, and an optional query"""
    text = _str(value).strip()
    if not text.startswith("/") or any(c.isspace() or ord(c) < 0x21 for c in text):
        raise ValueError
    return text


def _list_of(item: Parser, doc: str) -> Parser:
    """A repeatable setting: a TOML array, a repeated flag, or a comma-separated env value."""

    def parse(value: Any) -> tuple[Any, ...]:
        items: Iterable[Any]
        if isinstance(value, (list, tuple)):
            items = value
        elif isinstance(value, str):
            items = [part for part in value.split(",") if part.strip()]
        else:
            raise ValueError
        return tuple(item(part.strip() if isinstance(part, str) else part) for part in items)

    parse.__doc__ = doc
    return parse


# allow and deny, of the server and of locations (maitred.locations)
client_addresses = _list_of(
    _client_match, "list of addresses and CIDR blocks (IPv4, IPv6), all, or unix"
)


# --- the declaration helper ---

# What a HUP does with a setting's new value (see setting()).
WORKERS = "workers"
FRONTS = "fronts"
RESTART = "restart"


def setting(
    default: Any,
    help: str,
    parse: Parser,
    *flags: str,
    section: str = "Server",
    metavar: str | None = None,
    reloads: str = RESTART,
    per_app: bool = False,
) -> Any:
    """Declare one setting; returns a dataclass field carrying its metadata.

    `reloads` says what a HUP does with a new value (see :func:`on_reload`): WORKERS, it
    applies to the workers, which a HUP replaces; FRONTS, it applies to the fronts, which a HUP
    then replaces too; RESTART, it waits for a restart or an upgrade (USR2): the master uses
    it at start only (the addresses, the logs, the paths).

    `per_app` says that an app's table (``[apps.NAME]``, maitred.apps) may give the setting a
    value of its own; the others are the whole server's.
    """
    meta = {
        "help": help,
        "parse": parse,
        "flags": flags,
        "section": section,
        "metavar": metavar,
        "reloads": reloads,
        "per_app": per_app,
    }
    if isinstance(default, (list, tuple)):
        return field(default=tuple(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Config:
    """Every setting of maitred. Build one with :func:`load`."""

    app: str = setting(
        "",
        "The WSGI application: `module:callable`, `module` (meaning `module:application`) or "
        "`module:factory()`. Empty serves the bundled demo app.",
        _str,
        section="Application",
        metavar="APP",
        reloads=WORKERS,
        per_app=True,
    )
    config: str = setting(
        "",
        "Path of a TOML config file. Default: ./maitred.toml if it exists, else "
        "[tool.maitred] in ./pyproject.toml.",
        _str,
        "-c",
        "--config",
        section="Application",
        metavar="PATH",
        reloads=WORKERS,
    )
    bind: tuple[str, ...] = setting(
        ("127.0.0.1:8000",),
        "Address to listen on: `HOST:PORT`, `[::1]:PORT`, `:PORT` (all IPv4 interfaces) or "
        "`unix:/path`. Repeat to listen on several. Port 0 picks a free port. Prefixed with "
        "`uwsgi://` or `fastcgi://`, the listener speaks that protocol to a proxy in front "
        "(nginx's uwsgi_pass, fastcgi_pass) instead of HTTP. Under systemd socket activation, "
        "`fd://NAME` is the socket named NAME (FileDescriptorName=), a scheme before it "
        "(`https://fd://NAME`) saying what it serves, and an address that a passed socket "
        "listens on uses that socket (docs/systemd.md).",
        _list_of(_bind, "list of addresses"),
        "-b",
        "--bind",
        metavar="ADDRESS",
    )
    backlog: int = setting(
        2048,
        "Listen queue length of each listening socket; the kernel caps it at "
        "net.core.somaxconn. A large value absorbs connection bursts while the front accepts.",
        _int(1),
        "--backlog",
        metavar="N",
    )
    workers: int = setting(
        2,
        "Number of worker processes running the app. Processes give parallelism past the GIL "
        "and isolation; each costs the app's memory.",
        _int(1),
        "-w",
        "--workers",
        section="Workers",
        metavar="N",
        reloads=WORKERS,
        per_app=True,
    )
    threads: int = setting(
        4,
        "Threads per worker process. Each thread runs one request at a time, so "
        "workers x threads is the number of requests the app runs at once; the rest wait in "
        "the front's queue.",
        _int(1),
        "--threads",
        section="Workers",
        metavar="N",
        reloads=WORKERS,
        per_app=True,
    )
    fronts: int = setting(
        1,
        "Number of front processes: event loops that own the client connections, parse "
        "requests, serve static files and queue requests for the workers. The kernel deals "
        "new connections evenly to them (SO_REUSEPORT; a unix socket is shared), and the "
        "workers are dealt to them in turn: a front dispatches only to its own workers, so a "
        "request waits only for a thread of its own front. One front serves tens of "
        "thousands of requests per second on one core; add fronts when it is the busiest "
        "process (static files, many slow clients) and cores are spare. At most --workers.",
        _int(1),
        "--fronts",
        section="Workers",
        metavar="N",
    )
    preload: bool = setting(
        False,
        "Import the app in the master before starting the workers, which then inherit it "
        "(saves memory through copy-on-write; code changes then need a full restart).",
        _bool,
        "--preload",
        section="Application",
    )
    chdir: str = setting(
        "",
        "Change to this directory before loading the app.",
        _str,
        "--chdir",
        section="Application",
        metavar="DIR",
        per_app=True,
    )
    pythonpath: tuple[str, ...] = setting(
        (),
        "Directories to put in front of sys.path before loading the app (comma-separated or "
        "repeated).",
        _list_of(_str, "list of directories"),
        "--pythonpath",
        section="Application",
        metavar="DIR",
        per_app=True,
    )
    virtualenv: str = setting(
        "",
        "A virtual environment (the directory holding its bin/ and lib/) whose site-packages "
        "the workers put in front of sys.path before importing the app, so the app runs on its "
        "own versions of its packages. maitred itself runs from the Python that started it.",
        _str,
        "--virtualenv",
        section="Application",
        metavar="DIR",
        per_app=True,
    )
    env: tuple[tuple[str, str], ...] = setting(
        (),
        "Set an environment variable for the app, `KEY=VALUE` (repeatable). In a config file "
        "also a table, `[env]` or `[apps.NAME.env]`.",
        _env,
        "-e",
        "--env",
        section="Application",
        metavar="KEY=VALUE",
        reloads=WORKERS,
        per_app=True,
    )
    root_path: str = setting(
        "",
        "URL prefix the app is mounted under; becomes SCRIPT_NAME and is stripped from "
        "PATH_INFO of requests under it (/app covers /app and /app/x, not /application). "
        "Other requests get an empty SCRIPT_NAME and their whole path.",
        _str,
        "--root-path",
        section="Application",
        metavar="PREFIX",
        reloads=WORKERS,
        per_app=True,
    )
    keepalive: float = setting(
        5.0,
        "Seconds an idle keep-alive connection is kept open waiting for its next request. "
        "Idle connections cost no thread, only a little memory in the front.",
        _seconds,
        "--keepalive",
        section="Limits",
        metavar="SECONDS",
        reloads=FRONTS,
    )
    timeout: float = setting(
        30.0,
        "Seconds a request may run in the app. Past it the client gets 504, the thread's stack "
        "goes to the error log and an exception is raised in the thread; a thread that still "
        "does not finish within --graceful-timeout gets its worker replaced. 0 disables.",
        _seconds,
        "-t",
        "--timeout",
        section="Workers",
        metavar="SECONDS",
        reloads=FRONTS,
        per_app=True,
    )
    max_requests: int = setting(
        0,
        "Replace a worker after it has served this many requests (its replacement starts "
        "first, then it finishes what it holds). Caps slow memory leaks. 0 disables.",
        _int(0),
        "--max-requests",
        section="Workers",
        metavar="N",
        reloads=WORKERS,
        per_app=True,
    )
    max_requests_jitter: int = setting(
        0,
        "Add a random 0..N to each worker's --max-requests, so workers do not all restart at "
        "the same moment.",
        _int(0),
        "--max-requests-jitter",
        section="Workers",
        metavar="N",
        reloads=WORKERS,
        per_app=True,
    )
    max_worker_lifetime: float = setting(
        0.0,
        "Replace a worker after it has run this many seconds (drained first). 0 disables.",
        _seconds,
        "--max-worker-lifetime",
        section="Workers",
        metavar="SECONDS",
        reloads=WORKERS,
        per_app=True,
    )
    max_worker_memory: int = setting(
        0,
        "Replace a worker whose memory (see --worker-memory-metric) passes this many bytes, "
        "checked every few seconds (drained first). 0 disables.",
        _size,
        "--max-worker-memory",
        section="Workers",
        metavar="BYTES",
        reloads=WORKERS,
        per_app=True,
    )
    worker_memory_metric: str = setting(
        "rss",
        "What --max-worker-memory measures: rss (resident set), or pss (proportional set: "
        "shared pages divided among the processes sharing them, fairer after --preload).",
        _choice("rss", "pss"),
        "--worker-memory-metric",
        section="Workers",
        metavar="METRIC",
        reloads=WORKERS,
        per_app=True,
    )
    # --- scaling: the pool between --min-workers and --max-workers (maitred.scaling) ---
    max_workers: int = setting(
        0,
        "Most worker processes the pool grows to when requests wait (scaling is on when this "
        "is above --workers; 0: --workers, a fixed pool). docs/scaling.md gives the rule.",
        _int(0),
        "--max-workers",
        section="Scaling",
        metavar="N",
        reloads=WORKERS,
        per_app=True,
    )
    min_workers: int = setting(
        0,
        "Fewest worker processes the pool shrinks to when it has more than the load needs "
        "(0: --workers, so a pool only shrinks back to the number it started with).",
        _int(0),
        "--min-workers",
        section="Scaling",
        metavar="N",
        reloads=WORKERS,
        per_app=True,
    )
    scale_down_after: float = setting(
        30.0,
        "Seconds the pool must have had a worker more than its load needs before one is "
        "retired (drained, never killed busy); lengthened while retired workers keep having "
        "to be started again soon after.",
        _seconds,
        "--scale-down-after",
        section="Scaling",
        metavar="SECONDS",
        reloads=WORKERS,
        per_app=True,
    )
    max_pool_memory: int = setting(
        0,
        "The pool grows no more once its workers' memory together (see "
        "--worker-memory-metric) would pass this many bytes. 0: no limit.",
        _size,
        "--max-pool-memory",
        section="Scaling",
        metavar="BYTES",
        reloads=WORKERS,
        per_app=True,
    )
    warmup: tuple[str, ...] = setting(
        (),
        "A path each new worker (at start, after a HUP, when recycled or scaled up) first "
        "serves itself as a GET, before it takes requests: lazy imports and caches are then "
        "paid before a client waits (repeatable). A failing warm-up is logged with its status "
        "and the worker joins all the same.",
        _list_of(_path, "list of paths"),
        "--warmup",
        section="Scaling",
        metavar="PATH",
        reloads=WORKERS,
        per_app=True,
    )
    reload: bool = setting(
        False,
        "Development: replace the workers when a .py file under the app's directory changes "
        "(with [apps] tables: under any app's chdir; a change that breaks the import keeps "
        "the old workers serving). The directories are those of the apps at start: an app "
        "that joins later from --apps-dir is not watched; touch its NAME.toml to reload it.",
        _bool,
        "--reload",
        section="Application",
    )
    pidfile: str = setting(
        "",
        "Write the master's pid to this file once it listens; removed on exit. A start is "
        "refused while the file names a running maitred master; a stale one is overwritten.",
        _str,
        "-p",
        "--pidfile",
        section="Server",
        metavar="PATH",
    )
    graceful_timeout: float = setting(
        30.0,
        "On shutdown, seconds to let requests in flight finish before processes are killed.",
        _seconds,
        "--graceful-timeout",
        section="Workers",
        metavar="SECONDS",
        reloads=FRONTS,
    )
    front_timeout: float = setting(
        10.0,
        "Seconds a front may go without telling the master it is alive (it does every second) "
        "before the master kills it and starts another; its connections are lost, new ones go "
        "to the new front. A front never runs app code, so this catches a bug or a stuck "
        "system call, not a slow request. 0: never.",
        _seconds,
        "--front-timeout",
        section="Workers",
        metavar="SECONDS",
        reloads=WORKERS,
    )
    body_buffer_size: int = setting(
        1 << 20,
        "Request bodies up to this size are held in memory; larger ones are spooled to a "
        "temporary file so that memory stays bounded under large uploads.",
        _size,
        "--body-buffer-size",
        section="Limits",
        metavar="BYTES",
        reloads=FRONTS,
    )
    body_temp_dir: str = setting(
        "",
        "Directory for spooled request bodies and response spool files (default: the system "
        "temp directory).",
        _str,
        "--body-temp-dir",
        section="Limits",
        metavar="DIR",
        reloads=FRONTS,
    )
    limit_request_body: int = setting(
        1 << 30,
        "Largest request body accepted (413 beyond it); 0 means unlimited. 1 GiB default: "
        "enough for large uploads, small enough that a client cannot fill the disk.",
        _size,
        "--limit-request-body",
        section="Limits",
        metavar="BYTES",
        reloads=FRONTS,
    )
    limit_request_line: int = setting(
        8190,
        "Longest request line (method, target, version) accepted; 414 beyond it. 8190 is "
        "what gunicorn and nginx's default buffers allow.",
        _int(64),
        "--limit-request-line",
        section="Limits",
        metavar="BYTES",
        reloads=FRONTS,
    )
    limit_request_fields: int = setting(
        100,
        "Most header fields accepted in one request; 431 beyond it. Real browsers send about 20.",
        _int(1),
        "--limit-request-fields",
        section="Limits",
        metavar="N",
        reloads=FRONTS,
    )
    limit_request_field_size: int = setting(
        8190,
        "Longest header field (name and value) accepted; 431 beyond it. Large cookies fit.",
        _int(64),
        "--limit-request-field-size",
        section="Limits",
        metavar="BYTES",
        reloads=FRONTS,
    )
    response_buffer_size: int = setting(
        1 << 20,
        "Bytes of one response the front holds for a slow client before the app's writes "
        "wait; bounds memory while freeing the app thread from slow readers.",
        _size,
        "--response-buffer-size",
        section="Limits",
        metavar="BYTES",
        reloads=FRONTS,
    )
    response_spool_size: int = setting(
        1 << 30,
        "Bytes of one response the front may write to a temporary file (in the spool "
        "directory, unlinked at once) once response-buffer-size is held for a slow client, so "
        "the app thread finishes and moves on while the client reads from the file, as nginx's "
        "proxy_max_temp_file_size does. Past it the app's writes wait again. 1 GiB default, as "
        "nginx's: a large download, not enough for one client to fill the disk. 0: no spooling.",
        _size,
        "--response-spool-size",
        section="Limits",
        metavar="BYTES",
        reloads=FRONTS,
    )
    header_timeout: float = setting(
        10.0,
        "Seconds a client has to send a whole request head, from its first byte; then 408 and "
        "close. Counts the whole head, not the gaps between bytes, so a slowloris client that "
        "trickles a byte at a time is cut off too. A real client sends its head in one packet; "
        "10 s covers a slow mobile link with a retransmit or two. 0: no limit.",
        _seconds,
        "--header-timeout",
        section="Limits",
        metavar="SECONDS",
        reloads=FRONTS,
    )
    body_timeout: float = setting(
        30.0,
        "A request body must keep arriving: each period of this many seconds must bring at "
        "least one byte, and at least min-body-rate x this many bytes; else 408 and close. "
        "30 s rides out a stalled mobile link; a body that stops longer than that is abandoned. "
        "0: no limit.",
        _seconds,
        "--body-timeout",
        section="Limits",
        metavar="SECONDS",
        reloads=FRONTS,
    )
    min_body_rate: int = setting(
        1024,
        "Slowest request body accepted, in bytes per second, averaged over each body-timeout "
        "period (0: only require progress). 1 KiB/s is a tenth of the slowest mobile data "
        "link, yet makes a body trickled a byte at a time fail after one period.",
        _size,
        "--min-body-rate",
        section="Limits",
        metavar="BYTES",
        reloads=FRONTS,
    )
    send_timeout: float = setting(
        30.0,
        "Seconds the front waits for a client that stopped reading its response (no byte of "
        "the buffered response taken) before dropping the connection, which also frees the app "
        "thread waiting to write. 30 s outlasts a congested link, not an abandoned one. 0: no "
        "limit.",
        _seconds,
        "--send-timeout",
        section="Limits",
        metavar="SECONDS",
        reloads=FRONTS,
    )
    max_connections: int = setting(
        10000,
        "Most client connections the server holds open (split evenly among --fronts). When "
        "all are taken, a new client gets the slot of the connection idle the longest (as "
        "nginx does), else of the one that has been sending its request head the longest "
        "(for a second at least: a slowloris client); a connection whose request is being "
        "uploaded, waits for or runs in the app, or gets its response is never closed for "
        "it. When every connection is such a one, the front stops accepting (new connections "
        "wait in the listen backlog) until one closes. An idle connection costs a few KiB "
        "and no thread, so 10,000 take tens of MiB; the front raises its open-file limit to "
        "fit, or lowers this to what the limit allows.",
        _int(1),
        "--max-connections",
        section="Limits",
        metavar="N",
        reloads=FRONTS,
    )
    max_connections_per_ip: int = setting(
        0,
        "Most connections one client address may hold open (split evenly among --fronts, "
        "like max-connections); past it a new connection from that address is answered 503 "
        "with Retry-After and closed, and nobody else's connection is closed for it. "
        "0 (the default): no limit, because one address is often many people: everyone "
        "behind an office or carrier-grade NAT, and every client behind a proxy or load "
        "balancer (the limit counts the address that connected to the front). Set it when "
        "clients connect directly, generously: a browser opens up to 6 connections per host, "
        "and the kernel deals one client's connections to the fronts at random, so with "
        "several fronts a client may be refused a little before N.",
        _int(0),
        "--max-connections-per-ip",
        section="Limits",
        metavar="N",
        reloads=FRONTS,
    )
    max_queue: int = setting(
        1000,
        "Most complete requests waiting for a free app thread (split evenly among --fronts); "
        "past it a request is answered 503 with Retry-After at once (0: unlimited). A fast "
        "app drains 1000 in well under a second; a slow one would make them wait longer "
        "than clients do.",
        _int(0),
        "--max-queue",
        section="Limits",
        metavar="N",
        reloads=FRONTS,
        per_app=True,
    )
    queue_timeout: float = setting(
        30.0,
        "Seconds a complete request may wait for a free app thread; one that waited longer is "
        "answered 503 instead of run (0: no limit). Browsers, proxies and load balancers "
        "commonly give up after 30-60 s, so running it later would be wasted work.",
        _seconds,
        "--queue-timeout",
        section="Limits",
        metavar="SECONDS",
        reloads=FRONTS,
        per_app=True,
    )
    log_level: str = setting(
        "info",
        "Error log verbosity.",
        _choice("debug", "info", "warning", "error", "critical"),
        "--log-level",
        section="Logging",
        metavar="LEVEL",
        reloads=FRONTS,  # every process's; the master's own at once, the others as replaced
    )
    access_logfile: str = setting(
        "",
        "Write an access log line per request to this file (`-` for stdout). Empty: no access log.",
        _str,
        "--access-logfile",
        section="Logging",
        metavar="PATH",
        reloads=FRONTS,
    )
    access_log_format: str = setting(
        "combined",
        "Access log line format: `combined` (the format of nginx and Apache, which log tools "
        "read without configuration), `common`, `json` (one object per line with every field, "
        "values escaped), or a template of named fields such as "
        '`{remote_addr} {request_id} "{request}" {status} {request_time}`. Fields: '
        "remote_addr, remote_port, remote_user, time_local, time_iso8601, method, target, "
        "path, query, protocol, request, status, body_bytes, referer, user_agent, host, "
        "scheme, request_id, cache_status (hit, stale, miss, bypass), queue_time, app_time, "
        "request_time (seconds), and http_NAME for any request header (http_x_forwarded_for).",
        _log_format,
        "--access-log-format",
        section="Logging",
        metavar="FORMAT",
        reloads=FRONTS,
    )
    error_logfile: str = setting(
        "-",
        "Where the error log goes: a file path, or `-` for stderr (where a process supervisor "
        "such as systemd or Docker collects it). With a file, whatever the app or Python "
        "writes to stderr lands there too.",
        _str,
        "--error-logfile",
        section="Logging",
        metavar="PATH",
    )
    request_id_header: str = setting(
        "X-Request-ID",
        "Request header that carries a request id from the client or a proxy; when absent "
        "(or not 1-200 printable characters) the front makes one. The id is in the environ as "
        "`maitred.request_id`, in the access log, and returned in this response header, so "
        "one id follows a request through every log. Empty: no request ids.",
        _header_name,
        "--request-id-header",
        section="Logging",
        metavar="NAME",
        reloads=FRONTS,
    )
    static: tuple[tuple[str, str], ...] = setting(
        (),
        "Serve the files under DIR at URL prefix PREFIX, in the front, without an app thread "
        "(`--static /static=./staticfiles`; repeatable). DIR is relative to --chdir. Only GET "
        "and HEAD; dotfiles and paths leaving DIR are refused.",
        _list_of(_mount, "list of PREFIX=DIR"),
        "--static",
        section="Static files",
        metavar="PREFIX=DIR",
        reloads=FRONTS,
        per_app=True,
    )
    static_max_age: int = setting(
        60,
        "Cache-Control max-age, in seconds, for static files. Short by default because a "
        "file whose name does not change may change; names that carry a content hash (as "
        "Django's ManifestStaticFilesStorage writes them, `app.3f2a9c1b7d4e.css`) get a year "
        "and `immutable` whatever this says.",
        _int(0),
        "--static-max-age",
        section="Static files",
        metavar="SECONDS",
        reloads=FRONTS,
        per_app=True,
    )
    static_follow_symlinks: bool = setting(
        False,
        "Serve symlinks under a static directory that point outside it. Off by default: a "
        "link planted in the static tree must not publish the rest of the disk.",
        _bool,
        "--static-follow-symlinks",
        section="Static files",
        reloads=FRONTS,
        per_app=True,
    )
    static_index: str = setting(
        "",
        "File served for a request naming a static directory (`index.html`). Empty by "
        "default, so a directory is a 404: static mounts hold assets, not sites.",
        _str,
        "--static-index",
        section="Static files",
        metavar="NAME",
        reloads=FRONTS,
        per_app=True,
    )
    static_cache_size: int = setting(
        16 << 20,
        "Bytes of memory for the contents of static files up to 64 KiB (the CSS, JS and icons "
        "of a page), checked against a stat on every request. 16 MiB holds the assets of most "
        "sites; a hit saves four system calls. 0 turns the cache off.",
        _size,
        "--static-cache-size",
        section="Static files",
        metavar="BYTES",
        reloads=FRONTS,
    )
    cache_size: int = setting(
        0,
        "Bytes of memory for the response cache of each front (per app when set in an "
        "app's table): GET and HEAD responses the app marks cacheable (Cache-Control "
        "s-maxage, max-age, Expires; CDN-Cache-Control first) are answered by the front "
        "itself until they go stale, without an app thread. Least recently used entries go "
        "first; the size is a hard bound. 0 (the default) turns the cache off.",
        _size,
        "--cache-size",
        section="Caching",
        metavar="BYTES",
        reloads=FRONTS,
        per_app=True,
    )
    cache_max_object: int = setting(
        1 << 20,
        "Largest response body the cache stores, in bytes; larger ones always go to the app.",
        _size,
        "--cache-max-object",
        section="Caching",
        metavar="BYTES",
        reloads=FRONTS,
        per_app=True,
    )
    cache_dir: str = setting(
        "",
        "Directory for the bodies past --cache-max-object: each is kept in a file there and "
        "sent with sendfile. Each front makes its own subdirectory (mode 0700, its files "
        "0600, owned by the front's user) and removes it when it stops; the next front removes "
        "those of fronts killed before they could. Empty (the default): "
        "larger bodies are not stored.",
        _str,
        "--cache-dir",
        section="Caching",
        metavar="DIR",
        reloads=FRONTS,
        per_app=True,
    )
    cache_dir_size: int = setting(
        1 << 30,
        "Bytes of the files under --cache-dir, per front (per app when set in an app's "
        "table), apart from --cache-size: nginx's proxy_cache_path max_size. Least recently "
        "used files go first; the size is a hard bound, and the largest body stored.",
        _size,
        "--cache-dir-size",
        section="Caching",
        metavar="BYTES",
        reloads=FRONTS,
        per_app=True,
    )
    cache_rule: tuple[tuple[str, float], ...] = setting(
        (),
        "Freshness, in seconds, of the responses under a URL path prefix that say nothing of "
        "their own (`--cache-rule /news=1`: nginx's proxy_cache_valid; repeatable, the "
        "longest prefix wins). A response's own Cache-Control or Expires always wins, and "
        "the cookie and Authorization rules still hold.",
        _list_of(_cache_rule, "list of PREFIX=SECONDS"),
        "--cache-rule",
        section="Caching",
        metavar="PREFIX=SECONDS",
        reloads=FRONTS,
        per_app=True,
    )
    cache_bypass_cookie: tuple[str, ...] = setting(
        (),
        "A request carrying a cookie of this name always goes to the app and its response "
        "is never stored (`--cache-bypass-cookie sessionid` for Django's logged-in users; "
        "repeatable).",
        _list_of(_cookie_name, "list of cookie names"),
        "--cache-bypass-cookie",
        section="Caching",
        metavar="NAME",
        reloads=FRONTS,
        per_app=True,
    )
    cache_status_header: bool = setting(
        False,
        "Add the Cache-Status header of RFC 9211 to the responses of cached apps "
        "(`maitred; hit; ttl=42`, `maitred; fwd=miss; stored`, `maitred; fwd=stale`...).",
        _bool,
        "--cache-status-header",
        section="Caching",
        reloads=FRONTS,
        per_app=True,
    )
    cache_stale_if_error: float = setting(
        0.0,
        "Seconds past its freshness a stored response may stand in for the app's 5xx, a "
        "timeout or a 503 of a full queue, when the response names no stale-if-error of its "
        "own (RFC 5861). 0: only when the response says so.",
        _seconds,
        "--cache-stale-if-error",
        section="Caching",
        metavar="SECONDS",
        reloads=FRONTS,
        per_app=True,
    )
    cache_lock_timeout: float = setting(
        5.0,
        "Seconds a request for a page being fetched waits for that fetch (misses of one key "
        "make one app request: nginx's proxy_cache_lock) before it goes to the app itself.",
        _seconds,
        "--cache-lock-timeout",
        section="Caching",
        metavar="SECONDS",
        reloads=FRONTS,
        per_app=True,
    )
    forwarded_allow_ips: tuple[str, ...] = setting(
        ("127.0.0.1", "::1"),
        "Peers trusted to say who the client is: from these only, X-Forwarded-For, "
        "X-Forwarded-Proto, X-Forwarded-Host and Forwarded set REMOTE_ADDR, wsgi.url_scheme "
        "and HTTP_HOST, and a PROXY protocol header sets the client address. Addresses or "
        "networks (10.0.0.0/8), `unix` for Unix-socket peers, `*` for anyone. The default "
        "trusts a proxy on this machine only; anyone else could forge these headers.",
        _list_of(_trusted_peer, "list of addresses, networks, unix or *"),
        "--forwarded-allow-ips",
        section="Proxy",
        metavar="ADDRESSES",
        reloads=FRONTS,
    )
    proxy_protocol: bool = setting(
        False,
        "Expect a PROXY protocol header (v1 or v2, as HAProxy and cloud load balancers send "
        "it) at the start of every connection. Off by default: with it on, a client that "
        "does not send one is refused.",
        _bool,
        "--proxy-protocol",
        section="Proxy",
        reloads=FRONTS,
    )
    user: str = setting(
        "",
        "Run the workers and the fronts as this user, a name or a number (a number needs no "
        "passwd entry). The master, started as root, binds the sockets first; each worker "
        "switches before it imports the app, each front once it holds its sockets. Empty: "
        "they run as the master does. Root (0) needs --allow-root.",
        _name_or_number,
        "-u",
        "--user",
        section="Users",
        metavar="USER",
        reloads=FRONTS,
        per_app=True,
    )
    group: str = setting(
        "",
        "The group of --user's processes, a name or a number. Empty: the user's primary "
        "group, or the number of its uid when it has no passwd entry.",
        _name_or_number,
        "-g",
        "--group",
        section="Users",
        metavar="GROUP",
        reloads=FRONTS,
        per_app=True,
    )
    allow_root: bool = setting(
        False,
        "Allow --user to name root (uid 0): the app then runs as root, where a hole in it "
        "owns the machine. Without --user, processes run as the master does, root or not.",
        _bool,
        "--allow-root",
        section="Users",
        reloads=WORKERS,
        per_app=True,
    )
    shutdown_delay: float = setting(
        0.0,
        "On SIGTERM, seconds to keep serving, with --health-path answering 503, before the "
        "graceful stop begins: time for a load balancer (or Kubernetes) to see the failing "
        "health check and send new clients elsewhere. A second TERM ends the delay; SIGINT "
        "(Ctrl-C) and SIGQUIT skip it. 0: the stop begins at once.",
        _seconds,
        "--shutdown-delay",
        section="Health and shutdown",
        metavar="SECONDS",
        reloads=WORKERS,  # the master reads it when TERM comes, so a HUP applies it
    )
    health_path: str = setting(
        "",
        "A path the front answers itself, without an app thread (`/readyz`): GET or HEAD get "
        "200 while the server is ready, 503 before any worker has imported the app and from "
        "the moment it stops (SIGTERM, --shutdown-delay). For a load balancer's health check "
        "or a Kubernetes readiness probe. Empty: no such path.",
        _health_path,
        "--health-path",
        section="Health and shutdown",
        metavar="PATH",
        reloads=FRONTS,
    )
    log_health_checks: bool = setting(
        False,
        "Write the requests to --health-path to the access log. Off by default: a balancer "
        "that checks every second would bury the lines of real requests.",
        _bool,
        "--log-health-checks",
        section="Health and shutdown",
        reloads=FRONTS,
    )
    stats_bind: str = setting(
        "",
        "An address (`127.0.0.1:9100`, `unix:/run/maitred-stats.sock`) where the master serves "
        "`GET /metrics` (Prometheus text format, or OpenMetrics when Accept asks for it), "
        "`GET /livez` and `GET /readyz`, apart from the app's listeners so no app route is "
        "taken. Keep it private: it tells how the server runs. Empty: not served.",
        _optional_bind,
        "--stats-bind",
        section="Health and shutdown",
        metavar="ADDRESS",
    )
    # --- `maitred ctl` and stuck requests (maitred.control, maitred.worker.stacks) ---
    control_socket: str = setting(
        "",
        "The unix socket `maitred ctl` talks to the master on (mode 0600: the server's user "
        "and root only). Empty: `control` in the master's runtime directory, which "
        "`maitred ctl` finds by itself, or from --pidfile.",
        _str,
        "--control-socket",
        section="Health and shutdown",
        metavar="PATH",
    )
    slow_request_log: float = setting(
        0.0,
        "Log the stack of a request still running after this many seconds, once, with its "
        "request id, method, path and app, and let it run (--timeout is what interrupts). "
        "Checked every second. 0: off.",
        _seconds,
        "--slow-request-log",
        section="Workers",
        metavar="SECONDS",
        reloads=WORKERS,
        per_app=True,
    )

    # The [apps.NAME] tables of the config file, as maitred.apps reads them (no flag, no
    # environment variable: not one of SETTINGS). Routing lives in the fronts; a HUP that
    # changes a table tells the running ones (maitred.frontapps), and --apps-dir adds its own.
    apps: tuple[Any, ...] = field(default=(), metadata={"table": True})
    # --- an apps directory (maitred.appsdir): apps that come and go while the server runs ---
    apps_dir: str = setting(
        "",
        "A directory of apps: each `NAME.toml` in it is one app, with the keys of an "
        "`[apps.NAME]` table (the top-level settings are its defaults; a relative chdir is "
        "under the directory). The master looks at it about once a second: a new file starts "
        "its app, a changed one reloads that app alone (make-before-break), a removed one "
        "stops routing to it, lets its requests finish and stops its workers. A file that "
        "does not validate is logged in one line and changes nothing. Empty: no directory.",
        _str,
        "--apps-dir",
        section="Application",
        metavar="DIR",
    )
    apps_dir_owner: bool = setting(
        False,
        "Run each app of --apps-dir as the owner (uid, and the file's gid) of its file, and "
        "refuse a file owned by root: a user who may write to the directory deploys an app "
        "that runs as themselves. The file's own user and group keys may only repeat them.",
        _bool,
        "--apps-dir-owner",
        section="Application",
    )
    # --- TLS (maitred.tls): the fronts run the handshakes ---
    certfile: str = setting(
        "",
        "TLS certificate chain (PEM), the server's certificate first. With it the TCP "
        "listeners serve HTTPS, or only the `https://` ones when a bind address says "
        "`https://` (`-b https://0.0.0.0:443 -b http://0.0.0.0:80`). A HUP loads the "
        "certificate and key again: new connections get the new one, open ones keep theirs, "
        "and a file that cannot be loaded keeps the running one (the log says why).",
        _str,
        "--certfile",
        section="TLS",
        metavar="PATH",
        reloads=FRONTS,
    )
    keyfile: str = setting(
        "",
        "Private key of the certificate (PEM, not encrypted). Empty: the key is in certfile.",
        _str,
        "--keyfile",
        section="TLS",
        metavar="PATH",
        reloads=FRONTS,
    )
    ca_certs: str = setting(
        "",
        "CA certificates (PEM) that client certificates must be signed by; see cert-reqs.",
        _str,
        "--ca-certs",
        section="TLS",
        metavar="PATH",
        reloads=FRONTS,
    )
    cert_reqs: str = setting(
        "none",
        "Client certificates: `none` (not asked for), `optional` (asked for, verified "
        "against ca-certs when sent), `required` (a client without a valid one fails the "
        "handshake). The app finds a verified certificate's subject in the environ as "
        "SSL_CLIENT_S_DN (`CN=alice,O=Example`, as nginx and Apache write it).",
        _choice("none", "optional", "required"),
        "--cert-reqs",
        section="TLS",
        metavar="MODE",
        reloads=FRONTS,
    )
    ssl_ciphers: str = setting(
        "",
        "OpenSSL cipher list for TLS 1.2 (TLS 1.3's suites are all strong and stay "
        "enabled). Empty: Python's default, which excludes weak ciphers.",
        _str,
        "--ssl-ciphers",
        section="TLS",
        metavar="CIPHERS",
        reloads=FRONTS,
    )
    ssl_min_version: str = setting(
        "1.2",
        "Oldest TLS version accepted: 1.2 or 1.3. TLS 1.0 and 1.1 are broken and refused.",
        _choice("1.2", "1.3"),
        "--ssl-min-version",
        section="TLS",
        metavar="VERSION",
        reloads=FRONTS,
    )
    handshake_timeout: float = setting(
        10.0,
        "Seconds a new TLS connection has to complete its handshake; then it is closed (one "
        "debug line). A handshake runs in the front and holds no worker thread; a client "
        "that connects and sends nothing holds a connection (see max-connections) until "
        "this. 10 s outlasts a handshake over a slow mobile link, retransmissions included.",
        _seconds,
        "--handshake-timeout",
        section="TLS",
        metavar="SECONDS",
        reloads=FRONTS,
    )

    # --- rules per URL path (maitred.locations, maitred.front.rules) ---
    # The [[locations]] array of the config file: the whole server's (an app's are in its
    # table). Like apps, no flag and no environment variable.
    locations: tuple[Any, ...] = field(default=(), metadata={"table": True})
    allow: tuple[str, ...] = setting(
        (),
        "Client addresses and CIDR blocks (IPv4, IPv6; `unix` for a unix socket's clients) "
        "let in; with allow alone, any other client gets 403. Judged on the client address "
        "after forwarded-allow-ips and the PROXY protocol, never on a header an untrusted "
        "client sent. The most specific entry of allow and deny that holds the address "
        "decides (on a tie, deny). A location's own allow or deny replace these for its "
        "requests.",
        client_addresses,
        "--allow",
        section="Locations",
        metavar="CIDR",
        reloads=FRONTS,
    )
    deny: tuple[str, ...] = setting(
        (),
        "Client addresses and CIDR blocks refused with 403 (see allow).",
        client_addresses,
        "--deny",
        section="Locations",
        metavar="CIDR",
        reloads=FRONTS,
    )
    redirect_https: bool = setting(
        False,
        "Answer every request that came over plain HTTP (as the client reached a trusted "
        "proxy, if one says so) with 301 to the same URL over https. The health-path check "
        "is answered as it is, for load balancers that probe over plain HTTP.",
        _bool,
        "--redirect-https",
        section="Locations",
        reloads=FRONTS,
    )
    # nginx's limit_req and limit_conn (maitred.front.limits), for every request of the
    # server; a location's own rate or limit-conn replace them for its requests.
    rate: str = setting(
        "",
        "Requests a second (5r/s) or a minute (30r/m) one client may send, as nginx's "
        "limit_req: a leaky bucket per client, kept by the front across --fronts. Past the "
        "rate and the burst a request is answered limit-status (429) with Retry-After, "
        "before its body is read and without a worker thread. Empty: no limit.",
        parse_rate_text,
        "--rate",
        section="Locations",
        metavar="RATE",
        reloads=FRONTS,
    )
    burst: int = setting(
        0,
        "Requests a client may send past the rate, as nginx's burst: they wait in the front "
        "(no worker thread, no place in the queue) until the rate lets them on, unless "
        "nodelay or delay.",
        _int(0),
        "--burst",
        section="Locations",
        metavar="N",
        reloads=FRONTS,
    )
    nodelay: bool = setting(
        False,
        "Requests within the burst go on at once instead of waiting (the burst is spent all "
        "the same, as nginx's nodelay).",
        _bool,
        "--nodelay",
        section="Locations",
        reloads=FRONTS,
    )
    delay: int = setting(
        0,
        "nginx's two-stage limiting: the first N requests of a burst go on at once, the ones "
        "past them wait for the rate. At most burst; 0: every request past the rate waits.",
        _int(0),
        "--delay",
        section="Locations",
        metavar="N",
        reloads=FRONTS,
    )
    limit_conn: int = setting(
        0,
        "Requests one client may have in progress at once (nginx's limit_conn counts requests "
        "being processed, not idle connections), across --fronts; past it, limit-status with "
        "Retry-After: 1. 0: no limit.",
        _int(0),
        "--limit-conn",
        section="Locations",
        metavar="N",
        reloads=FRONTS,
    )
    limit_key: str = setting(
        "address",
        "What the rate and limit-conn count per: `address`, the client address after "
        "forwarded-allow-ips and the PROXY protocol (never a header an untrusted client "
        "sent), or `header:NAME`, a request header's value (an API key). A request without "
        "it is not counted, as nginx does with an empty key.",
        parse_key,
        "--limit-key",
        section="Locations",
        metavar="KEY",
        reloads=FRONTS,
    )
    limit_status: int = setting(
        429,
        "The status of a request refused by rate or limit-conn. 429 Too Many Requests says "
        "what happened; nginx's default, 503, can make a load balancer think the server is "
        "down.",
        parse_status,
        "--limit-status",
        section="Locations",
        metavar="STATUS",
        reloads=FRONTS,
    )
    limit_keys: int = setting(
        65536,
        "Keys (client addresses, header values) the rate and connection limits remember, in "
        "one table in shared memory that every front uses, so the limits hold across "
        "--fronts; when it is full the least recently used key is forgotten, as in nginx's "
        "limit_req zone. 20 bytes each: 65536 keys take 1.25 MiB.",
        _int(8),
        "--limit-keys",
        section="Locations",
        metavar="N",
    )

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)

    def with_fronts_of(self, other: Config) -> Config:
        """These settings, with those of the fronts (reloads=FRONTS) taken from `other`."""
        return self.replace(
            apps=other.apps,
            locations=other.locations,
            **{f.name: getattr(other, f.name) for f in SETTINGS if f.metadata["reloads"] == FRONTS},
        )


SETTINGS: tuple[dataclasses.Field[Any], ...] = tuple(
    f for f in dataclasses.fields(Config) if "table" not in f.metadata
)
_BY_NAME = {f.name: f for f in SETTINGS}


def default_of(name: str) -> Any:
    """The table's default for one setting, for code that needs it without a Config.

    The HTTP parser's limits take their defaults from here, so that each default is written
    once, in the table above.
    """
    return Config.__dataclass_fields__[name].default


def key_of(f: dataclasses.Field[Any]) -> str:
    """The config-file key of a setting (the CLI spelling without dashes in front)."""
    return f.name.replace("_", "-")


def env_of(f: dataclasses.Field[Any]) -> str:
    return ENV_PREFIX + f.name.upper()


def flags_of(f: dataclasses.Field[Any]) -> tuple[str, ...]:
    flags: tuple[str, ...] = f.metadata["flags"]
    return flags


def describe_type(f: dataclasses.Field[Any]) -> str:
    return (f.metadata["parse"].__doc__ or "value").strip()


def parse_value(f: dataclasses.Field[Any], value: Any, origin: str) -> Any:
    try:
        return f.metadata["parse"](value)
    except (ValueError, TypeError):
        raise ConfigError(
            f"{origin}: invalid value {value!r} for {key_of(f)!r}: expected {describe_type(f)}"
        ) from None


def closest(name: str, candidates: Iterable[str], show: Callable[[str], str] = str) -> str:
    """The `; did you mean X?` for the candidate nearest to a misspelled name, if one is."""
    import difflib  # only when a name is wrong: a master that starts never needs it (see toml)

    match = difflib.get_close_matches(name, list(candidates), n=1)
    return f"; did you mean {show(match[0])}?" if match else ""


def _from_mapping(values: Mapping[str, Any], origin: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in values.items():
        f = _BY_NAME.get(key.replace("-", "_"))
        if f is None or f.name == "config":
            keys = [key_of(f) for f in SETTINGS if f.name != "config"]
            raise ConfigError(f"{origin}: unknown setting {key!r}{closest(key, keys, repr)}")
        result[f.name] = parse_value(f, value, origin)
    return result


def read_config_file(path: str, required: bool) -> dict[str, Any]:
    """Settings from a TOML file: top-level keys, or [tool.maitred] in a pyproject.toml."""
    if not required and not os.path.exists(path):
        return {}  # the usual case, a server configured by its command line: no TOML reader
    tomllib = toml()
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        if required:
            raise ConfigError(f"config file {path!r} not found") from None
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path!r}: {exc}") from None
    section = dict(_section(path, data))
    tables = section.pop(APPS_TABLE, None)
    locations = section.pop(LOCATIONS_TABLE, None)
    values = _from_mapping(section, file_origin(path))
    if tables is not None:
        from maitred import apps  # local: maitred.apps builds on this module

        values["apps"] = apps.read_tables(tables, file_origin(path))
    if locations is not None:
        from maitred import locations as rules  # local: it builds on this module

        values["locations"] = rules.read_locations(locations, file_origin(path) + " [[locations]]")
    return values


def _section(path: str, data: dict[str, Any]) -> dict[str, Any]:
    if os.path.basename(path) == PYPROJECT:
        section: dict[str, Any] = data.get("tool", {}).get("maitred", {})
        return section
    return data


def file_origin(path: str) -> str:
    """How errors and `maitred check` name a config file."""
    path = os.path.normpath(path)
    return f"{path} [tool.maitred]" if os.path.basename(path) == PYPROJECT else path


def from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for f in SETTINGS:
        if env_of(f) in environ:
            result[f.name] = parse_value(f, environ[env_of(f)], env_of(f))
    return result


def unknown_environ(environ: Mapping[str, str]) -> list[str]:
    """A warning for each MAITRED_* variable that is no setting: a misspelled one would
    otherwise be ignored without a word."""
    known = [env_of(f) for f in SETTINGS]
    names = [f.name for f in SETTINGS]  # compared without the prefix they all share

    def suggest(name: str) -> str:
        return closest(
            name.removeprefix(ENV_PREFIX).lower(), names, lambda n: ENV_PREFIX + n.upper()
        )

    return [
        f"unknown environment variable {name}{suggest(name)}"
        for name in sorted(environ)
        if name.startswith(ENV_PREFIX) and name not in known and name not in INTERNAL_ENV
    ]


def from_cli(cli: Mapping[str, Any]) -> dict[str, Any]:
    """``cli`` maps setting names to raw values from the command line (strings, lists of
    strings for repeatable flags, True for switches)."""
    result: dict[str, Any] = {}
    for name, value in cli.items():
        f = _BY_NAME[name]
        flag = flags_of(f)[-1] if flags_of(f) else key_of(f)
        if isinstance(value, list):  # repeated flag: parse each occurrence
            parsed = [parse_value(f, item, flag) for item in value]
            result[name] = tuple(item for chunk in parsed for item in chunk)
        else:
            result[name] = parse_value(f, value, flag)
    return result


DEFAULT = "default"
COMMAND_LINE = "command line"


class Resolved(NamedTuple):
    """Settings with where each value came from (see :func:`resolve`)."""

    cfg: Config
    origins: dict[str, str]  # setting name -> DEFAULT, "file PATH", "env VAR" or COMMAND_LINE
    warnings: list[str]  # one line each: unknown environment variables


def resolve(cli: Mapping[str, Any], environ: Mapping[str, str], cwd: str = ".") -> Resolved:
    """Merge default < config file < environment < command line, noting each value's origin."""
    given = from_cli(cli)
    env_values = from_environ(environ)
    path = given.get("config") or env_values.get("config", "")
    # Named, the one file; else both, maitred.toml winning over pyproject.toml.
    files = [os.path.join(cwd, name) for name in ([path] if path else [PYPROJECT, CONFIG_FILE])]
    values: dict[str, Any] = {}
    origins = {f.name: DEFAULT for f in SETTINGS}
    for name in files:  # later files win
        for key, value in read_config_file(name, required=bool(path)).items():
            values[key], origins[key] = value, f"file {file_origin(name)}"
    for key, value in env_values.items():
        values[key], origins[key] = value, f"env {env_of(_BY_NAME[key])}"
    for key, value in given.items():
        values[key], origins[key] = value, COMMAND_LINE
    return Resolved(check(Config(**values)), origins, unknown_environ(environ))


def load(cli: Mapping[str, Any], environ: Mapping[str, str], cwd: str = ".") -> Config:
    """Merge default < config file < environment < command line into a Config."""
    return resolve(cli, environ, cwd).cfg


def check(cfg: Config) -> Config:
    """The rules that tie settings together; ConfigError names what breaks one."""
    if cfg.fronts > cfg.workers:
        raise ConfigError(
            f"fronts ({cfg.fronts}) must not exceed workers ({cfg.workers}): "
            "each front needs a worker of its own"
        )
    _check_user(cfg)
    _check_scaling(cfg)
    from maitred import tls  # local: tls imports this module

    tls.check(cfg)
    from maitred.front.rules import server_rate  # local: it builds on this module

    try:
        server_rate(cfg).rule()
    except ValueError as exc:
        raise ConfigError(f"rate: {exc}") from None
    if cfg.locations:
        from maitred import locations  # local: maitred.locations builds on this module

        locations.check_files(cfg.locations)
    if cfg.apps or cfg.apps_dir:
        from maitred import apps  # local: maitred.apps builds on this module

        apps.resolve(cfg, "/")  # ConfigError names the app whose table breaks a rule
    return cfg


def _check_scaling(cfg: Config) -> None:
    """--min-workers and --max-workers around --workers (of the server, or of one app)."""
    least, most = cfg.min_workers or cfg.workers, cfg.max_workers or cfg.workers
    if least > cfg.workers:
        raise ConfigError(
            f"min-workers ({least}) must not exceed workers ({cfg.workers}), the number started"
        )
    if most < cfg.workers:
        raise ConfigError(
            f"max-workers ({most}) must not be below workers ({cfg.workers}), the number started"
        )
    if least < cfg.fronts:
        raise ConfigError(
            f"min-workers ({least}) must not be below fronts ({cfg.fronts}): "
            "each front needs a worker of its own"
        )


def _check_user(cfg: Config) -> None:
    """--user and --group name someone this process can run its children as."""
    try:
        identity = privileges.resolve(cfg.user, cfg.group)
        privileges.check_reachable(identity, cfg.allow_root)
    except privileges.IdentityError as exc:
        raise ConfigError(str(exc)) from None
    if identity is not None and cfg.preload and identity.uid != os.geteuid():
        raise ConfigError(
            "--preload imports the app in the master, which does not switch users: with --user "
            "the workers import it after they switch; drop --preload"
        )


def default_text(f: dataclasses.Field[Any]) -> str:
    """A setting's default as the docs and --help show it; empty when it is empty."""
    default = f.default
    return ", ".join(map(str, default)) if isinstance(default, tuple) else str(default)


ON_HUP = {
    WORKERS: "applied",
    FRONTS: "applied (the fronts are replaced too)",
    RESTART: "kept until a restart or USR2",
}


def settings_markdown(fields: Sequence[dataclasses.Field[Any]] = SETTINGS) -> str:
    """docs/settings.md, generated from the table (``python -m maitred.docs``)."""
    lines = [
        "# maitred settings",
        "",
        "Generated from `src/maitred/config.py` by `python -m maitred.docs`; do not edit by hand.",
        "",
        "Every setting can be given on the command line, in `maitred.toml` (or `[tool.maitred]` "
        "in pyproject.toml), or as an environment variable. Precedence: command line > "
        "environment > config file > default. Repeatable settings take a TOML array, a repeated "
        "flag, or a comma-separated environment value. A `MAITRED_*` variable that is no "
        "setting gets a warning naming the closest one; an unknown key in a config file is an "
        "error. `maitred check [OPTIONS] [APP]` prints the settings maitred would run with and "
        "where each value came from (default, file, env, command line), and imports the app, "
        "without serving.",
        "",
        "A HUP reads the settings again and replaces the workers, make-before-break. When a "
        "setting of the fronts changed, it replaces the fronts too: the new ones start serving "
        "once the new workers have imported the app, and the old ones finish their requests "
        "and exit. The settings the master uses only at start keep their values (the log names "
        "those that changed) until a restart or an upgrade (USR2).",
        "",
        "Several apps run in one server from a config file with one table per app, "
        '`[apps.NAME]` (see the README\'s "Several apps"): the settings marked *per app* '
        "below may be given in an app's table, and the top-level values are the defaults of "
        "every app; the others are the whole server's. Besides them an app's table takes its "
        "routing: `hosts` (names, or `*.example.com` for its subdomains), `path` (a URL "
        "prefix) and `default` (true: it serves a Host that no app names). An app's requests "
        "get SCRIPT_NAME = its root-path + its path. A HUP reloads every app; the apps it adds, "
        "removes or changes reach the running fronts. `--apps-dir` adds one app per file of a "
        "directory, with the keys of an app's table, started, reloaded and stopped as its file "
        "comes, changes and goes.",
    ]
    sections: dict[str, list[dataclasses.Field[Any]]] = {}
    for f in fields:
        sections.setdefault(f.metadata["section"], []).append(f)
    for section, members in sections.items():
        lines += ["", f"## {section}"]
        for f in members:
            flags = ", ".join(f"`{flag}`" for flag in flags_of(f)) or "positional argument"
            shown = default_text(f)
            lines += [
                "",
                f"### `{key_of(f)}`",
                "",
                f.metadata["help"],
                "",
                f"- type: {describe_type(f)}",
                f"- default: `{shown}`" if shown else "- default: empty",
                f"- command line: {flags}",
                f"- config file: `{key_of(f)}`" if f.name != "config" else "- config file: -",
                f"- environment: `{env_of(f)}`",
                f"- HUP: {ON_HUP[f.metadata['reloads']]}",
                f"- per app: {'yes' if f.metadata['per_app'] else 'no, the whole server'}",
            ]
    from maitred import locationtext  # local: maitred.locations builds on this module

    lines += locationtext.keys_markdown()
    return "\n".join(lines) + "\n"


class Reload(NamedTuple):
    """What a HUP applies (see :func:`on_reload`)."""

    cfg: Config
    kept: list[str]  # keys of the settings kept although the new settings changed them
    fronts: bool  # a setting of the fronts changed: they are replaced too


def on_reload(running: Config, loaded: Config) -> Reload:
    """What a HUP applies: the `loaded` settings, except those that wait for a restart (see
    :func:`setting`), which keep their `running` values. ConfigError when the result breaks a
    rule of :func:`check`."""
    changed = [f for f in SETTINGS if getattr(running, f.name) != getattr(loaded, f.name)]
    kept = {f.name: getattr(running, f.name) for f in changed if f.metadata["reloads"] == RESTART}
    cfg = check(loaded.replace(**kept))
    # The apps' own tables (their locations too) reach the running fronts without replacing
    # them (maitred.frontapps); the server's locations are the fronts' own.
    fronts = (
        any(f.metadata["reloads"] == FRONTS for f in changed) or running.locations != cfg.locations
    )
    return Reload(cfg, [key_of(_BY_NAME[name]) for name in kept], fronts)


def reloaded(running: Config, load: Callable[[], Config]) -> tuple[Config, bool]:
    """The settings a HUP applies, read again with `load`, and whether the fronts are replaced
    too. ConfigError says why the new settings cannot be used (the running ones stay)."""
    try:
        cfg, kept, fronts = on_reload(running, load())
    except (ConfigError, SystemExit) as exc:
        raise ConfigError(f"the new configuration is invalid, keeping the old: {exc}") from None
    if kept:
        # The master's own setup keeps running: these wait for a restart or an upgrade, and
        # keeping them here keeps every process started from now alike.
        log.warning(
            "reload: %s change on a restart or an upgrade (USR2) only; keeping the running values",
            ", ".join(kept),
        )
    return cfg, fronts
