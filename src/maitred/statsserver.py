"""--stats-bind: a tiny HTTP/1.0 server in the master's loop, for scrapers and probes.

Theory of operation
-------------------
A :class:`maitred.loopserver.LoopServer` (non-blocking, a deadline per client, at most
MAX_CLIENTS at once: a scraper can never hold up the supervision of the server) whose clients
send an HTTP request head (at most HEAD_LIMIT bytes); the answer is built whole when the head is
in (one pass over the master's own figures). One request per connection (HTTP/1.0,
`Connection: close`): Prometheus and probes open a new one each time anyway.

Routes: GET (or HEAD) /metrics, /livez, /readyz; anything else is 404 or 405. What each says
comes from the master (:class:`Answers`); this module only speaks HTTP.

Owned by the master's loop.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus

from maitred import sockets
from maitred.loopserver import Client, LoopServer

HEAD_LIMIT = 8192  # bytes of request head: a scraper sends a few hundred
BACKLOG = 64

# An answer: status, content type, body.
Answer = tuple[int, str, bytes]
TEXT = "text/plain; charset=utf-8"


@dataclass
class Answers:
    """What the master says on each route; `metrics` gets the request's Accept header."""

    metrics: Callable[[str], tuple[str, bytes]]
    alive: Callable[[], bool]
    readiness: Callable[[], tuple[int, bytes]]


class StatsServer(LoopServer):
    """The listener and its clients, driven by the master's loop."""

    name = "stats"

    def __init__(self, listener: socket.socket, url: str, answers: Answers) -> None:
        super().__init__(listener, url)
        self.answers = answers

    @classmethod
    def bind(cls, address: str, answers: Answers) -> StatsServer:
        """Listen at `address` (OSError when it cannot)."""
        where = sockets.parse_address(address)
        listener = sockets.bind(where, BACKLOG)
        return cls(listener, where.url(listener), answers)

    def received(self, client: Client, data: bytes) -> None:
        head = client.received
        if b"\r\n\r\n" in head or b"\n\n" in head:
            client.answer(respond(head, self.answers))
        elif len(head) > HEAD_LIMIT:
            client.answer(render((431, TEXT, b"request head too large\n"), b"GET"))

    def failed(self) -> bytes:
        return render((500, TEXT, b"internal error\n"), b"GET")


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
    if target not in (b"/metrics", b"/livez", b"/readyz"):
        return 404, TEXT, b"not found: /metrics, /livez, /readyz\n"
    if method not in (b"GET", b"HEAD"):
        return 405, TEXT, b"method not allowed\n"
    if target == b"/metrics":
        content_type, body = answers.metrics(accept)
        return 200, content_type, body
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
