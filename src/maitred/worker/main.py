"""The worker process: one link to the front, T threads running the app.

Theory of operation
-------------------
A reader thread owns the link's receiving side (worker/linkreader.py). A REQUEST becomes a
:class:`Channel` (the request, its id, its flow-control credit, whether it was cancelled) and
goes on a queue that the T app threads take from; the front never sends more requests than
there are threads, so the queue holds at most T. WINDOW and CANCEL frames update the request's
channel and wake a thread waiting for credit. App threads send their frames themselves, under
one lock per link.

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
import itertools
import logging
import os
import queue
import random
import signal
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
from maitred.worker.linkreader import RECEIVERS, AppTimeout, LinkReader
from maitred.worker.warmup import HOST, warm_up
from maitred.worker.wsgi import (
    HeadWriter,
    LinkClosed,
    Response,
    WSGIApp,
    run_app,
)

# The frames a worker takes from the front, and the exception that stops a request past
# --timeout: both the reader's (worker/linkreader.py).
__all__ = ["RECEIVERS", "AppTimeout", "Worker"]

log = logging.getLogger("maitred.error")

# Exit status of a worker whose app failed to import: the master stops instead of respawning.
APP_LOAD_ERROR = 4
# Exit status of a worker that stopped because the front broke the link protocol.
LINK_PROTOCOL_ERROR = 5

WATCH_INTERVAL = 1.0  # how often the main thread checks that its master is alive
LINK_WAIT = 5.0  # most seconds READY waits for the first link to the front


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
        self.app = app
        self.status_fd = status_fd
        self.master_pid = master_pid
        self.pid = os.getpid()
        self.heads = HeadWriter(DateCache(), cfg.request_id_header)
        self.environ = EnvironBuilder(cfg.root_path, cfg.threads, cfg.workers)
        self.requests: queue.SimpleQueue[Channel | None] = queue.SimpleQueue()
        # The reader thread: the link, its table of requests, the frames the front sends.
        self.reader = LinkReader(
            self.name,
            link_path,
            link.encode_hello(0, self.pid, worker_id, cfg.threads),
            self.requests,
            cfg.response_buffer_size,  # the credit each request starts with
            self._stop_broken_link,
            self._watch_stuck,
        )
        self._read = self.reader.read
        self._on_request = self.reader.on_request
        self.drained = self.reader.drained
        self.linked = self.reader.linked  # set once HELLO went out on a link
        self.retire = threading.Event()  # set when a stuck thread or a broken link stops it
        self.exit_status = 0
        self.served = itertools.count(1)  # next() is atomic: app threads share it
        self.trim = heap.IdleTrim()  # the heap's free pages go back once it is idle
        jitter = random.randint(0, cfg.max_requests_jitter) if cfg.max_requests else 0
        self.max_requests = cfg.max_requests + jitter
        self.slow = stacks.SlowLog(cfg.slow_request_log, app_name)

    @property
    def front(self) -> FrontConnection | None:
        """The link to the front now, if any (the reader's)."""
        return self.reader.front

    @front.setter
    def front(self, current: FrontConnection | None) -> None:
        self.reader.front = current

    @property
    def draining(self) -> bool:
        """Stopping: the reader does not link again once its link drops."""
        return self.reader.draining

    @draining.setter
    def draining(self, value: bool) -> None:
        self.reader.draining = value

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
        self.trim.check(self.reader.received, idle=not in_flight)

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

    def _stop_broken_link(self, exc: link.ProtocolViolation) -> None:
        """The front sent what is not one of its messages: stop, rather than reconnect to it."""
        log.error("%s: the front broke the link protocol, stopping: %s", self.name, exc)
        self.exit_status = LINK_PROTOCOL_ERROR
        self.draining = True  # no reconnecting
        self.retire.set()  # the main thread drains what the threads hold, then exits

    # --- the watchdog: a timed-out request whose thread does not stop ---

    def _watch_stuck(self, channel: Channel) -> None:
        """The reader interrupted `channel`'s thread: check it stopped within the graceful
        timeout."""
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
            # front the thread is free, if it is still there to hear it and the response did
            # not end already (a TIMEOUT crossing its FULL). On the link itself: a cancelled
            # channel refuses to send.
            if not response.ended:
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
