"""The access log: one line per response, written by the front.

A format is compiled once into a list of literal strings and field getters (:func:`compile_format`);
a line is built from an :class:`Entry`, which holds what the front knows of one exchange. Three
named formats exist: ``combined`` (nginx's and Apache's, the default), ``common``, and ``json``
(an object with every field, through :func:`json.dumps`, so quotes, backslashes and control
characters in client-supplied values are escaped and every line parses). Anything else is a
template of ``{field}`` names; in templates (and in combined/common) client-supplied values are
escaped as nginx does: ``"``, ``\\``, control and non-ASCII bytes become ``\\xHH``, so one request
is always one line and a quoted field cannot be closed early.

Lines are gathered during an event-loop turn and written at its end: the log costs the front a
list append per request, not a ``write``. Several fronts may share one log, and a pipe (a
container's stdout) keeps a write whole only up to PIPE_BUF bytes, so a turn's lines go out in
pieces of at most that size, cut at line ends (:func:`line_pieces`): lines of two fronts never
mix.

A request whose client left before its response was complete is logged as nginx logs it: 499
when no response had begun, else the status that was sent and the body bytes written so far; a
body cut short is logged 400 (front/exchange.py).

``app`` names the app that served the request when the server runs several (maitred.apps),
else it is "-".

Times: ``queue_time`` is from the complete request to its dispatch to a worker thread,
``app_time`` from the dispatch to the worker's last frame, ``request_time`` from the complete
request head to the response handed to the connection; all in seconds. Static files have no
queue or app time (0).

Owned by the event loop thread.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import string
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from maitred.front.exchange import Exchange
    from maitred.http.parser import RequestHead

COMBINED = (
    '{remote_addr} - {remote_user} [{time_local}] "{request}" {status} {body_bytes_clf} '
    '"{referer}" "{user_agent}"'
)
COMMON = '{remote_addr} - {remote_user} [{time_local}] "{request}" {status} {body_bytes_clf}'
NAMED = {"combined": COMBINED, "common": COMMON}
JSON = "json"

_UNSAFE = re.compile(r'[\x00-\x1f"\\\x7f-\xff]')
_DURATION = "%.6f"


class Entry:
    """What one access log line is made of."""

    __slots__ = (
        "app",
        "app_done",
        "cache",
        "complete",
        "dispatched",
        "ended",
        "head",
        "peer",
        "request_id",
        "sent",
        "started",
        "status",
        "wall",
    )

    def __init__(
        self,
        head: RequestHead | None,
        peer: tuple[str, str, str, str, str],
        status: int,
        sent: int,
        ended: float,
    ) -> None:
        self.head = head
        self.peer = peer
        self.status = status
        self.sent = sent
        self.request_id = ""
        self.app = ""  # the app that served it, of several (maitred.apps)
        self.cache = ""  # what the response cache made of it (maitred.front.cache)
        self.started = self.complete = self.dispatched = self.app_done = self.ended = ended
        self.wall = time.time()

    @classmethod
    def of(cls, exchange: Exchange, now: float) -> Entry:
        entry = cls(exchange.head, exchange.peer, exchange.status, exchange.sent, now)
        entry.request_id = exchange.request_id
        entry.app = exchange.app
        entry.cache = exchange.cache
        entry.started = exchange.started
        entry.complete = exchange.complete
        entry.dispatched = exchange.dispatched or exchange.complete
        entry.app_done = exchange.app_done or entry.dispatched
        return entry

    def header(self, wanted: bytes) -> str:
        """The first value of a request header (lower-case name), or "-"."""
        values = self.head.fields.get(wanted) if self.head is not None else None
        return values[0].decode("latin-1") if values else "-"


def escape(text: str) -> str:
    """A client-supplied value made safe for a text log line (nginx's escaping)."""
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02X}", text)


# --- fields: each returns a str, unescaped; the text formats escape, json.dumps escapes ---


class _LocalTime:
    """time_local as the combined format writes it, formatted once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def __call__(self, entry: Entry) -> str:
        second = int(entry.wall)
        if second != self._second:
            self._second = second
            self._text = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(second))
        return self._text


def _iso8601(entry: Entry) -> str:
    millis = int(entry.wall * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(entry.wall)) + f".{millis:03d}Z"


def _request(entry: Entry) -> str:
    head = entry.head
    if head is None:
        return "-"
    return f"{head.method.decode('latin-1')} {head.target.decode('latin-1')} HTTP/{head.version}"


def _target_part(index: int) -> Callable[[Entry], str]:
    def get(entry: Entry) -> str:
        if entry.head is None:
            return "-"
        parts = entry.head.target.partition(b"?")
        return parts[index].decode("latin-1")

    return get


def _head_attr(get: Callable[[RequestHead], str]) -> Callable[[Entry], str]:
    return lambda entry: "-" if entry.head is None else get(entry.head)


def _header(name: bytes) -> Callable[[Entry], str]:
    return lambda entry: entry.header(name)


FIELDS: dict[str, Callable[[Entry], str]] = {
    "remote_addr": lambda e: e.peer[0] or "-",
    "remote_port": lambda e: e.peer[1] or "-",
    "remote_user": lambda e: "-",
    "time_local": _LocalTime(),
    "time_iso8601": _iso8601,
    "method": _head_attr(lambda h: h.method.decode("latin-1")),
    "target": _head_attr(lambda h: h.target.decode("latin-1")),
    "path": _target_part(0),
    "query": _target_part(2),
    "protocol": _head_attr(lambda h: "HTTP/" + h.version),
    "request": _request,
    "status": lambda e: str(e.status),
    "body_bytes": lambda e: str(e.sent),
    "body_bytes_clf": lambda e: str(e.sent) if e.sent else "-",  # "-" for 0, as Apache's %b
    "referer": _header(b"referer"),
    "user_agent": _header(b"user-agent"),
    "host": _header(b"host"),
    "scheme": lambda e: e.peer[4],
    "request_id": lambda e: e.request_id or "-",
    "app": lambda e: e.app or "-",
    "cache_status": lambda e: e.cache or "-",
    "queue_time": lambda e: _DURATION % (e.dispatched - e.complete),
    "app_time": lambda e: _DURATION % (e.app_done - e.dispatched),
    "request_time": lambda e: _DURATION % (e.ended - e.started),
}
# Fields the json format writes as numbers.
_NUMBERS = {"status", "body_bytes", "queue_time", "app_time", "request_time"}
_JSON_FIELDS = [name for name in FIELDS if name != "body_bytes_clf"]

Line = Callable[[Entry], str]


def compile_format(text: str) -> Line:
    """A function from an Entry to its log line (without newline). ValueError: unknown field."""
    if text == JSON:
        return _json_line
    template = NAMED.get(text, text)
    pieces: list[tuple[str, Callable[[Entry], str] | None]] = []
    for literal, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            pieces.append((literal, None))
            continue
        if spec or conversion:
            raise ValueError(f"format specs are not supported: {{{name}}}")
        pieces.append((literal, _field(name)))

    def line(entry: Entry) -> str:
        out = []
        for literal, getter in pieces:
            out.append(literal)
            if getter is not None:
                out.append(escape(getter(entry)))
        return "".join(out)

    return line


def _field(name: str) -> Callable[[Entry], str]:
    if name.startswith("http_") and len(name) > 5:
        return _header(name[5:].replace("_", "-").encode("latin-1"))
    getter = FIELDS.get(name)
    if getter is None:
        raise ValueError(f"unknown access log field {{{name}}}")
    return getter


def _json_line(entry: Entry) -> str:
    record: dict[str, object] = {}
    for name in _JSON_FIELDS:
        value = FIELDS[name](entry)
        record[name] = float(value) if name in _NUMBERS else value
    record["status"] = entry.status
    record["body_bytes"] = entry.sent
    return json.dumps(record, ensure_ascii=True, separators=(",", ":"))


class AccessLog:
    """Writes lines to a file (or stdout), once per event-loop turn."""

    def __init__(self, path: str, line_format: str, loop: asyncio.AbstractEventLoop) -> None:
        self.path = path
        self.line = compile_format(line_format)
        self.loop = loop
        self.pending: list[str] = []
        self.fd = self._open()

    def _open(self) -> int:
        if self.path == "-":
            return sys.stdout.fileno()
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def reopen(self) -> None:
        """USR1: reopen the file after logrotate moved it."""
        self.flush()
        if self.path != "-":
            os.close(self.fd)
            self.fd = self._open()

    def write(self, exchange: Exchange) -> None:
        self._add(self.line(Entry.of(exchange, self.loop.time())))

    def write_error(self, peer: tuple[str, str, str, str, str], status: int) -> None:
        """A response of the front's own to a request it could not parse (or did not read:
        plain HTTP on a TLS port), from `peer` (Front.peer_info)."""
        self._add(self.line(Entry(None, peer, status, 0, self.loop.time())))

    def _add(self, line: str) -> None:
        pending = self.pending
        pending.append(line)
        if len(pending) == 1:
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        if not self.pending:
            return
        lines, self.pending = self.pending, []
        lines.append("")
        data = "\n".join(lines).encode("utf-8", "backslashreplace")
        try:
            for piece in line_pieces(data, ATOMIC_WRITE):
                while piece:
                    piece = piece[os.write(self.fd, piece) :]
        except OSError:
            pass  # a full disk or a closed stdout must not stop the front serving


# A write of at most this many bytes reaches a pipe whole, never mixed with another writer's.
ATOMIC_WRITE = select.PIPE_BUF


def line_pieces(data: bytes, size: int) -> Iterator[memoryview]:
    """`data` (lines, each ending in a newline) in pieces of at most `size` bytes that end at
    line ends; a line longer than `size` is a piece of its own."""
    view = memoryview(data)
    start, total = 0, len(data)
    while start < total:
        end = start + size
        if end >= total:
            end = total
        else:
            cut = data.rfind(b"\n", start, end)
            end = cut + 1 if cut >= 0 else (data.find(b"\n", end) + 1 or total)
        yield view[start:end]
        start = end
