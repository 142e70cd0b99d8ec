"""--control-socket: the master's unix socket for `maitred ctl`, and its table of commands.

Theory of operation
-------------------
The master listens on a unix socket (by default `control` in its runtime directory, which is
mode 0700; the socket itself is mode 0600, and a client whose uid (SO_PEERCRED) is neither the
master's nor root's is closed at once). The server is a :class:`maitred.loopserver.LoopServer`:
non-blocking, in the master's loop, a deadline per client, a bounded number of clients.

Protocol (maitred.ctlwire): the client sends one request, a 4-byte big-endian length and a JSON
object ``{"command": NAME, "args": [WORD, ...]}``; the master sends one answer the same way,
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "one line"}``, and closes. A
request that is too long (MAX_REQUEST), not JSON, not of that shape, or whose command is
unknown, or whose arguments the command refuses (:class:`CommandError`), gets an error answer
and changes nothing.

Commands: :class:`Commands` is a table of NAME -> handler. Any module adds one with
``commands.register(Command(NAME, handler, usage, summary))``; the handler gets the request's
args (a tuple of strings) and returns the result (anything JSON can say), or a
:class:`Pending` when the answer needs a while (the workers' stacks): the server then asks the
Pending each turn of the loop, and answers once it is done or its deadline passed. A command
with subcommands (``cache purge PATH``) registers its first word and reads the rest from its
args. The master's own commands are in maitred.mastercommands; `maitred ctl` (maitred.ctl) is
the client.

Owned by the master's loop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from maitred import ctlwire, sockets
from maitred.loopserver import Client, LoopServer, Phase

log = logging.getLogger("maitred.error")

SOCKET_NAME = "control"  # in the runtime directory (maitred.runtime)
SOCKET_MODE = 0o600  # the owner only: the socket can stop the server
BACKLOG = 16
CLIENT_TIMEOUT = 10.0  # seconds: longer than any Pending may wait (a `stacks`)
ROOT = 0
PEERCRED = struct.Struct("3i")  # pid, uid, gid


class CommandError(Exception):
    """A command refuses its arguments or cannot be done now; the text is the answer."""


class Pending:
    """An answer being gathered: asked each turn until `done`, or until its deadline."""

    deadline: float = 0.0

    def done(self, now: float) -> bool:
        raise NotImplementedError

    def result(self) -> Any:
        """The answer (once done, or at the deadline with what has come)."""
        raise NotImplementedError


Handler = Callable[[tuple[str, ...]], Any]


@dataclass(frozen=True)
class Command:
    name: str
    handler: Handler  # returns the result, or a Pending; raises CommandError
    usage: str  # the arguments, as `maitred ctl` shows them ("APP N")
    summary: str  # one line


class Commands:
    """The commands the control socket answers, by name."""

    def __init__(self) -> None:
        self._table: dict[str, Command] = {}

    def register(self, command: Command) -> None:
        if command.name in self._table:
            raise ValueError(f"command {command.name!r} is registered already")
        self._table[command.name] = command

    def names(self) -> list[str]:
        return sorted(self._table)

    def run(self, request: ctlwire.Request) -> Any:
        """The result of a request, or a Pending; CommandError when it cannot be done."""
        command = self._table.get(request.command)
        if command is None:
            raise CommandError(
                f"unknown command {request.command!r}; commands: {', '.join(self.names())}"
            )
        return command.handler(request.args)

    def help(self) -> list[dict[str, str]]:
        table = self._table
        return [
            {"command": n, "usage": table[n].usage, "summary": table[n].summary}
            for n in self.names()
        ]


class ControlServer(LoopServer):
    """The control socket's listener and clients; requests go to `commands`."""

    name = "control"
    client_timeout = CLIENT_TIMEOUT

    def __init__(self, listener: socket.socket, path: str, commands: Commands) -> None:
        super().__init__(listener, path)
        self.commands = commands
        self._decoders: dict[Client, ctlwire.Decoder] = {}
        self._inode = os.stat(path).st_ino  # after a USR2 the path may be the new master's

    @classmethod
    def bind(cls, path: str, commands: Commands) -> ControlServer:
        """Listen at `path`, mode 0600 (OSError when it cannot; EADDRINUSE when a server
        listens there)."""
        old = os.umask(0o177)  # never a moment when others may connect
        try:
            listener = sockets.bind(sockets.parse_address(f"unix:{path}"), BACKLOG)
        finally:
            os.umask(old)
        os.chmod(path, SOCKET_MODE)
        return cls(listener, path, commands)

    def accepts(self, sock: socket.socket) -> bool:
        """The master's user, or root: the mode says so already; this holds if it is widened."""
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, PEERCRED.size)
        _, uid, _ = PEERCRED.unpack(creds)
        return uid in (os.getuid(), ROOT)

    def received(self, client: Client, data: bytes) -> None:
        decoder = self._decoders.setdefault(client, ctlwire.Decoder(ctlwire.MAX_REQUEST))
        try:
            payload = decoder.feed(data)
            if payload is None:
                return
            request = ctlwire.parse_request(payload)
        except ctlwire.ProtocolError as exc:
            client.answer(ctlwire.error(f"malformed request: {exc}"))
            return
        finally:
            client.received = b""  # the decoder keeps what it needs
        try:
            result = self.commands.run(request)
        except CommandError as exc:
            client.answer(ctlwire.error(str(exc)))
            return
        log.debug("control: %s", " ".join((request.command, *request.args)))
        if isinstance(result, Pending):
            client.waiting_for = result
            client.phase = Phase.WAITING
            return
        client.answer(ctlwire.ok(result))

    def gather(self, client: Client, now: float) -> None:
        pending = client.waiting_for
        assert isinstance(pending, Pending)
        if pending.done(now) or now >= pending.deadline:
            client.answer(ctlwire.ok(pending.result()))

    def failed(self) -> bytes:
        return ctlwire.error("internal error (see the server's log)")

    def close(self) -> None:
        """Close, and remove the socket's path unless another master listens there now."""
        for client in list(self.clients.values()):
            self._close(client)
        with contextlib.suppress(OSError):
            if os.stat(self.url).st_ino == self._inode:
                os.unlink(self.url)
        self.listener.close()

    def _close(self, client: Client) -> None:
        self._decoders.pop(client, None)
        super()._close(client)


def default_path(runtime_dir: str) -> str:
    return os.path.join(runtime_dir, SOCKET_NAME)


def link_from_runtime_dir(runtime_dir: str, path: str) -> None:
    """A socket elsewhere (--control-socket) is named in the runtime directory too, by a
    symlink, so that `maitred ctl --pidfile` finds it from the master's pid."""
    if path != default_path(runtime_dir):
        os.symlink(os.path.abspath(path), default_path(runtime_dir))
