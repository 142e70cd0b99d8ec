"""The worker's reader thread: its link to the front, and what the front's frames do.

Theory of operation
-------------------
:meth:`LinkReader.read` connects to the front's link listener, says HELLO, and reads frames
until the link drops; then it cancels every request on that link (the front is gone, so are
their clients) and, unless the worker is draining, connects again: the front's link listener
lives in the master, so a restarted front finds its workers coming back.

Each frame goes through one table, :data:`RECEIVERS` (see maitred.link), straight to its
method here. A REQUEST becomes a :class:`Channel`, filed in the link's table of channels by
request id and put on the queue the app threads take from; WINDOW, CANCEL and TAKEN update
its channel under `credit_changed` and wake a thread waiting for credit. A TIMEOUT interrupts
the request's thread (AppTimeout) and hands the request to the worker's watchdog
(`on_timed_out`). A frame of any other type, or a malformed message, means the front is
broken: `on_broken` stops the worker rather than reconnect to it.
"""

from __future__ import annotations

import ctypes
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable

from maitred import link
from maitred.worker import stacks
from maitred.worker.channel import Channel, FrontConnection
from maitred.worker.wsgi import LinkClosed

log = logging.getLogger("maitred.error")

RECONNECT_DELAY = 0.05  # the front may be restarting; its link listener keeps a backlog


class AppTimeout(BaseException):
    """Raised in an app thread whose request ran past --timeout.

    A BaseException, like KeyboardInterrupt, so that an app's `except Exception` does not
    swallow it and keep the thread busy.
    """


class LinkReader:
    """The reader thread's side of the worker: `name` says which worker in the log,
    `link_path` is the front's link listener, `hello` the worker's HELLO, `requests` the app
    threads' queue, `window` the credit each request starts with; `linked` is set once HELLO
    went out, `drained` once the front said DRAINED or is gone."""

    def __init__(
        self,
        name: str,
        link_path: str,
        hello: bytes,
        requests: queue.SimpleQueue[Channel | None],
        window: int,
        on_broken: Callable[[link.ProtocolViolation], None],
        on_timed_out: Callable[[Channel], None],
    ) -> None:
        self.name = name
        self.link_path = link_path
        self.hello = hello
        self.requests = requests
        self.window = window
        self.on_broken = on_broken
        self.on_timed_out = on_timed_out
        self.credit_changed = threading.Condition()
        self.linked = threading.Event()
        self.drained = threading.Event()
        self.draining = False  # no reconnecting
        self.front: FrontConnection | None = None  # the link, and its table of channels
        self.received = 0  # requests read from the link; the reader thread alone counts

    def read(self) -> None:
        """The reader thread: link, read, and link again until draining."""
        while not self.draining:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.link_path)
                current = self.front = FrontConnection(sock)
                current.send(self.hello)
                self.linked.set()
                self._read_link(current)
            except link.ProtocolViolation as exc:
                self.on_broken(exc)
            except (OSError, LinkClosed, link.LinkError) as exc:
                log.debug("%s: link closed (%s)", self.name, exc)
            finally:
                sock.close()
            self.cancel_all()
            if not self.draining:
                time.sleep(RECONNECT_DELAY)
        self.drained.set()  # the front is gone: nothing more can arrive

    def _read_link(self, current: FrontConnection) -> None:
        reader = link.FrameReader(current.files.recv_into)
        try:
            while frames := reader.read():
                for kind, rid, payload in frames:
                    RECEIVERS[kind](self, rid, payload)
        finally:
            current.files.close()

    # --- the messages of RECEIVERS, below; on the reader thread, for the link being read ---

    def _channel(self, rid: int) -> Channel | None:
        """The request's channel, or None when the request is over already."""
        current = self.front
        return current.channels.get(rid) if current is not None else None

    def on_request(self, rid: int, request: link.Request) -> None:
        current = self.front
        assert current is not None  # set before its frames are read
        channel = Channel(current, rid, request, self.window, self.credit_changed)
        if request.spooled:  # its body's file came with it (maitred.link.files)
            channel.body = open(current.files.take(), "rb")  # noqa: SIM115 - the thread closes it
        current.channels[rid] = channel
        self.received += 1
        self.requests.put(channel)

    def _on_window(self, rid: int, size: int) -> None:
        self._update(self._channel(rid), size)

    def _on_cancel(self, rid: int) -> None:
        self._update(self._channel(rid), 0, cancel=True)

    def _on_taken(self, rid: int, taken: bool) -> None:
        self._taken(self._channel(rid), taken)

    def _on_timeout(self, rid: int) -> None:
        self._timed_out(self._channel(rid))

    def _on_drained(self, rid: int) -> None:
        self.drained.set()

    def _update(self, channel: Channel | None, credit: int, cancel: bool = False) -> None:
        if channel is None:
            return  # the request is already over
        with self.credit_changed:
            channel.credit += credit
            channel.cancelled = channel.cancelled or cancel
            self.credit_changed.notify_all()

    def _taken(self, channel: Channel | None, taken: bool) -> None:
        if channel is None:
            return  # the request is already over
        with self.credit_changed:
            channel.taken = bool(taken)
            self.credit_changed.notify_all()

    def _timed_out(self, channel: Channel | None) -> None:
        if channel is None or not channel.thread:
            return  # over already, or not yet started (the front sends TIMEOUT once)
        self._update(channel, 0, cancel=True)
        stack = stacks.thread_stack(channel.thread)
        log.error(
            "request timed out after %.1f s, interrupting its thread: %s\n%s",
            time.monotonic() - channel.started,
            channel.label,
            stack.rstrip("\n"),
        )
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(channel.thread), ctypes.py_object(AppTimeout)
        )
        self.on_timed_out(channel)

    def cancel_all(self) -> None:
        current = self.front
        if current is None:
            return
        for channel in list(current.channels.values()):
            self._update(channel, 0, cancel=True)


# What a worker takes from the front; anything else stops the worker (LinkReader.read).
RECEIVERS: link.Receivers[LinkReader] = link.Receivers(
    link.on_request(LinkReader.on_request),
    link.on(link.Window)(LinkReader._on_window),
    link.on(link.Cancel)(LinkReader._on_cancel),
    link.on(link.Taken)(LinkReader._on_taken),
    link.on(link.Timeout)(LinkReader._on_timeout),
    link.on(link.Drained)(LinkReader._on_drained),
)
