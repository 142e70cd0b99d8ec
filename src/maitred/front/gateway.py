"""Connections from a proxy that speaks uwsgi or FastCGI (nginx's uwsgi_pass, fastcgi_pass).

Theory of operation
-------------------
A gateway connection is a :class:`~maitred.front.connection.ClientConnection` in all but the
wire: its requests go through the same states, exchanges, router, dispatcher, slots, timeouts
and access log; only what reads requests and frames responses differs.

* **Requests in**: the protocol's sans-IO parser (maitred.gateway.uwsgi, maitred.gateway.fastcgi)
  makes the HTTP parser's events. Each head carries the proxy's variables, from which the
  exchange's peer is taken (maitred.gateway.params: REMOTE_ADDR and HTTPS only from a peer
  that passes --forwarded-allow-ips), so the router and the access log see the client.
* **Bad packets**: a packet or record that cannot be read cannot be answered either (there is
  no request to frame an answer in), so the connection is closed and one line logged
  (:meth:`GatewayConnection._protocol_error`); a request whose body it cut short is logged
  as one cut short over HTTP (400), so nothing read goes unanswered and unlogged. A request
  whose head was read and that will not run (a body over --limit-request-body, refused by a
  rule, or arriving slower than --body-timeout allows) is answered first (413, 403, 408...),
  framed for the protocol, as HTTP answers it.
* **uwsgi**: one request per connection; the response is HTTP as the worker wrote it, its body
  up to the close (maitred.gateway.uwsgi.uwsgi_frame). Files go out with sendfile as for HTTP.
* **FastCGI**: everything written goes out as STDOUT records of the request being answered
  (:meth:`FastCGIConnection.write`), its status line spelt as a CGI ``Status:`` field; when
  the response is over, an empty STDOUT and END_REQUEST follow, and the connection stays open
  for the next request only if the web server asked (KEEP_CONN). The front's file senders
  (wsgi.file_wrapper, static files, response spools) see a :class:`RecordTransport` with no
  socket, so they read the file in the front in pieces and write them through it, as records,
  instead of sendfile(2) past the records.

Owned by the event loop thread.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, cast

from maitred import sockets
from maitred.front.connection import ClientConnection
from maitred.front.exchange import BODY_CUT_SHORT, Exchange
from maitred.front.rules import Refusal
from maitred.front.states import READS
from maitred.gateway import fastcgi
from maitred.gateway.fastcgi import FastCGIParser, RequestAborted, fastcgi_frame
from maitred.gateway.params import GatewayError, GatewayHead, peer_from_params
from maitred.gateway.uwsgi import UwsgiParser, uwsgi_frame
from maitred.http.errors import ProtocolError
from maitred.http.parser import Limits, RequestReader

if TYPE_CHECKING:
    from maitred.front.main import Front

log = logging.getLogger("maitred.error")

# What a worker's status line starts with ("HTTP/1.1"), replaced by "Status:" for FastCGI.
STATUS_LINE_START = len(b"HTTP/1.1")
CGI_STATUS = b"Status:"


class GatewayConnection(ClientConnection):
    """What uwsgi and FastCGI connections share: the peer from the proxy's variables, and a
    bad packet closes the connection."""

    protocol = ""  # for the log

    def admit(self, exchange: Exchange) -> Refusal | None:
        head = exchange.head
        assert isinstance(head, GatewayHead)
        trusted = self.front.router.trusted(self.peer[0])
        exchange.peer = peer_from_params(head.params, self.peer, trusted)
        return super().admit(exchange)  # the rules judge the client the proxy names

    def _protocol_error(self, exc: ProtocolError) -> None:
        if self.state not in READS:
            return  # it closed meanwhile: the bytes belong to nobody
        refused, self.reading = self.reading, None
        if refused is not None and self.active is None and not isinstance(exc, GatewayError):
            # Its head was read, so an answer can be framed: too large, refused, too slow.
            log.info("%s request from %s refused: %s", self.protocol, self.peer[0], exc.reason)
            self.refuse(exc, refused)
        else:
            if refused is not None:  # its body is cut short: logged as over HTTP, not lost
                refused.status = BODY_CUT_SHORT
                refused.cancel()
            log.warning(
                "closing a %s connection from %s: %s",
                self.protocol,
                self.peer[0] or "a unix socket",
                exc.reason,
            )
        self.close()

    def refuse(self, error: ProtocolError, refused: Exchange | None) -> None:
        """Answer a request that will not run (its body is too large or too slow, a rule
        refused it)."""
        self.answer_error(error, refused)


class UwsgiConnection(GatewayConnection):
    """A uwsgi_pass connection: one request, the response in HTTP up to the close."""

    protocol = "uwsgi"
    frame = staticmethod(uwsgi_frame)

    def new_parser(self, limits: Limits) -> RequestReader:
        return UwsgiParser(limits)


class RecordTransport:
    """A FastCGI connection's transport as the front's file senders see it: what they write
    goes out as STDOUT records (through the connection), and it shows no socket to sendfile
    to. Everything else is the transport's."""

    def __init__(self, transport: asyncio.Transport, conn: FastCGIConnection) -> None:
        self._transport = transport
        self._conn = conn

    def write(self, data: bytes) -> None:
        self._conn.write(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":
            return default
        return self._transport.get_extra_info(name, default)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class FastCGIConnection(GatewayConnection):
    """A fastcgi_pass connection: requests one at a time, responses as records."""

    protocol = "FastCGI"
    frame = staticmethod(fastcgi_frame)
    parser: FastCGIParser

    def __init__(self, front: Front) -> None:
        super().__init__(front)
        self.raw: asyncio.Transport | None = None  # the socket's transport, for whole records
        self.at_head = True  # the next write begins a response: its status line is respelt

    def new_parser(self, limits: Limits) -> RequestReader:
        return FastCGIParser(limits, self.front.cfg.max_connections)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.raw = raw = cast(asyncio.Transport, transport)
        self.transport = cast(asyncio.Transport, RecordTransport(raw, self))

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.raw = None

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        replies = self.parser.replies
        if replies:
            self._write_records(replies)
            replies.clear()

    def _write_records(self, records: list[bytes]) -> None:
        raw = self.raw
        if raw is not None and not raw.is_closing():
            raw.writelines(records)

    def write(self, data: bytes) -> None:
        request_id = self.parser.request_id
        if not request_id or not data:
            return  # no request to answer (a newcomer turned away): nothing can be framed
        if self.at_head:
            self.at_head = False
            data = CGI_STATUS + data[STATUS_LINE_START:]
        self._write_records(fastcgi.stdout_records(request_id, data))

    def exchange_done(self, exchange: Exchange) -> None:
        if exchange is self.active:
            self._end_request()
        super().exchange_done(exchange)

    def refuse(self, error: ProtocolError, refused: Exchange | None) -> None:
        super().refuse(error, refused)
        self._end_request()

    def _end_request(self) -> None:
        """The response is out (unless the connection was cut to show it unfinished)."""
        request_id = self.parser.request_id
        if request_id:
            self._write_records(
                [fastcgi.record(fastcgi.STDOUT, request_id, b""), fastcgi.end_request(request_id)]
            )
        self.parser.request_done()
        self.at_head = True

    def _protocol_error(self, exc: ProtocolError) -> None:
        if isinstance(exc, RequestAborted):
            log.debug("FastCGI request aborted by %s", self.peer[0] or "a unix socket")
            self._write_records([fastcgi.end_request(exc.request_id)])
            self.parser.request_done()
            self.close()  # cancels the request wherever it is (ClientConnection._abandon)
            return
        super()._protocol_error(exc)


# The connection class of each protocol a listener may speak besides HTTP (maitred.sockets).
GATEWAYS: dict[str, type[ClientConnection]] = {
    sockets.UWSGI: UwsgiConnection,
    sockets.FASTCGI: FastCGIConnection,
}
