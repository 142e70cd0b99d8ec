"""Sending a file's bytes to a client with sendfile(2), on uvloop and on asyncio alike.

Theory of operation
-------------------
asyncio's ``loop.sendfile`` exists on the standard loop only: uvloop inherits the abstract method,
which raises NotImplementedError. Rather than one path per loop, :class:`FileSender` calls
``os.sendfile`` on the connection's socket itself, and only while the transport's write buffer is
empty (so nothing the transport holds can be overtaken). When the socket is full (EAGAIN) there is
no way to ask the transport to say when it becomes writable again, since a transport's socket
cannot also be registered with ``add_writer``; so the sender reads one piece of the file and
writes it through the transport, with the transport's high-water mark at 0 for the length of the
send: the transport buffers the piece, pauses the connection, and resumes it once the buffer has
drained to empty, which is exactly "the socket is writable again". Then sendfile goes on. A fast
client thus gets the whole file through sendfile; a slow one costs one buffered piece per wait,
and the front never holds more than that piece of its response.

A file that shrinks while it is sent (sendfile returns 0 early) or fails to read ends the
connection, so the client sees a truncated response rather than a wrong one.

Over TLS the socket carries encrypted records, so every byte goes through the transport, a piece
at a time (the kernel cannot encrypt for us without kTLS, which Python's ssl does not offer), and
the connection keeps its usual buffer limits: a TLS transport moves what it is given on to the
socket's buffer at once, so "drained to empty" would say nothing about the socket. The sender
writes pieces until the transport pauses the connection at its high-water mark, and goes on when
it resumes, as any response does.

A FastCGI connection's transport shows no socket (it frames each write as a record): there
too every byte goes through the transport, one piece a write, each piece as large as a record
holds (:data:`FRAMED_PIECE`), the next once the socket has taken the last.

The sender is used for static files (front.static), for wsgi.file_wrapper responses whose
open file a worker handed over (:func:`take_over`), and, as a file that grows while it is sent,
for the part of a response a slow client has not taken yet (front.respspool).

Owned by the event loop thread.
"""

from __future__ import annotations

import logging
import os
import stat
from typing import TYPE_CHECKING, Any

from maitred import link
from maitred.front.states import GONE

if TYPE_CHECKING:
    from maitred.front.exchange import Exchange

log = logging.getLogger("maitred.error")

# Bytes of the file written through the transport when the socket is full. The piece is only
# there to be told when the socket drains (sendfile then refills it), so it is small: each wait
# for a slow client costs one such copy, and a thousand waiting clients hold 16 MiB.
PIECE = 16 * 1024
# The piece for a transport with no socket that frames each write (a FastCGI connection's,
# maitred.front.gateway): every byte goes through it, so pieces are as large as one frame
# holds (a FastCGI record carries up to 65535 bytes). A 16 KiB piece made four times the
# writes and waits, and sent files at about half the rate.
FRAMED_PIECE = 0xFFFF
# Most bytes one sendfile call is asked for, so one client cannot hold the loop for long.
SENDFILE_MAX = 16 * 1024 * 1024

_PROC_FD = "/proc/{pid}/fd/{fd}"


class FileSender:
    """Sends `count` bytes of `fd` from `offset` as the body of `exchange`, then ends it."""

    __slots__ = (
        "closed",
        "count",
        "exchange",
        "fd",
        "limits",
        "offset",
        "piece",
        "remaining",
        "sock_fd",
    )

    def __init__(self, exchange: Exchange, fd: int, offset: int, count: int) -> None:
        self.exchange = exchange
        self.fd = fd
        self.offset = offset
        self.count = count
        self.remaining = count
        self.sock_fd = -1
        self.piece = PIECE  # bytes read per write through the transport (attach)
        self.closed = False
        self.limits: tuple[int, int] | None = None  # the transport's (low, high) to restore

    def start(self) -> None:
        """Call after the response head has been written."""
        if self.attach():
            self.exchange.sender = self
            self.pump()

    def attach(self) -> bool:
        """Take the connection's socket and buffer limits for sending; False (and closed) when
        the client is gone."""
        transport = self.exchange.conn.transport
        if transport is None or transport.is_closing():
            self.close()
            return False
        # On TLS the socket carries records the transport encrypts: pieces through it.
        secure = transport.get_extra_info("ssl_object") is not None
        sock = None if secure else transport.get_extra_info("socket")
        try:
            self.sock_fd = sock.fileno() if sock is not None else -1
        except (OSError, AttributeError):
            self.sock_fd = -1  # a transport without a socket: pieces through the transport
        if self.sock_fd < 0 and not secure:
            self.piece = FRAMED_PIECE
        if not secure:
            self.limits = transport.get_write_buffer_limits()
            transport.set_write_buffer_limits(high=0, low=0)  # resume only once drained to empty
        return True

    def resume(self) -> None:
        """The connection's write buffer drained (ClientConnection.resume_writing)."""
        self.pump()

    def pump(self) -> None:
        conn = self.exchange.conn
        while not self.closed:
            transport = conn.transport
            if transport is None or transport.is_closing():
                self.close()  # the client is gone; the connection cancels the exchange
                return
            if conn.flow.write_paused:
                return  # resume() continues once the buffer is empty
            if not self.remaining:
                self._finish()
                return
            if not self._send(transport):
                return

    def _send(self, transport: Any) -> bool:
        """Move some bytes; False when the sender stopped."""
        if self.sock_fd >= 0 and not transport.get_write_buffer_size():
            try:
                sent = os.sendfile(
                    self.sock_fd, self.fd, self.offset, min(self.remaining, SENDFILE_MAX)
                )
            except (BlockingIOError, InterruptedError):
                sent = -1
            except (BrokenPipeError, ConnectionResetError):
                # The client left mid-file, before the loop saw it go: its choice, no error.
                return self._abort()
            except OSError as exc:
                return self._fail(f"sendfile failed: {exc}")
            if sent == 0:
                return self._fail("the file shrank while it was being sent")
            if sent > 0:
                self._advance(sent)
                return True
        # The socket is full (or the transport holds bytes): one piece through the transport,
        # which pauses the connection until its buffer is empty again.
        try:
            piece = os.pread(self.fd, min(self.piece, self.remaining), self.offset)
        except OSError as exc:
            return self._fail(f"read failed: {exc}")
        if not piece:
            return self._fail("the file shrank while it was being sent")
        self._advance(len(piece))
        self.write_piece(transport, piece)
        return True

    def write_piece(self, transport: Any, piece: bytes) -> None:
        transport.write(piece)

    def _advance(self, size: int) -> None:
        self.offset += size
        self.remaining -= size
        self.exchange.sent += size

    def _finish(self) -> None:
        exchange = self.exchange
        self.close()
        exchange.respond_end()

    def _fail(self, reason: str) -> bool:
        exchange = self.exchange
        log.error(
            "%s: %s %s",
            reason,
            exchange.head.method.decode("latin-1"),
            exchange.head.target.decode("latin-1"),
        )
        return self._abort()

    def _abort(self) -> bool:
        """End the response here: the connection is closed, the client sees it cut short."""
        exchange = self.exchange
        self.close()
        exchange.respond_abort()
        return False

    def close(self) -> None:
        """Stop: close the file and give the connection its usual buffer limits back."""
        if self.closed:
            return
        self.closed = True
        if self.fd >= 0:  # a response spool may have no file (maitred.front.respspool)
            os.close(self.fd)
        exchange = self.exchange
        if exchange.sender is self:
            exchange.sender = None
        transport = exchange.conn.transport
        if self.limits is not None and transport is not None and not transport.is_closing():
            low, high = self.limits
            transport.set_write_buffer_limits(high=high, low=low)


def take_over(exchange: Exchange, pid: int, file: link.File) -> bool:
    """A worker offers the open file of a wsgi.file_wrapper response (a FILE frame).

    The front opens the worker's descriptor through /proc/PID/fd/N: the same open file, even
    one since unlinked, without passing descriptors over the link (which the front reads through
    an asyncio transport that would drop them). The worker waits for the answer, so the
    descriptor stays open meanwhile. False (the worker then streams the file itself) when the
    exchange is over or has no body to send, when /proc is missing or the front may not open
    the worker's files (another user), or when what opened is not the file the worker named.
    """
    status, length, head, fd_number, device, inode, offset = file
    if exchange.state in GONE or exchange.suppress_body:
        return False
    try:
        fd = os.open(_PROC_FD.format(pid=pid, fd=fd_number), os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        log.debug("cannot take over the file of worker %d: %s", pid, exc)
        return False
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != (device, inode) or not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return False
    exchange.respond_head(status, length, head)
    FileSender(exchange, fd, offset, length).start()
    return True
