"""The worker process: one link to the front, T threads running the app.

Theory of operation
-------------------
A reader thread owns the link's receiving side. A REQUEST becomes a :class:`Channel` (the
request, its id, its flow-control credit, whether it was cancelled) and goes on a queue that the T
app threads take from; the front never sends more requests than there are threads, so the
queue holds at most T. WINDOW and CANCEL frames update the request's channel and wake a thread
waiting for credit. App threads send their frames themselves, under one lock per link.

The reader takes frames through one table, :data:`RECEIVERS` (see maitred.link). A frame of any
other type, or a malformed message, means the front is broken: the worker says so in the error
log and stops (exit status LINK_PROTOCOL_ERROR), rather than reconnect to it, and the master
starts another.

If the link drops, every request on it is cancelled (the front is gone, so are their clients)
and, unless the worker is draining, the reader connects again: the front's link listener lives
in the master, so a restarted front finds its workers coming back.

With --warmup, the app serves its warm-up requests (worker/warmup.py) before the threads and
the link start, so READY means imported and warmed up.

The main thread watches signals and the master, and writes a heartbeat to the master every
second with the age of the oldest request in flight; it also logs the stack of a request past
--slow-request-log, answers SIGUSR2 with the stacks of the busy threads
(maitred.worker.stacks), and once no request is in flight gives the C heap's free pages back
(maitred.heap). On SIGTERM it sends DRAIN and waits for
DRAINED: every request sent before that is already queued, so the threads finish the queue, find
a stop mark behind it, and exit. Threads are daemons, so a stuck one cannot keep the process
alive past the graceful timeout.

A request past --timeout (the front decides, and has already answered 504) gets a TIMEOUT frame:
its thread's stack goes to the error log and AppTimeout is raised in the thread. If the
thread has not finished after --graceful-timeout, the worker tells the master it is STUCK (the
master starts a replacement) and drains itself: its other threads finish, then it exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import logging
import os
import queue
import random
import signal
import socket
import sys
import threading
import time

from setproctitle import setproctitle

from maitred import heap, link, logs, privileges, status
from maitred.config import Config
from maitred.http.response import DateCache
from maitred.signals import SignalQueue
from maitred.worker import stacks
from maitred.worker.channel import Channel, FrontConnection
from maitred.worker.environ import EnvironBuilder
from maitred.worker.warmup import HOST, warm_up
from maitred.worker.wsgi import (
    HeadWriter,
    LinkClosed,
    Response,
    WSGIApp,
    run_app,
)

log = logging.getLogger("maitred.error")

# Exit status of a worker whose app failed to import: the master stops instead of respawning.
APP_LOAD_ERROR = 4
# Exit status of a worker that stopped because the front broke the link protocol.
LINK_PROTOCOL_ERROR = 5

RECONNECT_DELAY = 0.05  # the front may be restarting; its link listener keeps a backlog
WATCH_INTERVAL = 1.0  # how often the main thread checks that its master is alive
LINK_WAIT = 5.0  # most seconds READY waits for the first link to the front


class AppTimeout(BaseException):
    """Raised in an app thread whose request ran past --timeout.

    A BaseException, like KeyboardInterrupt, so that an app's `except Exception` does not
    swallow it and keep the thread busy.
    """


class Worker:
    def __init__(
        self,
        cfg: Config,
        worker_id: int,
        link_path: str,
        app: WSGIApp | None,
        status_fd: int,
        master_pid: int,
        app_name: str = "",
        warmup_host: str = HOST,
    ) -> None:
        self.cfg = cfg
        self.worker_id = worker_id
        # One of several apps (maitred.apps) is named, and enters its own directory, paths,
        # virtualenv and environment here; the only app of a server had them from the master.
        self.app_name = app_name
        self.name = f"worker {worker_id} of {app_name}" if app_name else f"worker {worker_id}"
        self.warmup_host = warmup_host  # the Host of its --warmup requests
        self.link_path = link_path
        self.app = app
        self.status_fd = status_fd
        self.master_pid = master_pid
        self.pid = os.getpid()
        self.heads = HeadWriter(DateCache(), cfg.request_id_header)
        self.environ = EnvironBuilder(cfg.root_path, cfg.threads, cfg.workers)
        self.requests: queue.SimpleQueue[Channel | None] = queue.SimpleQueue()
        self.credit_changed = threading.Condition()
        self.window = cfg.response_buffer_size  # the credit each request starts with
        self.draining = False
        self.drained = threading.Event()
        self.retire = threading.Event()  # set when a stuck thread or a broken link stops it
        self.exit_status = 0
        self.linked = threading.Event()  # set once HELLO went out on a link
        self.front: FrontConnection | None = None
        self.served = itertools.count(1)  # next() is atomic: app threads share it
        self.received = 0  # requests read from the link; the reader thread alone counts
        self.trim = heap.IdleTrim()  # the heap's free pages go back once it is idle
        jitter = random.randint(0, cfg.max_requests_jitter) if cfg.max_requests else 0
        self.max_requests = cfg.max_requests + jitter
        self.slow = stacks.SlowLog(cfg.slow_request_log, app_name)

    def run(self) -> int:
        setproctitle(f"maitred: {self.name} [{self.cfg.app or 'demo'}]")
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group; master decides
        signals = SignalQueue([signal.SIGTERM, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2])
        # Before the import: no line of the app runs as root (maitred.privileges).
        if not privileges.switch(self.cfg.user, self.cfg.group, f"worker {self.worker_id}"):
            return APP_LOAD_ERROR
        privileges.open_to_user()
        if self.app is None:
            from maitred.appload import AppLoadError, load_app, prepare_path

            cfg = self.cfg
            try:
                if self.app_name:
                    prepare_path(cfg.chdir, cfg.pythonpath, cfg.virtualenv)
                    os.environ.update(cfg.env)
                self.app = load_app(cfg.app)
            except AppLoadError as exc:
                sys.stderr.write(exc.report())  # one line that says why, then the app's frames
                return APP_LOAD_ERROR
        if self.cfg.warmup:  # before the link: no client waits for it (worker/warmup.py)
            warm_up(self.app, self.environ, self.cfg.warmup, self.name, self.warmup_host)
        threads = [
            threading.Thread(target=self._serve, name=f"maitred-{i}", daemon=True)
            for i in range(self.cfg.threads)
        ]
        for thread in threads:
            thread.start()
        threading.Thread(target=self._read, name="maitred-link", daemon=True).start()
        # READY once the front knows us, so a reload never retires the old worker before
        # its successor can be given requests.
        self.linked.wait(LINK_WAIT)
        self._tell(status.READY)
        while os.getppid() == self.master_pid:
            received, _ = signals.wait(WATCH_INTERVAL)
            if signal.SIGQUIT in received:
                return 0
            if signal.SIGTERM in received or self.retire.is_set():
                return self._drain(threads)
            if signal.SIGUSR1 in received:
                logs.reopen()
            if signal.SIGUSR2 in received:
                self._send_stacks()
            self._watch()
        log.warning("%s: master is gone, exiting", self.name)
        return 0

    def _watch(self) -> None:
        """The main thread's periodic look: heartbeat, slow requests, the idle heap trim."""
        in_flight = self._in_flight()
        self._tell(status.HEARTBEAT, self._oldest_age())
        self.slow.check(in_flight, time.monotonic())
        self.trim.check(self.received, idle=not in_flight)

    def _tell(self, kind: bytes, value: float = 0.0) -> None:
        """A message to the master (9 bytes: atomic, so any thread may call this)."""
        with contextlib.suppress(OSError):  # the master is gone: the main loop notices
            os.write(self.status_fd, status.encode(kind, value))

    def _in_flight(self) -> list[Channel]:
        current = self.front
        return [] if current is None else list(current.channels.values())

    def _oldest_age(self) -> float:
        now = time.monotonic()
        starts = [ch.started for ch in self._in_flight() if ch.started]
        return now - min(starts) if starts else 0.0

    def _send_stacks(self) -> None:
        """SIGUSR2: the busy threads' stacks to the master, in atomic pieces."""
        data = stacks.report(self.pid, self.name, self.app_name, self._in_flight())
        with contextlib.suppress(OSError):  # the master is gone: the main loop notices
            for piece in status.encode_stacks(data):
                os.write(self.status_fd, piece)

    def _drain(self, threads: list[threading.Thread]) -> int:
        deadline = time.monotonic() + self.cfg.graceful_timeout
        self.draining = True
        current = self.front
        if current is not None:
            with contextlib.suppress(LinkClosed):
                current.send(link.encode_drain(0))
            self.drained.wait(self.cfg.graceful_timeout)
        for _ in threads:
            self.requests.put(None)  # behind every request the front sent before DRAINED
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return self.exit_status

    # --- the reader thread ---

    def _read(self) -> None:
        hello = link.encode_hello(0, self.pid, self.worker_id, self.cfg.threads)
        while not self.draining:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.link_path)
                current = self.front = FrontConnection(sock)
                current.send(hello)
                self.linked.set()
                self._read_link(current)
            except link.ProtocolViolation as exc:
                self._stop_broken_link(exc)
            except (OSError, LinkClosed, link.LinkError) as exc:
                log.debug("%s: link closed (%s)", self.name, exc)
            finally:
                sock.close()
            self._cancel_all()
            if not self.draining:
                time.sleep(RECONNECT_DELAY)
        self.drained.set()  # the front is gone: nothing more can arrive

    def _stop_broken_link(self, exc: link.ProtocolViolation) -> None:
        """The front sent what is not one of its messages: stop, rather than reconnect to it."""
        log.error("%s: the front broke the link protocol, stopping: %s", self.name, exc)
        self.exit_status = LINK_PROTOCOL_ERROR
        self.draining = True  # no reconnecting
        self.retire.set()  # the main thread drains what the threads hold, then exits

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

    def _on_request(self, rid: int, request: link.Request) -> None:
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
        watchdog = threading.Timer(self.cfg.graceful_timeout, self._check_stuck, (channel,))
        watchdog.daemon = True
        watchdog.start()

    def _check_stuck(self, channel: Channel) -> None:
        if channel.front.channels.get(channel.rid) is channel:
            log.error(
                "%s: a timed-out request is still running (%s); replacing this worker",
                self.name,
                channel.label,
            )
            self._tell(status.STUCK)
            self.retire.set()

    def _cancel_all(self) -> None:
        current = self.front
        if current is None:
            return
        for channel in list(current.channels.values()):
            self._update(channel, 0, cancel=True)

    # --- the app threads ---

    def _serve(self) -> None:
        ident = threading.get_ident()
        while True:
            try:
                if not self._serve_one(ident):
                    return
            except AppTimeout:
                pass  # delivered after its request had ended: nothing left to interrupt

    def _serve_one(self, ident: int) -> bool:
        """Run one request from the queue in thread `ident`; False at the stop mark."""
        channel = self.requests.get()
        if channel is None:
            return False
        channel.thread = ident
        channel.started = time.monotonic()
        try:
            self._handle(channel.request, channel)
        except AppTimeout:
            # Raised between two statements of ours rather than in the app: the front has
            # answered 504 already; free the thread.
            with contextlib.suppress(LinkClosed):
                channel.front.send(link.encode_abort(channel.rid))
        except Exception:
            # A bug of ours, not the app's (those are answered with a 500): the thread must
            # live on.
            log.exception("unexpected error serving a request")
        finally:
            channel.front.channels.pop(channel.rid, None)
        if next(self.served) == self.max_requests:
            log.info("%s: served %d requests, recycling", self.name, self.max_requests)
            self._tell(status.RECYCLE)
        return True

    def _response(self, req: link.Request, channel: Channel) -> Response:
        head = req.method == b"HEAD"
        return Response(channel, self.heads, head, req.request_id)

    def _handle(self, req: link.Request, channel: Channel) -> None:
        response = self._response(req, channel)
        app = self.app
        assert app is not None
        stream = None
        try:
            # Inside the try: a request that fails here (its spooled body gone, say) must
            # still be answered, or the front would count this thread busy for ever.
            environ = self.environ.build(req, channel.body)
            # Middleware may replace wsgi.input in the environ; close the stream we opened.
            stream = environ["wsgi.input"]
            run_app(app, environ, response)
        except (LinkClosed, AppTimeout):
            # The client went away (or the front): the app's iterable is closed; tell the
            # front the thread is free, if it is still there to hear it.
            with contextlib.suppress(LinkClosed):
                channel.front.send(link.encode_abort(channel.rid))
        except Exception:
            log.exception(
                "error handling %s %s", req.method.decode("latin-1"), req.target.decode("latin-1")
            )
            with contextlib.suppress(LinkClosed):
                if response.head_sent:
                    response.abort()  # the client sees a truncated response, never a fake one
                else:
                    self._response(req, channel).error(500)
        finally:
            if stream is not None:
                stream.close()
            if channel.body is not None:
                channel.body.close()


# What a worker takes from the front; anything else stops the worker (Worker._read).
RECEIVERS: link.Receivers[Worker] = link.Receivers(
    link.on_request(Worker._on_request),
    link.on(link.Window)(Worker._on_window),
    link.on(link.Cancel)(Worker._on_cancel),
    link.on(link.Taken)(Worker._on_taken),
    link.on(link.Timeout)(Worker._on_timeout),
    link.on(link.Drained)(Worker._on_drained),
)
