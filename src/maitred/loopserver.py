"""A small server driven by the master's loop: the listener, its clients, their deadlines.

Theory of operation
-------------------
The master's loop already waits on descriptors (maitred.processes.wait); a listener and its
clients are a few more. Everything is non-blocking and bounded, so a client can never hold up
the supervision of the server:

* a client has `client_timeout` seconds to send its request (at most what the subclass takes)
  and read the answer; past that it is closed (one that connects and sends nothing costs one
  descriptor for that long, and MAX_CLIENTS of them at most: more are closed at once);
* a client is READING its request, then WAITING while its answer is being gathered (an answer
  that needs the workers, say), then SENDING it with non-blocking writes: what the socket does
  not take at once is tried again on the next turns of the loop, which then wakes every RETRY
  seconds (:meth:`LoopServer.timeout`);
* one request per connection, then the server closes it.

A subclass says what the bytes mean: :meth:`LoopServer.received` is given each read and sets
the answer (or marks the client WAITING), :meth:`LoopServer.gather` is asked each turn for the
answer of a WAITING client. The stats server (maitred.statsserver, HTTP) and the control socket
(maitred.control, length-prefixed JSON) are the two.

Owned by the master's loop.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from maitred import sockets

log = logging.getLogger("maitred.error")

MAX_CLIENTS = 16  # open at once; an exchange takes milliseconds, so more means a flood
RETRY = 0.05  # seconds between tries to send what a full socket did not take
READ_SIZE = 65536


class Phase(enum.Enum):
    READING = "reading"  # the request is coming in
    WAITING = "waiting"  # the answer is being gathered (the subclass's `gather`)
    SENDING = "sending"  # the answer is going out


@dataclass(eq=False)
class Client:
    sock: socket.socket
    deadline: float
    received: bytes = b""
    out: bytes = b""
    phase: Phase = Phase.READING
    waiting_for: object = None  # what a WAITING client waits on, as the subclass says

    def answer(self, data: bytes) -> None:
        """The whole answer: send it."""
        self.out = data
        self.phase = Phase.SENDING


class LoopServer:
    """The listener and its clients, driven by the master's loop."""

    name = "server"  # for log lines
    client_timeout = 5.0  # seconds a client has to send its request and read the answer

    def __init__(self, listener: socket.socket, url: str) -> None:
        self.listener = listener
        self.url = url
        self.clients: dict[int, Client] = {}

    def received(self, client: Client, data: bytes) -> None:
        """Bytes of the request arrived (already added to `client.received`): answer, wait,
        or read on."""
        raise NotImplementedError

    def gather(self, client: Client, now: float) -> None:
        """A WAITING client: answer it, if its answer is complete."""

    def fds(self) -> list[int]:
        """What the loop waits on: the listener, and the clients still sending their request."""
        reading = [fd for fd, c in self.clients.items() if c.phase is Phase.READING]
        return [self.listener.fileno(), *reading]

    def sockets(self) -> list[socket.socket]:
        """Every socket held, for a forked child to close."""
        return [self.listener, *(c.sock for c in self.clients.values())]

    def timeout(self, now: float) -> float | None:
        """How soon the loop must come back: to send more, gather, or close a late client."""
        if not self.clients:
            return None
        if any(c.phase is not Phase.READING for c in self.clients.values()):
            return RETRY
        return max(0.0, min(c.deadline for c in self.clients.values()) - now)

    def turn(self, readable: list[int]) -> None:
        """One turn of the loop: accept, read, gather, send, expire."""
        now = time.monotonic()
        if self.listener.fileno() in readable:
            self._accept(now)
        for fd, client in list(self.clients.items()):
            if fd in readable and client.phase is Phase.READING:
                self._read(client)
            if client.phase is Phase.WAITING:
                self._safely(client, functools.partial(self.gather, client, now))
            if client.phase is Phase.SENDING:
                self._send(client)
            if fd in self.clients and now > client.deadline:
                self._close(client)

    def close(self) -> None:
        for client in list(self.clients.values()):
            self._close(client)
        sockets.close_all([[self.listener]], False, [])

    def accepts(self, sock: socket.socket) -> bool:
        """Whether to serve a client just accepted (the control socket checks who it is)."""
        return True

    def failed(self) -> bytes:
        """The answer when answering raised (a bug: said in the log, never fatal)."""
        return b""

    def _accept(self, now: float) -> None:
        for _ in range(MAX_CLIENTS):
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors, say: the next turn tries again
                log.warning("%s: cannot accept: %s", self.name, exc)
                return
            if len(self.clients) >= MAX_CLIENTS or not self.accepts(sock):
                sock.close()
                continue
            sock.setblocking(False)
            self.clients[sock.fileno()] = Client(sock, now + self.client_timeout)

    def _read(self, client: Client) -> None:
        try:
            data = client.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(client)
            return
        client.received += data
        self._safely(client, lambda: self.received(client, data))

    def _safely(self, client: Client, step: Callable[[], None]) -> None:
        """Run a subclass's step; a bug there must not stop the master: say it, answer."""
        try:
            step()
        except Exception:
            log.exception("%s: cannot answer %r", self.name, client.received[:100])
            client.answer(self.failed())

    def _send(self, client: Client) -> None:
        try:
            sent = client.sock.send(client.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            sent = len(client.out)  # the client left: nothing more to send
        client.out = client.out[sent:]
        if not client.out:
            self._close(client)

    def _close(self, client: Client) -> None:
        self.clients.pop(client.sock.fileno(), None)
        with contextlib.suppress(OSError):
            client.sock.close()
