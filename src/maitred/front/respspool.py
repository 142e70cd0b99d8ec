"""Response bytes a slow client has not taken yet: in a temp file, not in an app thread.

Theory of operation
-------------------
A response goes from the worker to the client transport, and each body frame's credit goes
back to the worker at once while the transport holds less than --response-buffer-size. Past
that, without a spool, the credit waits until the client drains the buffer, so a client that
reads slowly holds an app thread, and as many such clients as threads stall the whole app
until the send timeout. Instead, the exchange *overflows* into a :class:`ResponseSpool`, as
nginx spools a proxied response past its buffers (proxy_max_temp_file_size):

* further body bytes go to a file in the spool directory that has no name (unlinked as it is
  created, so nothing is left behind whatever becomes of the front), and their credit goes
  back at once: the app finishes at its own pace and its thread is free;
* the spool feeds the client from the file as the transport drains. It is a
  :class:`~maitred.front.sendfile.FileSender` whose file grows while it sends: sendfile for a
  body with a length (no copy through the front); for a chunked body, pieces read from the
  file, each framed as one chunk (the file holds body bytes only, so the access log counts
  them exactly). The transport's high-water mark is 0 while the spool is in use, so the
  front holds at most one piece of the spool in memory per client;
* once every byte of the file is out the spool closes, and the exchange writes to the
  transport directly again (a later overflow opens a new spool). An END that came meanwhile
  is written then.

One spool file holds at most --response-spool-size bytes. Past that, or once the file cannot
be written (disk full), further bytes wait in memory behind the file with their credit
withheld, which is the back-pressure of an exchange without a spool: the worker's window
bounds them, and their credit goes back once they are out. A spool whose file cannot be opened
(no descriptor, no space) holds every byte that way.

No file is opened for a response that fits the buffer: the hot path is unchanged.

Owned by the event loop thread.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import TYPE_CHECKING, Any

from maitred.front.sendfile import FileSender
from maitred.http.response import chunk

if TYPE_CHECKING:
    from maitred.front.exchange import Exchange

log = logging.getLogger("maitred.error")

PREFIX = "maitred-response-"
NO_FILE = -1  # a spool whose file could not be opened


def open_unnamed(directory: str) -> int:
    """A new empty file in `directory` (the system temp directory when empty) that no name
    refers to: it goes when its descriptor is closed."""
    fd, path = tempfile.mkstemp(prefix=PREFIX, dir=directory or None)
    try:
        os.unlink(path)
    except OSError:
        os.close(fd)
        raise
    return fd


class ResponseSpool(FileSender):
    """The part of `exchange`'s response body that its client has not taken yet."""

    __slots__ = ("directory", "ended", "limit", "tail", "written")

    def __init__(self, exchange: Exchange, fd: int, limit: int, directory: str) -> None:
        super().__init__(exchange, fd, 0, 0)
        self.limit = limit
        self.directory = directory
        self.written = 0  # bytes in the file
        self.tail: list[bytes] = []  # bytes behind the file, their credit withheld
        self.ended = False  # the worker's END came: end the response once all is out

    @classmethod
    def overflow(cls, exchange: Exchange) -> ResponseSpool | None:
        """A spool for the rest of `exchange`'s body, or None (spooling off, or no file)."""
        cfg = exchange.conn.front.cfg
        limit = cfg.response_spool_size
        if not limit:
            return None
        try:
            fd = open_unnamed(cfg.body_temp_dir)
        except OSError as exc:
            # Said once per overflow; the spool then holds every byte behind an empty file.
            log.error("cannot spool a response in %s: %s", _where(cfg.body_temp_dir), exc)
            fd, limit = NO_FILE, 0
        spool = cls(exchange, fd, limit, cfg.body_temp_dir)
        if not spool.attach():
            return None
        if exchange.chunked:
            spool.sock_fd = -1  # no sendfile: pieces through the transport, each one chunk
        return spool

    def add(self, data: bytes) -> None:
        """Take one body frame: into the file, its credit back at once, while there is room."""
        size = len(data)
        room = not self.tail and self.written + size <= self.limit
        stored = self._store(data) if room else 0
        if stored == size:
            self.exchange.credit(size)
        else:
            self.tail.append(data[stored:])
            self.exchange.withhold(size)

    def _store(self, data: bytes) -> int:
        """Append to the file; the number of bytes written (fewer when it fails)."""
        view = memoryview(data)
        done = 0
        try:
            while done < len(view):
                wrote = os.pwrite(self.fd, view[done:], self.written + done)
                if not wrote:
                    raise OSError("the spool file took no bytes")
                done += wrote
        except OSError as exc:
            log.error("cannot spool a response in %s: %s", _where(self.directory), exc)
        self.written += done
        self.remaining += done
        return done

    def write_piece(self, transport: Any, piece: bytes) -> None:
        transport.write(chunk(piece) if self.exchange.chunked else piece)

    def _finish(self) -> None:
        """Every byte of the file is out: back to writing to the transport directly."""
        exchange, tail, ended = self.exchange, self.tail, self.ended
        self.close()
        for data in tail:
            exchange.write_body(data)
        if not exchange.conn.flow.write_paused:
            exchange.return_credit()  # else once the transport drains, as without a spool
        if ended:
            exchange.respond_end()

    def close(self) -> None:
        """Stop: the file goes with its descriptor."""
        super().close()
        self.tail = []
        if self.exchange.spool is self:
            self.exchange.spool = None


def _where(directory: str) -> str:
    return directory or tempfile.gettempdir()
