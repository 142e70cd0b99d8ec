"""`maitred check [OPTIONS] [APP]`: validate the settings and the app, serve nothing.

Theory of operation
-------------------
As `nginx -t` does for nginx, this answers "would maitred start with these settings?" before a
deploy or a reload, without binding a socket or starting a process that serves. It reads the
settings exactly as the server does (command line, environment, config file; the same errors),
prints every setting as a line of TOML with where its value came from (default, file PATH,
env VAR, command line), then imports the app the way a worker does: in a child process, after
--chdir, --pythonpath and --env. The child keeps the app out of this process (its imports, its
threads, whatever it does at import) and lets a hanging import be bounded by --import-timeout:
the child is then killed. The child sends its verdict up a pipe; stdout carries the settings
only (the app's own prints go to stderr), stderr the verdict.

Exit status: 0 when the settings are valid and the app imports as a WSGI app, else 1, with one
line that says why (the errors of a start: bad setting, a TLS certificate or key that cannot be
loaded, missing module, exception at import, an ASGI app). With --apps-dir, the apps its
files hold now are read and validated by the code the master runs (maitred.appsdir), listed
and imported like the others; a file the master would refuse is one line naming it, and exit 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

from maitred import apps, appsdir, cli, config, locations, locationtext, tls
from maitred.appload import DEMO_APP, AppLoadError, load_app, prepare_path
from maitred.children import exit_text
from maitred.locations import LocationTable

OK, FAILED = 0, 1
USAGE = f"maitred {cli.CHECK} [OPTIONS] [APP]"
DESCRIPTION = (
    "Check the settings and that the app imports, as `maitred [OPTIONS] [APP]` would start it, "
    "without binding a socket or starting workers. Prints the resolved settings with where "
    "each value came from; exits 0 when all is well, 1 otherwise."
)
# An app's import (Django setting itself up, say) takes seconds; one that takes a minute is
# stuck on something (a database, a lock) that would stop the workers just the same.
IMPORT_TIMEOUT = 60.0
ALIGN_AT_MOST = 48  # the origins line up in a column unless a value is longer than this
IMPORTS = b"imports\n"  # what the child says when the app loaded


def main(argv: list[str]) -> int:
    parser = cli.build_parser(f"maitred {cli.CHECK}", USAGE, DESCRIPTION, usage_status=FAILED)
    parser.add_argument(
        "--import-timeout",
        type=_seconds,
        default=IMPORT_TIMEOUT,
        metavar="SECONDS",
        help=f"Longest time the app may take to import (default: {IMPORT_TIMEOUT:g}).",
    )
    given = vars(parser.parse_args(argv))
    timeout = given.pop("import_timeout")
    resolved, refused = with_apps_dir(cli.resolve(parser, given))
    found = apps.resolve(resolved.cfg, os.path.abspath(resolved.cfg.chdir))
    print(render(resolved))
    if tls.enabled(resolved.cfg):
        try:
            tls.build_context(resolved.cfg)
        except tls.TLSError as exc:
            print(f"maitred: cannot serve TLS: {exc}", file=sys.stderr)
            return FAILED
    for app in found:
        if not app.implicit:
            print(render_app(app, resolved))
    listing = render_locations(found)
    if listing:
        print(listing)
    for line in refused:  # after the apps it accepted, listed above
        print(f"maitred: {line}", file=sys.stderr)
    if refused:
        return FAILED
    for app in found:
        started = time.monotonic()
        failure = import_in_child(app.cfg, timeout)
        if failure:
            sys.stderr.write(f"maitred: app {app.name}:\n" if app.label else "")
            sys.stderr.write(failure)
            return FAILED
        spec = app.cfg.app or DEMO_APP
        took = time.monotonic() - started
        of = f" (app {app.name})" if app.label else ""
        print(
            f"maitred: ok: the settings are valid and app {spec!r}{of} imports ({took:.2f} s)",
            file=sys.stderr,
        )
    return OK


def with_apps_dir(resolved: config.Resolved) -> tuple[config.Resolved, list[str]]:
    """The settings with the apps --apps-dir holds now, read and validated as the master's
    first look does (maitred.appsdir), and one line per file it would refuse."""
    cfg = resolved.cfg
    if not cfg.apps_dir:
        return resolved, []
    cfg, refused = appsdir.AppsDir(cfg.apps_dir, cfg.apps_dir_owner).survey(cfg)
    return resolved._replace(cfg=cfg), refused


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, not {text!r}")
    return value


def render(resolved: config.Resolved) -> str:
    """Every setting as `key = value  # origin`: valid TOML, so it can seed a maitred.toml."""
    rows = []
    for f in config.SETTINGS:
        line = f"{config.key_of(f)} = {toml_value(getattr(resolved.cfg, f.name))}"
        if f.name == "config":  # the one setting a config file cannot hold
            line = "# " + line
        rows.append((line, resolved.origins[f.name]))
    width = min(ALIGN_AT_MOST, max(len(line) for line, _ in rows))
    return "\n".join(f"{line:<{width}}  # {origin}" for line, origin in rows)


def render_app(app: apps.App, resolved: config.Resolved) -> str:
    """An app's table: its routing and its settings as resolved (absolute directories, its
    root-path followed by its path), each with where it came from."""
    table = next(t for t in resolved.cfg.apps if t.name == app.name)
    given = dict(table.settings)
    route = app.route
    rows = [
        (f"{apps.HOSTS} = {toml_value(route.hosts)}", "app table"),
        (f"{apps.PATH} = {toml_value(route.path or '/')}", "app table"),
        (f"{apps.DEFAULT} = {toml_value(route.default)}", "app table"),
    ]
    for f in apps.PER_APP.values():
        origin = "app table" if f.name in given else f"top level: {resolved.origins[f.name]}"
        if f.name == "root_path" and route.path:
            origin += ", then its path"
        rows.append((f"{config.key_of(f)} = {toml_value(getattr(app.cfg, f.name))}", origin))
    width = min(ALIGN_AT_MOST, max(len(line) for line, _ in rows))
    lines = [f"{line:<{width}}  # {origin}" for line, origin in rows]
    return "\n".join(["", f"[apps.{app.name}]  # resolved", *lines])


def render_locations(found: Sequence[apps.App]) -> str:
    """The locations, as TOML that reads back the same: the server's, then each app's own,
    each array in the order requests consult it; and per app, the order its requests consult
    the two together (the app's own replace the server's on a path)."""
    server = found[0].cfg.locations  # every app has the server's
    cfg = found[0].cfg
    lines = locationtext.render(server, cfg.allow, cfg.deny) if server else []
    for app in found:
        table = LocationTable(
            [(loc, None) for loc in server], [(loc, None) for loc in app.locations]
        )
        if app.locations:
            lines += locationtext.render(app.locations, app.cfg.allow, app.cfg.deny)
        if app.locations and server:
            order = ", ".join(
                f"{loc.shown_path} ({'its own' if loc.app else 'server'})"
                for loc in locations.ordered(table.locations)
            )
            lines.append(f"# app {app.name} consults: {order}")
    return "\n".join(lines)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, tuple):
        # A pair (--env KEY=VALUE, --static PREFIX=DIR) is written as the setting reads it.
        items = ("=".join(item) if isinstance(item, tuple) else item for item in value)
        return "[" + ", ".join(toml_value(item) for item in items) + "]"
    return json.dumps(str(value))  # a JSON string is a TOML basic string


def import_in_child(cfg: config.Config, timeout: float) -> str:
    """Import the app in a child process as a worker would; empty when it loads as a WSGI
    app, else what to print (the child is killed if it takes longer than `timeout`)."""
    sys.stdout.flush()  # or the child would write our buffered output a second time
    sys.stderr.flush()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _child(cfg, write_fd)
    os.close(write_fd)
    try:
        said = _read_all(read_fd, time.monotonic() + timeout)
    finally:
        os.close(read_fd)
    cause = ""
    if said is None:
        os.kill(pid, signal.SIGKILL)
        cause = f"the import did not finish within {timeout:g} s"
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if said == IMPORTS:
        return ""
    if said:
        return said.decode("utf-8", "replace")
    cause = cause or f"the process importing it ended with {exit_text(code)}"
    return f"maitred: cannot import app {cfg.app or DEMO_APP!r}: {cause}\n"


def _read_all(fd: int, deadline: float) -> bytes | None:
    """Everything until end of file, or None at the deadline."""
    chunks: list[bytes] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        readable, _, _ = select.select([fd], [], [], remaining)
        if readable:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def _child(cfg: config.Config, write_fd: int) -> NoReturn:
    """Load the app and say how it went on `write_fd`; never returns."""
    try:
        os.dup2(2, 1)  # stdout carries the settings; what the app prints goes to stderr
        said = _load(cfg)
    except BaseException:  # a bug of ours: still an answer, not a hang
        said = traceback.format_exc().encode()
    with contextlib.suppress(OSError), os.fdopen(write_fd, "wb") as pipe:
        pipe.write(said)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _load(cfg: config.Config) -> bytes:
    try:
        prepare_path(cfg.chdir, cfg.pythonpath, cfg.virtualenv)
    except AppLoadError as exc:
        return exc.report().encode()
    os.environ.update(dict(cfg.env))
    try:
        load_app(cfg.app)
    except AppLoadError as exc:
        return exc.report().encode()
    return IMPORTS
