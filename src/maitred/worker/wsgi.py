"""PEP 3333 in the worker: call the app, turn what it returns into frames.

A request arrives as a REQUEST message (maitred.link.Request), which maitred.worker.environ
turns into the environ; the response leaves as HEAD/BODY/END frames (FULL when the whole body is
known at once), so the front never sees Python objects of the app's. Here: start_response's
checks and the response head (:class:`HeadWriter`), the frames of one response
(:class:`Response`), and the call of the app (:func:`run_app`).
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Protocol

from maitred import link
from maitred.http.errors import ERROR_PAGE_TYPE, error_for
from maitred.http.framing import CONTENT_LENGTH, NO_BODY_STATUSES
from maitred.http.response import REASONS, SERVER, UNKNOWN_REASON, DateCache
from maitred.worker.environ import FileWrapper

log = logging.getLogger("maitred.error")

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse = Callable[..., Callable[[bytes], None]]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class LinkClosed(Exception):
    """The request's client went away, or the front did: stop producing the response."""


class Channel(Protocol):
    """Where a response's frames go (maitred.worker.channel.Channel; a fake in unit tests)."""

    rid: int
    frame_size: int

    def send(self, data: bytes) -> None: ...

    def write_body(self, data: bytes, prefix: bytes = b"") -> None: ...

    def hand_over(self, frame: bytes) -> bool: ...


# Response headers an app must not set: they describe one connection, which the front owns
# (PEP 3333, "Other HTTP Features").
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_STATUS = re.compile(r"[1-5][0-9][0-9] [^\r\n\x00]*")
_BAD_VALUE = re.compile(r"[\r\n\x00]")
_SERVER_LINE = b"\r\nServer: " + SERVER
# wsgi.file_wrapper files at least this large are handed to the front, which sends them with
# sendfile while this thread moves on; a smaller one costs less as BODY frames than the round
# trip of the handover.
HAND_OVER_MIN = 64 * 1024
# Most status lines and header lines a worker keeps checked and encoded (see HeadWriter): far
# more than an app's own set, few enough that varying values cannot grow the cache for ever.
CACHED_LINES = 1024


class HeadWriter:
    """Checks start_response's status and headers (PEP 3333) and writes them as a response head.

    One per worker. An app sends the same few status lines and mostly the same headers on
    every response, so each one checked is kept as its encoded line: the next response that
    has it skips the checks. Bounded, like the environ's header keys: values can vary without
    end (ETag, Set-Cookie). Headers the head writer must act on (Date, Server, the request id)
    are checked every time, never kept; a Content-Length line is kept apart, with its value
    (most responses have one, and an app's pages often have the same few lengths).
    """

    def __init__(self, date: DateCache, id_header: str = "") -> None:
        """`id_header` carries a response's request id, unless the app set it."""
        self._date = date
        self._id_prefix = f"\r\n{id_header}: ".encode("latin-1")
        self._id_lower = id_header.lower()
        self._statuses: dict[str, tuple[bytes, int]] = {}
        self._lines: dict[tuple[str, str], bytes] = {}
        self._lengths: dict[tuple[str, str], tuple[bytes, int]] = {}

    def head(
        self, status: str, headers: list[tuple[str, str]], request_id: str = ""
    ) -> tuple[bytes, int, int]:
        """The head without its final CRLF, the status code, and the Content-Length or -1."""
        if type(status) is not str:
            raise AssertionError(f"invalid status {status!r}")
        known = self._statuses.get(status)
        status_line, code = known if known is not None else self._status(status)
        if type(headers) is not list:
            raise AssertionError(f"headers must be a list, not {type(headers).__name__}")
        lines = [status_line, _SERVER_LINE]
        length = -1
        has_date = False
        id_lower = self._id_lower if request_id else ""
        has_id = not id_lower
        cache, lengths = self._lines, self._lengths
        for item in headers:
            if type(item) is not tuple or len(item) != 2:
                raise AssertionError(f"header {item!r} is not a (name, value) tuple")
            name, value = item
            hashable = type(name) is str and type(value) is str
            line = cache.get(item) if hashable else None
            if line is None:
                counted = lengths.get(item) if hashable else None
                if counted is not None:
                    line, length = counted
                    lines.append(line)
                    continue
                lowered, line = self._line(name, value)
                if lowered == "content-length":
                    length = int(value)
                    if len(lengths) < CACHED_LINES:
                        lengths[item] = line, length
                elif lowered == "date":
                    has_date = True
                elif lowered == id_lower:
                    has_id = True
                elif lowered == "server":
                    lines[1] = b"\r\nServer: " + value.encode("latin-1")  # the app's wins
                    continue
                elif lowered != self._id_lower and len(cache) < CACHED_LINES:
                    cache[item] = line
            lines.append(line)
        if not has_date:
            lines += (b"\r\nDate: ", self._date.get())
        if not has_id:
            lines += (self._id_prefix, request_id.encode("latin-1"))
        lines.append(b"\r\n")
        return b"".join(lines), code, length

    def _status(self, status: str) -> tuple[bytes, int]:
        if not _STATUS.fullmatch(status):
            raise AssertionError(f"invalid status {status!r}")
        known = b"HTTP/1.1 " + status.encode("latin-1"), int(status[:3])
        if len(self._statuses) < CACHED_LINES:
            self._statuses[status] = known
        return known

    def _line(self, name: Any, value: Any) -> tuple[str, bytes]:
        """A header's lowered name and its line, once checked."""
        if type(name) is not str or not _TOKEN.fullmatch(name):
            raise AssertionError(f"invalid header name {name!r}")
        if type(value) is not str or _BAD_VALUE.search(value):
            raise AssertionError(f"invalid value for header {name!r}: {value!r}")
        lowered = name.lower()
        if lowered in HOP_BY_HOP:
            raise AssertionError(f"hop-by-hop header {name!r} is not allowed in WSGI")
        if lowered == "content-length" and not value.strip().isdigit():
            raise AssertionError(f"invalid Content-Length {value!r}")
        return lowered, b"\r\n" + name.encode("latin-1") + b": " + value.encode("latin-1")


class Response:
    """One response: start_response, write(), and the frames they become on its channel.

    The channel raises LinkClosed when the client or the front is gone. Once the response has
    ended (END, FULL or ABORT went out) the front no longer holds its request, and a frame
    more for it would be a protocol violation that closes the whole link: nothing more is
    sent, whatever the app does after (more data, an exception in close()).
    """

    __slots__ = (
        "_channel",
        "_head",
        "_heads",
        "_length",
        "_request_id",
        "_status",
        "_suppress_body",
        "ended",
        "head_sent",
        "sent",
        "status_code",
    )

    def __init__(
        self,
        channel: Channel,
        heads: HeadWriter,
        head_request: bool,
        request_id: str = "",
    ) -> None:
        """`request_id` goes out in the head (see HeadWriter) unless the app set it."""
        self._channel = channel
        self._heads = heads
        self._request_id = request_id
        self._head = b""
        self._status = ""
        self._length = -1  # declared Content-Length, -1 when the app gave none
        self._suppress_body = head_request
        self.status_code = 0
        self.head_sent = False
        self.ended = False  # END, FULL or ABORT went out: the front is done with the request
        self.sent = 0

    def start_response(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: ExcInfo | None = None,
    ) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # break the frame <-> traceback cycle (PEP 3333)
        elif self._status:
            raise AssertionError("start_response called a second time without exc_info")
        self._head, self.status_code, self._length = self._heads.head(
            status, headers, self._request_id
        )
        self._status = status
        if self.status_code in NO_BODY_STATUSES:
            self._suppress_body = True
        return self.write

    def _require_head(self) -> None:
        if not self._status:
            raise AssertionError("the app produced a body before calling start_response")

    def write(self, data: bytes) -> None:
        """Send body data now: the PEP 3333 write() callable, and the path for iterables."""
        if type(data) is not bytes:
            raise AssertionError(f"body data must be bytes, not {type(data).__name__}")
        self._require_head()
        if self.ended:
            if data:
                log.warning("app sent data after its whole Content-Length; it is dropped")
            return
        channel = self._channel
        head = b""
        if not self.head_sent:
            self.head_sent = True
            head = link.encode_head(channel.rid, self.status_code, self._length, self._head)
        if data and not self._suppress_body:
            if self._length >= 0 and self.sent + len(data) > self._length:
                log.warning("app sent more than its Content-Length; the excess is dropped")
                data = data[: self._length - self.sent]
            self.sent += len(data)
            channel.write_body(data, head)
        elif head:
            channel.send(head)

    def finish(self) -> None:
        """The body is complete: END, or ABORT when it fell short of its Content-Length."""
        self._require_head()
        if self.ended:
            return
        if not self.head_sent:
            self.send_full(b"")
            return
        short = self._length >= 0 and self.sent < self._length and not self._suppress_body
        if short:
            log.error("app sent %d of its %d-byte Content-Length", self.sent, self._length)
        encode = link.encode_abort if short else link.encode_end
        self._channel.send(encode(self._channel.rid))
        self.ended = True  # once sent: a refused send leaves the thread to free (worker.main)

    def send_full(self, body: bytes) -> None:
        """The whole response in one frame; adds Content-Length when the app gave none."""
        self._require_head()
        head, length = self._head, self._length
        if self.status_code in NO_BODY_STATUSES:
            body = b""
        elif length < 0:
            length = len(body)  # for HEAD too: the length GET would have had
            head += CONTENT_LENGTH % length
            self._head, self._length = head, length
        if not self._suppress_body and (
            len(body) != length or len(body) > self._channel.frame_size
        ):
            # A body too large for one frame goes as a flow-controlled stream; one that
            # disagrees with its Content-Length too, so the client sees the truncation.
            self.write(body)
            self.finish()
            return
        if self._suppress_body:
            body = b""
        self.head_sent = True
        self.sent = len(body)
        channel = self._channel
        channel.send(link.encode_full(channel.rid, self.status_code, length, head, body))
        self.ended = True

    def send_file(self, filelike: Any) -> bool:
        """Send a wsgi.file_wrapper file without reading it here, when it is a regular file.

        The front opens the same open file (FILE frame; see maitred.front.sendfile) and sends it
        with sendfile, so this thread is free at once. A HEAD is answered from the file's size.
        False when the file cannot go that way; the caller then iterates the wrapper.
        """
        if self.head_sent or not self._status or self.status_code in NO_BODY_STATUSES:
            return False
        try:
            fd = filelike.fileno()
            st = os.fstat(fd)
            offset = filelike.tell()
        except (AttributeError, OSError, ValueError):  # no fileno (BytesIO), closed, pipes
            return False
        available = st.st_size - offset
        head, length = self._head, self._length
        if length < 0:
            length = available
            head += CONTENT_LENGTH % length
        elif available < length:
            return False  # short of its Content-Length: streamed, so the client sees it cut
        if not stat.S_ISREG(st.st_mode) or (length < HAND_OVER_MIN and not self._suppress_body):
            return False
        self._head, self._length = head, length
        if self._suppress_body:
            self.send_full(b"")
            return True
        channel = self._channel
        frame = link.encode_file(
            channel.rid, self.status_code, length, head, fd, st.st_dev, st.st_ino, offset
        )
        if not channel.hand_over(frame):
            return False
        self.head_sent = True
        self.sent = length
        channel.send(link.encode_end(channel.rid))  # the front has it: this thread is free
        self.ended = True
        return True

    def abort(self) -> None:
        """Free the thread with the response unfinished, unless it has ended already."""
        if not self.ended:
            self._channel.send(link.encode_abort(self._channel.rid))
            self.ended = True

    def completes(self, data: bytes) -> bool:
        """Whether `data`, as the first body bytes, is the whole body its Content-Length
        declares: then it can go out in one FULL frame, before the app's iterable stops."""
        return not self.head_sent and len(data) == self._length and type(data) is bytes

    def error(self, status: int) -> None:
        """A plain-text error response of the server's own (the app failed): the page the
        front's errors have (maitred.http.errors), with the head this worker writes."""
        error = error_for(status)
        reason = REASONS.get(status, UNKNOWN_REASON).decode("latin-1")
        self.start_response(f"{status} {reason}", [("Content-Type", ERROR_PAGE_TYPE)])
        self.send_full(error.body)


# Iterators over items that all exist already (a list's, a tuple's): a response object that
# iterates a list of its own (Django's HttpResponse does) can go out whole, as a list does,
# with no chunk held back from a client that waits for it.
WHOLE_ITERATORS: tuple[type, ...] = (type(iter([])), type(iter(())))


def run_app(app: WSGIApp, environ: dict[str, Any], response: Response) -> None:
    """Call the app and send its whole response; closes the iterable on every path.

    A body whose chunks all exist when the app returns (a list, or an object over one) goes
    as one FULL frame: one send here, one message for the front, where streaming it would
    cost a HEAD+BODY and an END. Anything else streams, each chunk sent as it comes.

    Raises LinkClosed when the front went away, and whatever the app raised (after the
    iterable is closed); the caller turns the latter into a 500 or an abort.
    """
    result = app(environ, response.start_response)
    try:
        if type(result) is list and not response.head_sent:
            _send_whole(response, result)
        elif type(result) is FileWrapper and response.send_file(result.filelike):
            pass  # the front sends the file
        else:
            items = iter(result)
            if type(items) in WHOLE_ITERATORS and not response.head_sent:
                _send_whole(response, list(items))
            else:
                _stream(response, items)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()


def _stream(response: Response, items: Iterator[bytes]) -> None:
    """Each chunk sent as the app gives it, then END.

    A first chunk that is the whole body its Content-Length declares goes out at once as one
    FULL frame, head, body and end, rather than HEAD+BODY then END once the iterable stops:
    nothing is held back (the client has its whole response), and the common small response
    of an iterable that is not a list (Werkzeug's, Flask's: a ClosingIterator over a
    generator) costs one send and one message for the front. The iterable is still run to
    its end and closed; anything it yields after is past the Content-Length, and dropped.
    """
    write = response.write
    for data in items:
        if not data:
            continue  # PEP 3333: the head waits for the first non-empty chunk
        if response.completes(data):
            response.send_full(data)
        else:
            write(data)
    response.finish()


def _send_whole(response: Response, chunks: list[bytes]) -> None:
    """A body whose chunks are all there: joined, in one frame (Response.send_full)."""
    if len(chunks) == 1 and type(chunks[0]) is bytes:
        body = chunks[0]
    else:
        for item in chunks:
            if type(item) is not bytes:
                raise AssertionError(f"body item must be bytes, not {type(item)}")
        body = b"".join(chunks)
    response.send_full(body)
