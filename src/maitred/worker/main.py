"""The worker process: one link to the front, T threads running the app.

Theory of operation
-------------------
A reader thread owns the link's receiving side. A REQUEST becomes a :class:`Channel` (the
request's id, its flow-control credit, whether it was cancelled) and goes on a queue that the T
app threads take from; the front never sends more requests than there are threads, so the
queue holds at most T. WINDOW and CANCEL frames update the request's channel and wake a thread
waiting for credit. App threads send their frames themselves, under one lock per link.

If the link drops, every request on it is cancelled (the front is gone, so are their clients)
and, unless the worker is draining, the reader connects again: the front's link listener lives
in the master, so a restarted front finds its workers coming back.

The main thread only watches signals and the master. On SIGTERM it sends DRAIN and waits for
DRAINED: every request sent before that is already queued, so the threads finish the queue, find
a stop mark behind it, and exit. Threads are daemons, so a stuck one cannot keep the process
alive past the graceful timeout.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import socket
import threading
import time
import traceback

from setproctitle import setproctitle

from maitred import link
from maitred.config import Config
from maitred.http.response import DateCache
from maitred.signals import SignalQueue
from maitred.worker.wsgi import (
    EnvironBuilder,
    LinkClosed,
    Request,
    Response,
    WSGIApp,
    run_app,
)

log = logging.getLogger("maitred.error")

# Exit status of a worker whose app failed to import: the master stops instead of respawning.
APP_LOAD_ERROR = 4
READY = b"R"  # written on the ready pipe once the app is imported and the threads run

RECONNECT_DELAY = 0.05  # the front may be restarting; its link listener keeps a backlog
WATCH_INTERVAL = 1.0  # how often the main thread checks that its master is alive
RECV_SIZE = 256 * 1024


class Link:
    """One connection to the front; threads send on it under a lock."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()
        self.channels: dict[int, Channel] = {}

    def send(self, data: bytes) -> None:
        try:
            with self.lock:
                self.sock.sendall(data)
        except OSError as exc:
            raise LinkClosed(str(exc)) from None


class Channel:
    """One request's side of the link: its id, its credit, whether it was cancelled.

    The reader thread raises `credit` and sets `cancelled` under `changed`, then notifies it.
    """

    __slots__ = ("cancelled", "changed", "credit", "frame_size", "link", "rid")

    def __init__(self, link_: Link, rid: int, window: int, changed: threading.Condition) -> None:
        self.link = link_
        self.rid = rid
        self.credit = window
        self.frame_size = min(link.MAX_BODY_FRAME, window)
        self.changed = changed
        self.cancelled = False

    def send(self, data: bytes) -> None:
        if self.cancelled:
            raise LinkClosed("the client went away")
        self.link.send(data)

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


class Worker:
    def __init__(
        self,
        cfg: Config,
        worker_id: int,
        link_path: str,
        app: WSGIApp | None,
        ready_fd: int,
        master_pid: int,
    ) -> None:
        self.cfg = cfg
        self.worker_id = worker_id
        self.link_path = link_path
        self.app = app
        self.ready_fd = ready_fd
        self.master_pid = master_pid
        self.pid = os.getpid()
        self.date = DateCache()
        self.environ = EnvironBuilder(cfg.root_path, cfg.threads, cfg.workers)
        self.requests: queue.SimpleQueue[tuple[Channel, Request] | None] = queue.SimpleQueue()
        self.credit_changed = threading.Condition()
        self.draining = False
        self.drained = threading.Event()
        self.link: Link | None = None

    def run(self) -> int:
        setproctitle(f"maitred: worker {self.worker_id} [{self.cfg.app or 'demo'}]")
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group; master decides
        signals = SignalQueue([signal.SIGTERM, signal.SIGQUIT])
        if self.app is None:
            from maitred.appload import load_app

            try:
                self.app = load_app(self.cfg.app)
            except BaseException:
                traceback.print_exc()
                return APP_LOAD_ERROR
        threads = [
            threading.Thread(target=self._serve, name=f"maitred-{i}", daemon=True)
            for i in range(self.cfg.threads)
        ]
        for thread in threads:
            thread.start()
        threading.Thread(target=self._read, name="maitred-link", daemon=True).start()
        os.write(self.ready_fd, READY)
        os.close(self.ready_fd)
        while os.getppid() == self.master_pid:
            received, _ = signals.wait(WATCH_INTERVAL)
            if signal.SIGQUIT in received:
                return 0
            if signal.SIGTERM in received:
                return self._drain(threads)
        log.warning("worker %d: master is gone, exiting", self.worker_id)
        return 0

    def _drain(self, threads: list[threading.Thread]) -> int:
        deadline = time.monotonic() + self.cfg.graceful_timeout
        self.draining = True
        current = self.link
        if current is not None:
            with contextlib.suppress(LinkClosed):
                current.send(link.encode(link.DRAIN, 0))
            self.drained.wait(self.cfg.graceful_timeout)
        for _ in threads:
            self.requests.put(None)  # behind every request the front sent before DRAINED
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return 0

    # --- the reader thread ---

    def _read(self) -> None:
        hello = link.encode(link.HELLO, 0, (self.pid, self.worker_id, self.cfg.threads))
        while not self.draining:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.link_path)
                current = self.link = Link(sock)
                current.send(hello)
                self._read_link(current)
            except (OSError, LinkClosed, link.LinkError) as exc:
                log.debug("worker %d: link closed (%s)", self.worker_id, exc)
            finally:
                sock.close()
            self._cancel_all()
            if not self.draining:
                time.sleep(RECONNECT_DELAY)
        self.drained.set()  # the front is gone: nothing more can arrive

    def _read_link(self, current: Link) -> None:
        recv = current.sock.recv
        frames = link.FrameBuffer()
        channels = current.channels
        requests = self.requests
        window = self.cfg.response_buffer_size
        while data := recv(RECV_SIZE):
            for kind, rid, payload in frames.feed(data):
                if kind == link.REQUEST:
                    channel = Channel(current, rid, window, self.credit_changed)
                    channels[rid] = channel
                    requests.put((channel, Request(*link.decode(kind, payload))))
                elif kind == link.WINDOW:
                    self._update(channels.get(rid), link.decode(kind, payload))
                elif kind == link.CANCEL:
                    self._update(channels.get(rid), 0, cancel=True)
                elif kind == link.DRAINED:
                    self.drained.set()
                else:
                    raise link.LinkError(f"unexpected frame type {kind} from the front")

    def _update(self, channel: Channel | None, credit: int, cancel: bool = False) -> None:
        if channel is None:
            return  # the request is already over
        with self.credit_changed:
            channel.credit += credit
            channel.cancelled = channel.cancelled or cancel
            self.credit_changed.notify_all()

    def _cancel_all(self) -> None:
        current = self.link
        if current is None:
            return
        for channel in list(current.channels.values()):
            self._update(channel, 0, cancel=True)

    # --- the app threads ---

    def _serve(self) -> None:
        requests = self.requests
        while (item := requests.get()) is not None:
            channel, req = item
            try:
                self._handle(req, channel)
            except Exception:
                # A bug of ours, not the app's (those are answered with a 500): the thread
                # must live on.
                log.exception("unexpected error serving a request")
            finally:
                channel.link.channels.pop(channel.rid, None)

    def _handle(self, req: Request, channel: Channel) -> None:
        response = Response(channel, self.date, req.method == b"HEAD")
        app = self.app
        assert app is not None
        environ = self.environ.build(req)
        # Middleware may replace wsgi.input in the environ; close the stream we opened.
        stream = environ["wsgi.input"]
        try:
            run_app(app, environ, response)
        except LinkClosed:
            # The client went away (or the front): the app's iterable is closed; tell the
            # front the thread is free, if it is still there to hear it.
            with contextlib.suppress(LinkClosed):
                channel.link.send(link.encode(link.ABORT, channel.rid))
        except Exception:
            log.exception(
                "error handling %s %s", req.method.decode("latin-1"), req.target.decode("latin-1")
            )
            with contextlib.suppress(LinkClosed):
                if response.head_sent:
                    response.abort()  # the client sees a truncated response, never a fake one
                else:
                    Response(channel, self.date, req.method == b"HEAD").error(500)
        finally:
            stream.close()
