"""The command line, generated from the settings table in maitred.config.

`maitred [OPTIONS] [APP]` serves; `maitred check [OPTIONS] [APP]` (maitred.check) takes the same
options and only checks them. "check" is a command only as the first argument, so an app module
of that name can still be served (`maitred -w 2 check`, or `maitred check:application`).
`maitred ctl ...` (maitred.ctl) drives a running master over its control socket, the same way.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from maitred import __version__, config, logs
from maitred.appload import AppSpecError, split_spec

CHECK = "check"
CTL = "ctl"
USAGE = (
    f"maitred [OPTIONS] [APP]\n       maitred {CHECK} [OPTIONS] [APP]\n"
    f"       maitred {CTL} [--socket PATH | --pidfile PATH] [--json] COMMAND [ARGS]"
)
DESCRIPTION = (
    "Serve a WSGI app: an event-driven front owns the connections and hands each complete "
    "request to a worker thread that is free now. With no APP, serves a demo app. "
    f"`maitred {CHECK}` validates the settings and imports the app, then exits, serving nothing. "
    f"`maitred {CTL} --help` drives a running server."
)
USAGE_ERROR = 2  # a bad option or setting value: argparse's status


class _Parser(argparse.ArgumentParser):
    usage_status = USAGE_ERROR

    def error(self, message: str) -> NoReturn:
        """One line (argparse would print the whole usage first)."""
        self.exit(self.usage_status, f"maitred: error: {message}\n")


def _help(f: dataclasses.Field[Any]) -> str:
    """The setting's help text with its default; argparse reads `%` as a format character."""
    default = config.default_text(f) or "empty"
    return f"{f.metadata['help']} (default: {default})".replace("%", "%%")


def _add(parser: argparse.ArgumentParser, f: dataclasses.Field[Any]) -> None:
    meta = f.metadata
    if f.name == "app":
        parser.add_argument("app", nargs="?", metavar="APP", help=_help(f))
        return
    flags = config.flags_of(f)
    common: dict[str, Any] = {"dest": f.name, "help": _help(f)}
    if isinstance(f.default, bool):
        parser.add_argument(*flags, action="store_const", const=True, **common)
    elif isinstance(f.default, tuple):
        parser.add_argument(*flags, action="append", metavar=meta["metavar"], **common)
    else:
        parser.add_argument(*flags, metavar=meta["metavar"], **common)


def build_parser(
    prog: str = "maitred",
    usage: str = USAGE,
    description: str = DESCRIPTION,
    usage_status: int = USAGE_ERROR,
) -> argparse.ArgumentParser:
    parser = _Parser(
        prog=prog,
        usage=usage,
        description=description,
        argument_default=argparse.SUPPRESS,  # only what was given reaches config.load
    )
    parser.usage_status = usage_status
    parser.add_argument("--version", action="version", version=f"maitred {__version__}")
    for f in config.SETTINGS:
        _add(parser, f)
    return parser


def resolve(
    parser: argparse.ArgumentParser, given: Mapping[str, Any], cwd: str = "."
) -> config.Resolved:
    """The settings from `given` (parsed options), the environment and the config file (found
    from `cwd`); a bad one ends the process through `parser`. Prints a warning per unknown
    MAITRED_*."""
    try:
        options = {k: v for k, v in given.items() if v is not None}
        resolved = config.resolve(options, os.environ, cwd)
        split_spec(resolved.cfg.app)
    except (config.ConfigError, AppSpecError) as exc:
        parser.error(str(exc))
    for warning in resolved.warnings:
        print(f"maitred: warning: {warning}", file=sys.stderr)
    return resolved


def load_config(argv: Sequence[str] | None = None, cwd: str = ".") -> config.Config:
    parser = build_parser()
    return resolve(parser, vars(parser.parse_args(argv)), cwd).cfg


def main(argv: Sequence[str] | None = None) -> NoReturn:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == [CHECK]:
        from maitred import check

        sys.exit(check.main(args[1:]))
    if args[:1] == [CTL]:
        from maitred import ctl

        sys.exit(ctl.main(args[1:]))
    cfg = load_config(args)
    logs.setup(cfg.log_level, cfg.error_logfile)
    from maitred.arbiter import Arbiter

    # HUP re-reads the command line, the environment and the config file, from the directory
    # maitred started in (the master has changed to --chdir since).
    start_dir = os.getcwd()
    reload_config = lambda: load_config(args, start_dir)  # noqa: E731
    sys.exit(Arbiter(cfg, reload_config=reload_config, argv=args).run())
