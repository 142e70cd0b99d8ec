"""TLS in the front: handshakes in the event loop, then HTTP over the secure transport.

Theory of operation
-------------------
A connection accepted on a TLS listener (maitred.tls says which) starts as a
:class:`TLSHandshake`: a protocol that hands the raw transport to the loop's own TLS machinery
(``loop.start_tls``, in asyncio and in uvloop alike) with the context in use *now*, bounded by
--handshake-timeout. The handshake runs in the front's event loop: a client that connects and
sends nothing, or sends garbage instead of a ClientHello, costs a descriptor and a little memory
until it fails or times out, never a worker thread, and its end is one debug line (the loops
themselves log nothing about it, and nothing reaches the exception handler).

While it lasts the handshake counts as an open connection for the accept gate
(:class:`OpenConnections`, front/accept.py), so a flood of silent clients makes the front stop
accepting at --max-connections instead of running out of descriptors; it holds no slot that a
newcomer could take (front/slots.py), since it has no request to lose, only a timeout to meet.

What the client sends first decides (:meth:`TLSHandshake._first_bytes`), as in nginx: a TLS
record (0x16, or a byte with the high bit set for an old SSLv2-style hello) starts the handshake;
the start of an HTTP request line (a letter) means plain HTTP sent to the HTTPS port, which gets
nginx's answer, a plain-text 400 saying so, closed with a lingering close (front/linger.py) so
the client reads it; anything else is closed. Until its first bytes a connection has started
nothing, and --handshake-timeout counts from the accept, the wait for them included.

Once the handshake is done, a :class:`~maitred.front.connection.ClientConnection` takes over
the secure transport exactly as it would a plain one; its peer says https (Front.peer_info) and
it carries the subject of a verified client certificate to the worker (SSL_CLIENT_S_DN). It
holds the secure transport through front/tlsclose.py, which closes without waiting for the
client's close_notify. Application data that came with the end of the handshake (a TLS 1.3
client sends its request at once) reaches this protocol before the handover, so it is kept and
handed over too.

Certificate rotation: :meth:`FrontTLS.reload` (SIGHUP from the master, which checked the files
first) builds a new context from the files; new handshakes use it, and connections already open
keep the one they were made with. If the files cannot be loaded the context in use stays and the
log says why.

ALPN: only http/1.1 is offered (maitred.tls.ALPN_PROTOCOLS); :meth:`TLSHandshake._serve` is
where a negotiated "h2" would choose another protocol.

Owned by the event loop thread.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import socket
import ssl
from collections.abc import Sized
from typing import TYPE_CHECKING, cast

from maitred import tls
from maitred.config import Config
from maitred.front.connection import ClientConnection
from maitred.front.linger import Linger
from maitred.front.tlsclose import SecureTransport
from maitred.http.errors import HTTPError

if TYPE_CHECKING:
    from maitred.front.main import Front

log = logging.getLogger("maitred.error")

# The first byte of a TLS record carrying a handshake message (RFC 8446 section 5.1), and the
# bit an SSLv2-style record header sets: what nginx looks for before it starts a handshake.
TLS_HANDSHAKE_RECORD = 0x16
SSLV2_HEADER_BIT = 0x80
# The handshake timeout of both loops when none is given: what --handshake-timeout 0 means.
LOOP_HANDSHAKE_TIMEOUT = 60.0


class PlainHTTPToHTTPS(HTTPError):
    """The answer to plain HTTP on a TLS listener, in nginx's words."""

    status = 400

    @property
    def body(self) -> bytes:
        return b"400 Bad Request\nThe plain HTTP request was sent to HTTPS port\n"


PLAIN_HTTP = PlainHTTPToHTTPS()


class FrontTLS:
    """A front's TLS: the context new handshakes use, its TLS listeners, and the handshakes
    under way."""

    def __init__(self, cfg: Config, context: ssl.SSLContext, listeners: list[socket.socket]):
        self.cfg = cfg
        self.context = context
        self.listeners = frozenset(sock.fileno() for sock in listeners)
        self.handshakes: set[TLSHandshake] = set()

    def serves(self, listener: socket.socket) -> bool:
        return listener.fileno() in self.listeners

    def reload(self) -> None:
        """HUP: load the certificate and key again, for the connections made from now on."""
        try:
            context = tls.build_context(self.cfg)
        except tls.TLSError as exc:
            log.error("front: keeping the certificate in use: %s", exc)
            return
        self.context = context
        log.info("front: certificate loaded again from %s", self.cfg.certfile)


class OpenConnections(Sized):
    """What the accept gate counts: the connections and the handshakes under way."""

    def __init__(self, connections: Sized, handshakes: Sized) -> None:
        self.connections = connections
        self.handshakes = handshakes

    def __len__(self) -> int:
        return len(self.connections) + len(self.handshakes)


class Phase(enum.Enum):
    FIRST = "first"  # nothing has arrived yet, nothing started: the first bytes decide
    RAW = "raw"  # what arrives is the client's TLS records: they belong to the handshake
    SECURE = "secure"  # the loop's TLS protocol reads the socket; what arrives is plaintext
    REFUSED = "refused"  # no handshake: closed, or lingering after the plain-HTTP answer


class TLSHandshake(asyncio.Protocol):
    """A TLS connection's protocol until its handshake is done; then the ClientConnection's.

    It is the raw transport's protocol from the accept until ``loop.start_tls`` takes the
    transport over, and the secure transport's from then until the handover. The handshake
    starts on the client's first bytes (:meth:`_first_bytes`), which are then replayed into the
    loop's TLS protocol once it has the transport (:meth:`_take_over`), before anything else is
    read from the socket; so are any more that arrive before start_tls takes over.
    """

    def __init__(self, front: Front, state: FrontTLS) -> None:
        self.front = front
        self.state = state
        self.peer = ""
        self.phase = Phase.FIRST
        self.raw: asyncio.BaseTransport | None = None  # the socket's own transport
        self.first: list[bytes] = []  # the handshake's first bytes, read before start_tls
        self.early: list[bytes] = []  # plaintext that came before the handover
        self.eof = False
        self.lost = False
        self.deadline = 0.0  # loop time: --handshake-timeout from the accept
        self.waiting: asyncio.TimerHandle | None = None  # for the first bytes
        self.linger: Linger | None = None  # Phase.REFUSED: the answer is being read

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else "a unix socket"
        self.raw = transport
        self.state.handshakes.add(self)
        if self.front.gate is not None:
            self.front.gate.update()  # the front may be at --max-connections now
        loop = self.front.loop
        self.deadline = loop.time() + (self.state.cfg.handshake_timeout or LOOP_HANDSHAKE_TIMEOUT)
        self.waiting = loop.call_at(self.deadline, self._give_up, "timed out")

    def _first_bytes(self, data: bytes) -> None:
        """What the client sent first says what it speaks (see the module docstring)."""
        assert self.waiting is not None
        self.waiting.cancel()
        first = data[0]
        if first == TLS_HANDSHAKE_RECORD or first & SSLV2_HEADER_BIT:
            self.first.append(data)
            self._start()
        elif chr(first).isalpha():
            self._answer_plain(data)
        else:
            self._give_up("not TLS")

    def _start(self) -> None:
        self.phase = Phase.RAW
        loop, state, transport = self.front.loop, self.state, self.raw
        assert transport is not None
        starting = loop.create_task(
            loop.start_tls(
                cast(asyncio.Transport, transport),
                self,
                state.context,
                server_side=True,
                ssl_handshake_timeout=max(self.deadline - loop.time(), 0.001),
            )
        )
        # start_tls's first step (this loop turn's next callback) installs the loop's TLS
        # protocol on the transport and schedules its connection_made and resume_reading;
        # this runs right after that step, so its replay comes after those two.
        loop.call_soon(self._take_over, transport)
        starting.add_done_callback(self._handshake_done)

    def _answer_plain(self, data: bytes) -> None:
        """Plain HTTP on the HTTPS port: nginx's 400, read by the client before the close."""
        transport = cast(asyncio.Transport, self.raw)
        transport.write(PLAIN_HTTP.to_response(self.front.date.get()))
        self.front.access_log_error(self.front.peer_info(transport), PLAIN_HTTP.status)
        self.linger = Linger(self.front.loop, transport)
        self.linger.discard(len(data))
        self._give_up("plain HTTP sent to the HTTPS port, answered 400")

    def _give_up(self, why: str) -> None:
        """No handshake: close (or linger), and say why in one debug line."""
        self.phase = Phase.REFUSED
        if self.waiting is not None:
            self.waiting.cancel()
        self._ended()
        log.debug("TLS handshake with %s failed: %s", self.peer, why)
        if self.raw is not None and self.linger is None:
            self.raw.close()

    def _take_over(self, transport: asyncio.BaseTransport) -> None:
        self.phase = Phase.SECURE
        if self.first:
            data, self.first = b"".join(self.first), []
            self.front.loop.call_soon(_replay, transport.get_protocol(), data)

    def _handshake_done(self, starting: asyncio.Future[asyncio.Transport | None]) -> None:
        self._ended()
        exc = None if starting.cancelled() else starting.exception()
        if starting.cancelled() or exc is not None:
            # Whatever the client did, it is one line, not a traceback.
            log.debug("TLS handshake with %s failed: %s", self.peer, _reason(exc))
            return
        secure = starting.result()
        if secure is not None and not self.lost:  # else the client left right after it
            self._serve(secure)

    def _serve(self, secure: asyncio.Transport) -> None:
        """Hand the secure transport to the HTTP connection (ALPN would choose it here)."""
        conn = ClientConnection(self.front)
        secure.set_protocol(conn)
        conn.client_dn = tls.subject(secure.get_extra_info("peercert"))
        assert self.raw is not None
        transport = SecureTransport(secure, self.raw, self.front.loop)
        conn.connection_made(transport)
        if self.early:
            conn.data_received(b"".join(self.early))
        if self.eof and not conn.eof_received():
            transport.close()

    def _ended(self) -> None:
        self.state.handshakes.discard(self)
        if self.front.gate is not None:
            self.front.gate.update()  # a handshake fewer may let the front accept again

    # --- what arrives before the handover (see the class docstring) ---

    def data_received(self, data: bytes) -> None:
        if self.phase is Phase.FIRST:
            self._first_bytes(data)
        elif self.phase is Phase.REFUSED:
            if self.linger is not None:
                self.linger.discard(len(data))
        else:
            (self.first if self.phase is Phase.RAW else self.early).append(data)

    def eof_received(self) -> bool:
        if self.phase is Phase.FIRST:
            self._give_up("closed before its handshake")
        if self.phase is Phase.REFUSED:
            return False  # the client has read the answer, or left: close
        self.eof = True
        return True  # the ClientConnection decides, once it has the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.phase is Phase.FIRST:
            self._give_up("reset before its handshake")
        if self.linger is not None:
            self.linger.stop()


def _replay(protocol: asyncio.BaseProtocol, data: bytes) -> None:
    """Give the loop's TLS protocol bytes it would have read itself. Both loops' are buffered
    protocols (get_buffer, buffer_updated); uvloop's is no asyncio.BufferedProtocol."""
    if not hasattr(protocol, "get_buffer"):
        cast(asyncio.Protocol, protocol).data_received(data)
        return
    buffered = cast(asyncio.BufferedProtocol, protocol)
    view = memoryview(data)
    while view:
        buffer = memoryview(buffered.get_buffer(len(view)))
        size = min(len(buffer), len(view))
        buffer[:size] = view[:size]
        buffered.buffer_updated(size)
        view = view[size:]


def _reason(exc: BaseException | None) -> str:
    """Why a handshake failed, in a few words."""
    if exc is None:
        return "cancelled"
    if isinstance(exc, ssl.SSLError):
        return exc.reason or exc.__class__.__name__
    return str(exc) or exc.__class__.__name__
