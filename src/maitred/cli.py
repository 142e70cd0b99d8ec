"""The command line, generated from the settings table in maitred.config."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from maitred import __version__, config, logs
from maitred.appload import AppSpecError, split_spec

USAGE = "maitred [OPTIONS] [APP]"
DESCRIPTION = (
    "Serve a WSGI app: an event-driven front owns the connections and hands each complete "
    "request to a worker thread that is free now. With no APP, serves a demo app."
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, exit status 2 (argparse would print the whole usage first)."""
        self.exit(2, f"maitred: error: {message}\n")


def _add(parser: argparse.ArgumentParser, f: dataclasses.Field[Any]) -> None:
    meta = f.metadata
    if f.name == "app":
        parser.add_argument("app", nargs="?", metavar="APP", help=meta["help"])
        return
    flags = config.flags_of(f)
    common: dict[str, Any] = {"dest": f.name, "help": meta["help"]}
    if isinstance(f.default, bool):
        parser.add_argument(*flags, action="store_const", const=True, **common)
    elif isinstance(f.default, tuple):
        parser.add_argument(*flags, action="append", metavar=meta["metavar"], **common)
    else:
        parser.add_argument(*flags, metavar=meta["metavar"], **common)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="maitred",
        usage=USAGE,
        description=DESCRIPTION,
        argument_default=argparse.SUPPRESS,  # only what was given reaches config.load
    )
    parser.add_argument("--version", action="version", version=f"maitred {__version__}")
    for f in config.SETTINGS:
        _add(parser, f)
    return parser


def load_config(argv: Sequence[str] | None = None) -> config.Config:
    parser = build_parser()
    given = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    try:
        cfg = config.load(given, os.environ)
        split_spec(cfg.app)
    except (config.ConfigError, AppSpecError) as exc:
        parser.error(str(exc))
    return cfg


def main(argv: Sequence[str] | None = None) -> NoReturn:
    args = list(sys.argv[1:] if argv is None else argv)
    cfg = load_config(args)
    logs.setup(cfg.log_level, cfg.error_logfile)
    from maitred.arbiter import Arbiter

    # HUP re-reads the command line, the environment and the config file.
    sys.exit(Arbiter(cfg, reload_config=lambda: load_config(args), argv=args).run())
