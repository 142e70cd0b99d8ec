"""--stats-bind: a tiny HTTP/1.0 server in the master's loop, for scrapers and probes.

Theory of operation
-------------------
The master's loop already waits on descriptors (maitred.processes.wait); the stats listener and
its clients are a few more. Everything is non-blocking and bounded, so a scraper can never hold
up the supervision of the server:

* a client has CLIENT_TIMEOUT seconds to send its request head (at most HEAD_LIMIT bytes) and
  read the answer; past that it is closed (a scraper that connects and sends nothing costs one
  descriptor for that long, and MAX_CLIENTS of them at most: more are closed at once);
* the answer is built whole when the head is in (one pass over the master's own figures) and
  sent with non-blocking writes; what the socket does not take at once is tried again on the
  next turns of the loop, which then wakes every RETRY seconds (:meth:`timeout`);
* one request per connection (HTTP/1.0, `Connection: close`): Prometheus and probes open a
  new one each time anyway.

Routes: GET (or HEAD) /metrics, /livez, /readyz, /status (a page for a person, which polls)
/status.json (maitred.statusdoc); anything else is 404 or 405. What each says comes from the
master (:class:`Answers`); this module only speaks HTTP. The loop also calls `Answers.tick`
on each turn and wakes for it when it is due (the status page's history: maitred.history).

Owned by the master's loop.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus

from maitred import sockets

log = logging.getLogger("maitred.error")

CLIENT_TIMEOUT = 5.0  # seconds a client has to send its head and read the answer
HEAD_LIMIT = 8192  # bytes of request head: a scraper sends a few hundred
MAX_CLIENTS = 16  # open at once; a scrape takes milliseconds, so more means a flood
RETRY = 0.05  # seconds between tries to send what a full socket did not take
BACKLOG = 64
READ_SIZE = 4096

# An answer: status, content type, body.
Answer = tuple[int, str, bytes]
TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
HTML = "text/html; charset=utf-8"
ROUTES = (b"/metrics", b"/livez", b"/readyz", b"/status", b"/status.json")


@dataclass
class Answers:
    """What the master says on each route; `metrics` gets the request's Accept header."""

    metrics: Callable[[str], tuple[str, bytes]]
    alive: Callable[[], bool]
    readiness: Callable[[], tuple[int, bytes]]
    status: Callable[[], bytes] = lambda: b"{}"  # /status.json
    page: bytes = b""  # /status
    tick: Callable[[float], float] = lambda now: math.inf  # -> when it is due next


@dataclass(eq=False)
class Client:
    sock: socket.socket
    deadline: float
    head: bytes = b""
    out: bytes = b""
    answered: bool = field(default=False)


class StatsServer:
    """The listener and its clients, driven by the master's loop."""

    def __init__(self, listener: socket.socket, url: str, answers: Answers) -> None:
        self.listener = listener
        self.url = url
        self.answers = answers
        self.clients: dict[int, Client] = {}
        self.next_tick = 0.0  # monotonic: when Answers.tick is due

    @classmethod
    def bind(cls, address: str, answers: Answers) -> StatsServer:
        """Listen at `address` (OSError when it cannot)."""
        where = sockets.parse_address(address)
        listener = sockets.bind(where, BACKLOG)
        return cls(listener, where.url(listener), answers)

    def fds(self) -> list[int]:
        """What the loop waits on: the listener, and the clients still sending their head."""
        waiting = [fd for fd, c in self.clients.items() if not c.answered]
        return [self.listener.fileno(), *waiting]

    def sockets(self) -> list[socket.socket]:
        """Every socket held, for a forked child to close."""
        return [self.listener, *(c.sock for c in self.clients.values())]

    def timeout(self, now: float) -> float | None:
        """How soon the loop must come back: to send more, to close a late client, or to
        tick."""
        tick = max(0.0, self.next_tick - now)
        if not self.clients:
            return tick if tick < math.inf else None
        if any(c.answered for c in self.clients.values()):
            return min(RETRY, tick)
        return max(0.0, min(tick, *(c.deadline - now for c in self.clients.values())))

    def turn(self, readable: list[int]) -> None:
        """One turn of the loop: accept, read, answer, send, expire."""
        now = time.monotonic()
        if now >= self.next_tick:
            self.next_tick = self.answers.tick(now)
        if self.listener.fileno() in readable:
            self._accept(now)
        for fd, client in list(self.clients.items()):
            if fd in readable and not client.answered:
                self._read(client)
            if client.answered:
                self._send(client)
            if fd in self.clients and now > client.deadline:
                self._close(client)

    def close(self) -> None:
        for client in list(self.clients.values()):
            self._close(client)
        sockets.close_all([[self.listener]], False, [])

    def _accept(self, now: float) -> None:
        for _ in range(MAX_CLIENTS):
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors, say: the next turn tries again
                log.warning("stats: cannot accept: %s", exc)
                return
            if len(self.clients) >= MAX_CLIENTS:
                sock.close()
                continue
            sock.setblocking(False)
            self.clients[sock.fileno()] = Client(sock, now + CLIENT_TIMEOUT)

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
        client.head += data
        if b"\r\n\r\n" in client.head or b"\n\n" in client.head:
            try:
                client.out = respond(client.head, self.answers)
            except Exception:  # a bug here must not stop the master: say it, answer 500
                log.exception("stats: cannot answer %r", client.head[:100])
                client.out = render((500, TEXT, b"internal error\n"), b"GET")
            client.answered = True
        elif len(client.head) > HEAD_LIMIT:
            client.out = render((431, TEXT, b"request head too large\n"), b"GET")
            client.answered = True

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


def respond(head: bytes, answers: Answers) -> bytes:
    """The whole response to a request head."""
    lines = head.split(b"\n")
    parts = lines[0].split()
    if len(parts) != 3:
        return render((400, TEXT, b"bad request\n"), b"GET")
    method, target = parts[0], parts[1].partition(b"?")[0]
    accept = ""
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"accept":
            accept = value.strip().decode("latin-1")
    return render(route(method, target, accept, answers), method)


def route(method: bytes, target: bytes, accept: str, answers: Answers) -> Answer:
    if target not in ROUTES:
        return 404, TEXT, b"not found: " + b", ".join(ROUTES) + b"\n"
    if method not in (b"GET", b"HEAD"):
        return 405, TEXT, b"method not allowed\n"
    if target == b"/metrics":
        content_type, body = answers.metrics(accept)
        return 200, content_type, body
    if target == b"/status.json":
        return 200, JSON, answers.status()
    if target == b"/status":
        return 200, HTML, answers.page
    if target == b"/livez":
        alive = answers.alive()
        return (200, TEXT, b"alive\n") if alive else (503, TEXT, b"not answering\n")
    status, body = answers.readiness()
    return status, TEXT, body


def render(answer: Answer, method: bytes) -> bytes:
    status, content_type, body = answer
    head = (
        f"HTTP/1.0 {status} {HTTPStatus(status).phrase}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    ).encode("latin-1")
    return head if method == b"HEAD" else head + body
