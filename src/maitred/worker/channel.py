"""The worker's end of its link to the front, and each request's side of it.

One :class:`FrontConnection` per link: the app threads send their frames on its socket under
a lock (one sendall per frame, so frames never interleave), and the reader thread
(maitred.worker.main) files each request's :class:`Channel` in its table by request id. A
Channel is what a response writes to (maitred.worker.wsgi.Channel): it sends a response's BODY
bytes only within the credit the front gave (WINDOW frames, which the reader adds under
`changed`), waits on `changed` when the credit runs out, and raises LinkClosed once the request
is cancelled (the client went away, or the front did).
"""

from __future__ import annotations

import socket
import threading
from typing import IO

from maitred import link
from maitred.worker.wsgi import LinkClosed


class FrontConnection:
    """One connection to the front; threads send on it under a lock."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.files = link.Receiver(sock)  # the reader thread's reads, and the files they bring
        self.lock = threading.Lock()
        self.channels: dict[int, Channel] = {}

    def send(self, data: bytes) -> None:
        try:
            with self.lock:
                self.sock.sendall(data)
        except OSError as exc:
            raise LinkClosed(str(exc)) from None


class Channel:
    """One request's side of the link: the request, its id, its credit, whether it was cancelled.

    The reader thread raises `credit` and sets `cancelled` under `changed`, then notifies it.
    """

    __slots__ = (
        "body",
        "cancelled",
        "changed",
        "credit",
        "frame_size",
        "front",
        "request",
        "rid",
        "slow_logged",
        "started",
        "taken",
        "thread",
    )

    def __init__(
        self,
        front: FrontConnection,
        rid: int,
        request: link.Request,
        window: int,
        changed: threading.Condition,
    ) -> None:
        self.front = front
        self.rid = rid
        self.request = request
        self.credit = window
        self.frame_size = min(link.MAX_BODY_FRAME, window)
        self.changed = changed
        self.cancelled = False
        self.thread = 0  # ident of the app thread running it, once one does
        self.started = 0.0  # monotonic time the app thread took it
        self.slow_logged = False  # --slow-request-log logged its stack (once is enough)
        self.taken: bool | None = None  # the front's answer to a FILE frame
        self.body: IO[bytes] | None = None  # a spooled body's file (maitred.link.files)

    @property
    def label(self) -> str:
        """The request as "METHOD target", for the log."""
        req = self.request
        return f"{req.method.decode('latin-1')} {req.target.decode('latin-1')}"

    def send(self, data: bytes) -> None:
        if self.cancelled:
            raise LinkClosed("the client went away")
        self.front.send(data)

    def hand_over(self, frame: bytes) -> bool:
        """Send a FILE frame and wait for the front's answer: True if it sends the file."""
        self.send(frame)
        changed = self.changed
        with changed:
            while self.taken is None and not self.cancelled:
                changed.wait()
        if self.taken is None:
            raise LinkClosed("the client went away")
        return self.taken

    def write_body(self, data: bytes, prefix: bytes = b"") -> None:
        """Send body bytes as BODY frames within credit; `prefix` goes first (a HEAD)."""
        rid = self.rid
        size = len(data)
        if size <= self.frame_size and self.credit >= size:  # the common case: one send
            self.credit -= size
            self.send(prefix + link.encode_body(rid, data))
            return
        if prefix:
            self.send(prefix)
        step = self.frame_size
        for start in range(0, size, step):
            piece = data[start : start + step]
            self._wait_credit(len(piece))
            self.credit -= len(piece)
            self.send(link.encode_body(rid, piece))

    def _wait_credit(self, size: int) -> None:
        changed = self.changed
        with changed:
            while self.credit < size and not self.cancelled:
                changed.wait()
        if self.cancelled:
            raise LinkClosed("the client went away")
