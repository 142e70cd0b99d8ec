"""The worker process: T threads, each serving requests one at a time over its own link.

Theory of operation
-------------------
A thread connects to the front's link socket, says HELLO_THREAD, and blocks reading its link.
The front sends it a REQUEST only when it is idle, so the thread needs no queue: it reads one
request, runs the app, writes the response frames, and reads again. If the front closes the link
(its client went away mid-response, or the front restarted), the thread's next write fails, the
app's iterable is closed, and the thread connects again.

The main thread only watches signals and the master. On SIGTERM it sends DRAIN on the control
link; the front then sends no new work and closes each thread link once its request is done,
which is how every thread learns to exit. Threads are daemons, so a stuck one cannot keep the
process alive past the graceful timeout.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable

from setproctitle import setproctitle

from maitred import link
from maitred.config import Config
from maitred.http.response import DateCache
from maitred.signals import SignalQueue
from maitred.worker.wsgi import EnvironBuilder, LinkClosed, Request, Response, WSGIApp, run_app

log = logging.getLogger("maitred.error")

# Exit status of a worker whose app failed to import: the master stops instead of respawning.
APP_LOAD_ERROR = 4
READY = b"R"  # written on the ready pipe once the app is imported and the threads run

RECONNECT_DELAY = 0.05  # the front may be restarting; its link listener keeps a backlog
WATCH_INTERVAL = 1.0  # how often the main thread checks that its master is alive


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
        self.draining = False
        self.date = DateCache()
        self.environ = EnvironBuilder(cfg.root_path, cfg.threads, cfg.workers)

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
        control = self._connect()
        control.sendall(
            link.encode(link.HELLO_WORKER, (self.pid, self.worker_id, self.cfg.threads))
        )
        threads = [
            threading.Thread(target=self._serve, args=(i,), name=f"maitred-{i}", daemon=True)
            for i in range(self.cfg.threads)
        ]
        for thread in threads:
            thread.start()
        os.write(self.ready_fd, READY)
        os.close(self.ready_fd)
        while os.getppid() == self.master_pid:
            received, _ = signals.wait(WATCH_INTERVAL)
            if signal.SIGQUIT in received:
                return 0
            if signal.SIGTERM in received:
                return self._drain(control, threads)
        log.warning("worker %d: master is gone, exiting", self.worker_id)
        return 0

    def _drain(self, control: socket.socket, threads: list[threading.Thread]) -> int:
        self.draining = True
        # If the front is gone its links are closed too, and the threads exit on their own.
        with contextlib.suppress(OSError):
            control.sendall(link.encode(link.DRAIN))
        deadline = time.monotonic() + self.cfg.graceful_timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return 0

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.link_path)
        except BaseException:
            sock.close()
            raise
        return sock

    def _serve(self, index: int) -> None:
        hello = link.encode(link.HELLO_THREAD, (self.pid, index))
        while not self.draining:
            try:
                sock = self._connect()
            except OSError:
                time.sleep(RECONNECT_DELAY)
                continue
            try:
                sock.sendall(hello)
                self._serve_link(sock)
            except (OSError, LinkClosed, link.LinkError) as exc:
                log.debug("thread %d: link closed (%s)", index, exc)
            except Exception:
                # A bug of ours, not the app's (those are answered with a 500): the thread
                # must live on, so log it and start over on a fresh link.
                log.exception("thread %d: unexpected error; reconnecting", index)
            finally:
                sock.close()

    def _serve_link(self, sock: socket.socket) -> None:
        stream = sock.makefile("rb")
        send = _sender(sock)
        with stream:
            while frame := link.read_frame(stream):
                kind, value = frame
                if kind != link.REQUEST:
                    raise link.LinkError(f"unexpected frame type {kind} from the front")
                self._handle(Request(*value), send)

    def _handle(self, req: Request, send: Callable[[bytes], None]) -> None:
        response = Response(send, self.date, req.method == b"HEAD")
        app = self.app
        assert app is not None
        environ = self.environ.build(req)
        # Middleware may replace wsgi.input in the environ; close the stream we opened.
        stream = environ["wsgi.input"]
        try:
            run_app(app, environ, response)
        except LinkClosed:
            raise
        except Exception:
            log.exception(
                "error handling %s %s", req.method.decode("latin-1"), req.target.decode("latin-1")
            )
            if response.head_sent:
                response.abort()  # the client sees a truncated response, never a fake one
            else:
                error = Response(send, self.date, req.method == b"HEAD")
                error.start_response(
                    "500 Internal Server Error", [("Content-Type", "text/plain; charset=utf-8")]
                )
                error.send_full(b"Internal Server Error\n")
        finally:
            stream.close()


def _sender(sock: socket.socket) -> Callable[[bytes], None]:
    sendall = sock.sendall

    def send(data: bytes) -> None:
        try:
            sendall(data)
        except OSError as exc:
            raise LinkClosed(str(exc)) from None

    return send
