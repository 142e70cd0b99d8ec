"""`maitred ctl`: drive a running master over its control socket (maitred.control).

    maitred ctl [--socket PATH | --pidfile PATH] [--json] COMMAND [ARGS...]

Which master: --socket names its control socket; --pidfile names its pidfile, and the socket
is the `control` entry of that master's runtime directory (a symlink there when
--control-socket put it elsewhere); with neither, the one master of this user that runs
(several: say which). The answer is printed for a person, or as JSON with --json; an error
is one line on stderr and exit status 1 (2 for a bad command line). `top` draws its screen
again every --interval seconds until Ctrl-C, or once with --once.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any

from maitred import control, ctlview, ctlwire, runtime

ERROR = 1
USAGE = 2
ANSWER_TIMEOUT = 15.0  # seconds: the master answers at once, `stacks` within a few
TOP_INTERVAL = 1.0
CLEAR = "\033[H\033[2J"


class CtlError(Exception):
    """One line that says what went wrong."""


def find_socket(path: str, pidfile: str, where: str | None = None) -> str:
    """The control socket to talk to (CtlError when there is none to find)."""
    if path:
        return path
    if pidfile:
        try:
            with open(pidfile, encoding="ascii") as fh:
                text = fh.read().strip()
        except OSError as exc:
            raise CtlError(f"cannot read the pidfile {pidfile}: {exc.strerror}") from None
        if not text.isdigit():
            raise CtlError(f"the pidfile {pidfile} holds no pid: {text[:40]!r}")
        found = runtime.running_dirs(where).get(int(text))
        if found is None:
            raise CtlError(f"the pidfile {pidfile} names pid {text}, no maitred master of yours")
        return control.default_path(found)
    masters = runtime.running_dirs(where)
    if not masters:
        raise CtlError("no maitred master of yours runs (or name its --socket)")
    if len(masters) > 1:
        pids = ", ".join(str(pid) for pid in sorted(masters))
        raise CtlError(
            f"{len(masters)} masters run (pids {pids}): say which with --pidfile or --socket"
        )
    return control.default_path(next(iter(masters.values())))


def ask(path: str, command: str, args: Sequence[str], timeout: float = ANSWER_TIMEOUT) -> Any:
    """Send one request and return the result; CtlError with one line when it fails."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except FileNotFoundError:
            raise CtlError(f"no control socket at {path} (is maitred running?)") from None
        except ConnectionRefusedError:
            raise CtlError(f"connection refused at {path}: no master listens there") from None
        except PermissionError:
            raise CtlError(f"permission denied at {path}: run as the server's user") from None
        except OSError as exc:
            raise CtlError(f"cannot connect to {path}: {exc.strerror or exc}") from None
        try:
            sock.sendall(ctlwire.encode({"command": command, "args": list(args)}))
            return ctlwire.parse_answer(_read_answer(sock))
        except TimeoutError:
            raise CtlError(f"no answer from {path} within {timeout:g} s") from None
        except ctlwire.ProtocolError as exc:
            raise CtlError(str(exc)) from None
        except OSError as exc:
            raise CtlError(f"connection to {path} lost: {exc.strerror or exc}") from None


def _read_answer(sock: socket.socket) -> bytes:
    decoder = ctlwire.Decoder(ctlwire.MAX_ANSWER)
    while True:
        data = sock.recv(65536)
        if not data:
            raise CtlError("the master closed the connection without an answer")
        payload = decoder.feed(data)
        if payload is not None:
            return payload


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maitred ctl",
        allow_abbrev=False,  # a command's own --p... is not ctl's --pidfile
        description="Drive a running maitred master over its control socket.",
        epilog="commands: " + ", ".join(ctlview.USAGES),
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--socket", default="", metavar="PATH", help="the control socket")
    where.add_argument("--pidfile", default="", metavar="PATH", help="the master's pidfile")
    parser.add_argument("--json", action="store_true", help="print the answer as JSON")
    parser.add_argument("--once", action="store_true", help="top: one screen, then exit")
    parser.add_argument(
        "--interval", type=float, default=TOP_INTERVAL, metavar="S", help="top: seconds"
    )
    parser.add_argument("command", metavar="COMMAND")
    parser.add_argument("args", nargs="*", metavar="ARG")
    return parser


def main(argv: Sequence[str]) -> int:
    parser = build_parser()
    # What is not ctl's own is the command's, options included (`cache purge --url /x`),
    # while ctl's own may come anywhere (`top --once`).
    options, theirs = parser.parse_known_args(argv)
    options.args = [*options.args, *theirs]
    try:
        path = find_socket(options.socket, options.pidfile)
        if options.command == "top" and not options.once and not options.json:
            return _top(path, options.interval)
        result = ask(path, options.command, options.args)
    except CtlError as exc:
        print(f"maitred ctl: {exc}", file=sys.stderr)
        return ERROR
    if options.json:
        print(json.dumps(result, indent=2))
    else:
        print(ctlview.render(options.command, result), end="")
    return 0


def _top(path: str, interval: float) -> int:
    """Draw `top` again every `interval` seconds until Ctrl-C."""
    try:
        while True:
            screen = ctlview.render("top", ask(path, "top", []))
            sys.stdout.write(CLEAR + time.strftime("%H:%M:%S  ") + screen)
            sys.stdout.flush()
            time.sleep(interval)
    except KeyboardInterrupt:
        sys.stdout.write("\n")
        return 0
    except CtlError as exc:
        print(f"maitred ctl: {exc}", file=sys.stderr)
        return ERROR
