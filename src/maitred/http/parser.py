"""Sans-IO HTTP/1.1 request parser on llhttp (httptools), with our limits and strictness.

Feed it bytes; it returns the events those bytes completed, in order:

* a :class:`RequestHead` when a request's head is complete,
* ``bytes`` for each piece of decoded body (chunked framing already removed),
* :data:`END` when the request's message is complete.

Anything the client got wrong raises a :class:`~maitred.http.errors.ProtocolError` carrying the
status to answer; the connection is then unusable (framing is lost) and must be closed.

llhttp is strict by default and already refuses most request-smuggling material: Content-Length
together with Transfer-Encoding, duplicate Content-Length, whitespace before a colon, obs-fold,
bare LF line ends, control bytes in values, a Transfer-Encoding whose last coding is not chunked.
On top of it we enforce the size limits, the HTTP version, one well-formed Host in HTTP/1.1,
a Transfer-Encoding of exactly ``chunked`` (and none in HTTP/1.0), no fragment in the target and
``*`` only for OPTIONS. Bytes that make no progress (chunk extensions, trailers) are bounded
like a head, since llhttp would buffer a trailer field whole. One thing llhttp refuses that
HTTP allows, a tab after ``Transfer-Encoding: chunked``, is read as the space it stands for
(see :mod:`maitred.http.chunkedows`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import httptools

from maitred.http.chunkedows import CONTEXT, candidate_tabs
from maitred.http.errors import (
    BodyTooLarge,
    HeaderFieldsTooLarge,
    NotImplementedFraming,
    ProtocolError,
    RequestLineTooLong,
)
from maitred.http.request import END, Event, Headers, Limits, RequestHead, RequestReader

# What the parser makes, said once in maitred.http.request (the gateways make the same).
__all__ = ["END", "Event", "Headers", "Limits", "RequestHead", "RequestParser", "RequestReader"]

_TAB = 0x09
_SPACE = 0x20
_VERSIONS = frozenset({"1.0", "1.1"})
# RFC 9110 section 7.2 (uri-host [":" port]): an IP literal, or reg-name / IPv4 characters.
# Anything else (spaces, "/", "@", quotes) is a host-header injection attempt or garbage.
_HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?")


class RequestParser:
    """Parses the requests of one connection, in order. Not thread-safe; one per connection."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._parser = httptools.HttpRequestParser(self)
        self._events: list[Event] = []
        self._url = b""
        self._headers: Headers = []
        # True while a request head has begun but is not complete. Read by the front on every
        # read (front/slots.py): an attribute, as a property would be a Python call; only the
        # parser sets it.
        self.in_head = False
        self._head_bytes = 0
        self._body_bytes = 0
        self._head: RequestHead | None = None  # the request whose body is being read
        self._head_tail = b""  # the end of an incomplete head, as fed (see _execute_tabs)
        self._stalled = 0  # bytes fed since the last event
        self._valid_host: bytes | None = None  # the last Host value that passed _check_host
        self.messages = 0  # requests begun on this connection (a head's identity for timers)
        self.closed = False  # after an upgrade or CONNECT: no further requests on this stream

    def feed(self, data: bytes) -> list[Event]:
        """The events `data` completed, in order.

        A ProtocolError carries, as ``events``, those completed before the mistake: requests a
        client pipelined ahead of a bad one are still answered, in order, before the error.
        """
        if self.closed:
            return []
        try:
            if self._head is not None and self._head.content_length is not None:
                data = self._take_body(data)
            if data and not self.closed:
                self._feed(data)
        except ProtocolError as exc:
            exc.events, self._events = self._events, []
            raise
        events, self._events = self._events, []
        return events

    def _feed(self, data: bytes) -> None:
        continues_head = self.in_head
        head = self._head
        # Only a tab may need reading as a space (see maitred.http.chunkedows), most data has
        # none, and the rest of a body holds no head: a chunked one is not searched at all.
        # `in` with an int is a bare memchr: cheaper than find, which builds an argument tuple.
        if head is None:
            start = 0 if _TAB in data else -1
        elif head.content_length is None:
            start = -1
        else:
            start = head.content_length - self._body_bytes
            start = start if data.find(_TAB, start) != -1 else -1
        if start == -1:
            try:
                self._parser.feed_data(data)
            except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
                self._stopped(exc)
        else:
            data = self._execute_tabs(data, start, continues_head)
        if self.in_head:
            self._head_bytes += len(data)
            if self._head_bytes > self._limits.head:
                raise HeaderFieldsTooLarge("request head too large")
            # Kept only while a head is incomplete: the next piece may go on with its line.
            self._head_tail = ((self._head_tail if continues_head else b"") + data)[-CONTEXT:]
        if self._events:
            self._stalled = 0
        else:
            self._stalled += len(data)
            if self._stalled > self._limits.head:
                raise HeaderFieldsTooLarge("chunk extensions or trailers too large")

    def _take_body(self, data: bytes) -> bytes:
        """Take the rest of a Content-Length body from `data` as it came, past llhttp: the
        bytes left after it (the next request's).

        A body announced by its length holds no framing, so there is nothing to parse in it:
        llhttp would only count it, and hand each piece to on_body as a new bytes object, a
        copy of every byte of an upload and a Python call per piece. Here a read that is all
        body becomes the event itself, uncopied. llhttp, which last saw a part of the body,
        cannot go on from where this ends: the next request starts a parser of its own.
        """
        head = self._head
        assert head is not None and head.content_length is not None
        left = head.content_length - self._body_bytes
        size = len(data)
        if size < left:
            if size:
                self.on_body(data)
            return b""
        if left:  # else the body's last bytes were taken by the caller (body_taken)
            self.on_body(data if size == left else data[:left])
        self.on_message_complete()
        if head.keep_alive:
            self._parser = httptools.HttpRequestParser(self)
        else:
            # llhttp would refuse any byte after it (or read on as another protocol, after
            # an upgrade): no request follows on this stream.
            self.closed = True
        return data[left:] if size > left else b""

    @property
    def body_left(self) -> int:
        """Bytes still to come of the Content-Length body being read (0: none is)."""
        head = self._head
        if head is None or head.content_length is None:
            return 0
        return head.content_length - self._body_bytes

    def body_taken(self, size: int) -> None:
        """`size` bytes of the body being read were received by the caller, straight into a
        buffer of its own (maitred.front.bodyread): they make no event. Once they complete it,
        the next feed, even of no bytes, ends the request (END)."""
        assert 0 < size <= self.body_left
        self._body_bytes += size

    def _execute(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._stopped(exc)

    def _stopped(self, exc: Exception) -> None:
        """llhttp stopped at an upgrade or an error: note the one, raise the other as ours."""
        if isinstance(exc, httptools.HttpParserUpgrade):
            # The head is complete and the message is over; what follows is not HTTP/1.1.
            # WSGI cannot hand the stream to the app, so this is the last request served.
            self.closed = True
        elif isinstance(exc, httptools.HttpParserCallbackError):
            cause = exc.__context__
            if isinstance(cause, ProtocolError):
                raise cause from None
            raise exc
        elif isinstance(exc, httptools.HttpParserInvalidMethodError):
            raise ProtocolError("invalid method") from None
        elif isinstance(exc, httptools.HttpParserInvalidURLError):
            raise ProtocolError("invalid request target") from None
        else:
            raise ProtocolError(str(exc) or "malformed request") from None

    def _execute_tabs(self, data: bytes, start: int, continues_head: bool) -> bytes:
        """Feed `data`, which may hold a head from `start` on, reading a tab after
        ``Transfer-Encoding: chunked`` as a space (see :mod:`maitred.http.chunkedows`).
        Returns the bytes as llhttp got them."""
        fed = bytearray(data)
        pos = 0
        for tab in candidate_tabs(self._head_tail if continues_head else b"", data, start):
            self._execute(data[pos:tab])
            pos = tab
            if self.closed:
                return bytes(fed)  # an upgrade: what follows is not HTTP/1.1
            if not self.in_head:
                break  # a lookalike in a body: the rest goes in one call
            fed[tab] = _SPACE
            self._execute(b" ")
            pos = tab + 1
        self._execute(data[pos:])
        return bytes(fed)

    # --- llhttp callbacks (called from inside feed_data) ---

    def on_message_begin(self) -> None:
        self.messages += 1
        self.in_head = True
        self._head_bytes = 0
        self._url = b""
        self._headers = []

    def on_url(self, url: bytes) -> None:
        self._url += url  # may arrive in pieces
        if len(self._url) > self._limits.request_line:
            raise RequestLineTooLong("request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.in_head:
            return  # a trailer field of a chunked body: not passed to the app
        headers = self._headers
        headers.append((name, value))
        if len(headers) > self._limits.fields:
            raise HeaderFieldsTooLarge("too many header fields")
        if len(name) + len(value) > self._limits.field_size:
            raise HeaderFieldsTooLarge("header field too large")

    def on_headers_complete(self) -> None:
        parser = self._parser
        version = parser.get_http_version()
        if version not in _VERSIONS:
            raise ProtocolError(f"HTTP version {version} not supported", 505)
        head = RequestHead(
            parser.get_method(), self._url, version, self._headers, parser.should_keep_alive()
        )
        fields = head.fields
        expectations = fields.get(b"expect")
        if expectations is not None:
            for value in expectations:
                if value.lower() != b"100-continue":
                    raise ProtocolError("unsupported expectation", 417)
            head.expect_continue = version == "1.1"
        lengths = fields.get(b"content-length")
        if lengths is not None:
            head.content_length = int(lengths[0])  # llhttp checked the digits and duplicates
        self._check_host(fields.get(b"host", ()), version)
        _check_target(head.method, head.target)
        codings = fields.get(b"transfer-encoding")
        if codings is not None:
            # Several fields form one list (RFC 9110 section 5.3).
            head.chunked = _chunked(b",".join(codings).split(b","), version)
        head.upgrade = parser.should_upgrade()
        if head.upgrade:
            head.keep_alive = False
        self.in_head = False
        self._body_bytes = 0
        self._head = head
        limit = self._limits.body
        if limit and head.content_length is not None and head.content_length > limit:
            # The head still goes out, ahead of the error: the 413 answers a known request
            # (its location, id and access log line). No 100 Continue for a body refused.
            head.expect_continue = False
            self._events.append(head)
            raise BodyTooLarge("request body too large")
        self._events.append(head)

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        limit = self._limits.body
        if limit and self._body_bytes > limit:
            raise BodyTooLarge("request body too large")
        self._events.append(body)

    def on_message_complete(self) -> None:
        self._head = None
        self._events.append(END)

    def _check_host(self, hosts: Sequence[bytes], version: str) -> None:
        if len(hosts) > 1 or (not hosts and version == "1.1"):
            raise ProtocolError("HTTP/1.1 requests need exactly one Host header")
        if hosts and hosts[0] != self._valid_host:
            if not _HOST.fullmatch(hosts[0].rstrip(b" \t")):  # llhttp keeps trailing OWS
                raise ProtocolError("malformed Host header")
            # A client sends the same Host on every request: the pattern is matched once.
            self._valid_host = hosts[0]


def _check_target(method: bytes, target: bytes) -> None:
    """What llhttp lets through: a fragment (never sent by a client: where would the path end?)
    and ``*`` with a method other than OPTIONS."""
    # find, not `in`: CPython's bytes `in` first tries its operand as an integer, making and
    # dropping a TypeError on the way, at several times the cost of the search itself.
    if target.find(b"#") != -1:
        raise ProtocolError("fragment in the request target")
    if target == b"*" and method != b"OPTIONS":
        raise ProtocolError("asterisk-form target with a method other than OPTIONS")


def _chunked(codings: list[bytes], version: str) -> bool:
    """True when the transfer codings (in order) are exactly ``chunked``; raises otherwise."""
    if version == "1.0":
        # RFC 9112 section 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
        raise ProtocolError("Transfer-Encoding in an HTTP/1.0 request")
    if codings[-1].strip().lower() != b"chunked":
        # RFC 9112 section 6.3: the body's length cannot be known; 400 and close.
        raise ProtocolError("chunked is not the final transfer coding")
    if len(codings) > 1:
        raise NotImplementedFraming("only Transfer-Encoding: chunked is supported")
    return True
