"""The front process: an event loop that owns every client connection.

It serves on the listening sockets the master bound (up to --max-connections at once, making
room for a new client by closing an idle or slow one: front/admission.py, front/accept.py),
accepts worker links on one link socket per app (maitred.apps), each feeding that app's own
dispatcher, and sweeps the connections a few
times per shortest timeout, at least once a second, enforcing the timeouts of
front/timeouts.py (one pass over the connections is cheaper than a timer per request),
checking that file descriptors have not run out (front/accept.py), and telling the master it is
alive (a HEARTBEAT on its status pipe, front/reporter.py: a front that stops is killed);
a sweep that finds no connection open after some were gives the heap's free pages back
(maitred.heap).
About once a second it also reports each pool's load on that pipe (front/load.py), from which
the master scales the pool.

Its readiness (maitred.readiness: STARTING until a worker links, READY, DRAINING once told
to stop) answers --health-path (front/health.py). SIGUSR2 from the master says the server stops
after --shutdown-delay: the front turns DRAINING but serves and accepts on until its SIGTERM.

On SIGTERM it takes the connections waiting in its listeners' backlogs and closes the
listeners (front/accept.py: from then on a new client is refused at once), lets requests in
flight finish within the graceful timeout, closes idle connections, and exits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from setproctitle import setproctitle

from maitred import apps, heap, logs, privileges
from maitred.config import Config
from maitred.front.accept import (
    AcceptGate,
    accept_errors,
    fit_fd_limit,
)
from maitred.front.accesslog import AccessLog
from maitred.front.admission import Admission
from maitred.front.apptable import AppTable
from maitred.front.connection import ClientConnection
from maitred.front.dispatcher import Dispatcher
from maitred.front.exchange import HEALTH, Exchange
from maitred.front.health import HealthCheck
from maitred.front.inflight import Activity
from maitred.front.limittable import LimitTable
from maitred.front.listeners import (
    UNIX_END,
    ServerEnd,
    gateway_classes,
    open_connections,
    peer_info,
    server_end,
)
from maitred.front.metrics import FrontCounters
from maitred.front.proxy import ProxyHeaderGate
from maitred.front.reporter import Reporter
from maitred.front.router import Router
from maitred.front.slots import Slot
from maitred.front.timeouts import ConnectionTimeouts
from maitred.http.parser import Limits
from maitred.http.response import DateCache
from maitred.readiness import Hold, Readiness, ReadinessState

if TYPE_CHECKING:
    from maitred.front.tls import FrontTLS

__all__ = ["UNIX_END", "Front", "new_event_loop", "run_front", "server_end"]

log = logging.getLogger("maitred.error")

SWEEP_INTERVAL = 1.0  # longest pause between --timeout checks
STOP_POLL = 0.05  # seconds between checks that a graceful stop is complete
MIN_EXPIRY_INTERVAL = 0.05  # the finest grain of --timeout checks
# Handled by the event loop; USR2 comes from the master only: the server stops after
# --shutdown-delay, so answer readiness checks 503 from now on (maitred.readiness). SIGHUP:
# load the TLS certificate again (front/tls.py).
LOOP_SIGNALS = (signal.SIGTERM, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP)
FRONT_START_FAILED = 1  # exit status of a front that could not switch to --user


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when it is installed, else the standard asyncio loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class Front:
    def __init__(
        self,
        cfg: Config,
        loop: asyncio.AbstractEventLoop,
        found: Sequence[apps.App] | None = None,
        tls: FrontTLS | None = None,
        limit_table: LimitTable | None = None,
        hold: Hold | None = None,
    ) -> None:
        self.cfg = cfg
        self.loop = loop
        self.tls = tls  # None: no TLS listener
        # The table of the locations' rate and connection limits (front/limits.py): the
        # master's, shared with the other fronts; None: a front on its own (tests).
        self.limit_table = limit_table
        self.limits = Limits(
            request_line=cfg.limit_request_line,
            fields=cfg.limit_request_fields,
            field_size=cfg.limit_request_field_size,
            body=cfg.limit_request_body,  # the router's rules may count instead (use_apps)
        )
        self.trim = heap.IdleTrim()  # the heap's free pages go back once it is idle
        self.gate: AcceptGate | None = None
        self.date = DateCache()
        self.access = (
            AccessLog(cfg.access_logfile, cfg.access_log_format, loop)
            if cfg.access_logfile
            else None
        )
        # The connections and their slots; a connection calls these methods straight, as the
        # front's own (front/admission.py).
        self.admission = Admission(
            loop, cfg.max_connections, cfg.max_connections_per_ip, self.date, self.access_log_error
        )
        self.connections = self.admission.connections
        self.connection_opened = self.admission.connection_opened
        self.slot_changed = self.admission.slot_changed
        self.connection_closed = self.admission.connection_closed
        # Ready once every app it started with has a worker that takes requests
        # (front/apptable.py: an app that joins later holds nothing back).
        self.readiness = ReadinessState(lambda: self.table.ready(), hold)
        self.health = (
            HealthCheck(cfg.health_path, self.readiness, self.date, cfg.log_health_checks)
            if cfg.health_path
            else None
        )
        self._add_apps(tuple(found) if found is not None else apps.resolve(cfg))
        self.stopping = False
        # The connection class of each listener that does not speak HTTP (serve).
        self.connection_classes: dict[socket.socket, type[ClientConnection]] = {}
        # The server end of the peer of each listener's plain connections (server_end).
        self.server_ends: dict[socket.socket, ServerEnd | None] = {}
        self.stopped: asyncio.Future[None] = loop.create_future()
        self.master_pid = os.getppid()

    def _add_apps(self, found: tuple[apps.App, ...]) -> None:
        """What it keeps per app it serves (their max-queue its share of theirs:
        maitred.frontplan): a dispatcher each, their routes, counters and status pipe."""
        cfg, loop = self.cfg, self.loop
        self.apps = found
        self.dispatchers = {
            app.name: Dispatcher(loop, app.cfg.max_queue, app.cfg.queue_timeout, app.label)
            for app in found
        }
        shortest = min((a.cfg.queue_timeout for a in found if a.cfg.queue_timeout), default=0)
        self.timeouts = ConnectionTimeouts(cfg.replace(queue_timeout=shortest))
        self.router = Router(self)
        self.table = AppTable(self)  # what else it keeps per app; new tables at run time
        # --stats-bind: what it answers, counted per app for the master (front/metrics.py).
        self.counters = (
            FrontCounters(((app.name, app.label) for app in found), self.router.caches)
            if cfg.stats_bind
            else None
        )
        # The requests it holds, for the status page and `maitred ctl top` (the control
        # socket is always on): a walk once a second, nothing per request (front/inflight.py).
        self.activity = Activity(((app.name, app.label) for app in found), self.dispatchers)
        self.reporter = Reporter(
            loop,
            self.table.meters,
            self.connections,
            self.activity,
            self.counters,
            self.admission.warn_once,
        )

    peer_info = staticmethod(peer_info)  # a connection's peer, once per connection

    async def serve(
        self,
        listeners: list[socket.socket],
        links: Mapping[str, socket.socket],
        protocols: Sequence[str] = (),
    ) -> None:
        """Serve until stopped: `listeners`, each speaking its protocol in `protocols` (HTTP
        for those past its end: maitred.sockets.PROTOCOLS); `links` are the link listeners of
        the apps' workers, by app."""
        loop = self.loop
        gateways = gateway_classes(protocols)
        self.connection_classes = {
            sock: gateways.get(protocol, ClientConnection)
            for sock, protocol in zip(listeners, protocols, strict=False)
        }
        self.server_ends = {sock: server_end(sock) for sock in listeners}
        slots = self.admission.slots
        slots.limit = limit = fit_fd_limit(self.cfg.max_connections)
        self.gate = self.admission.gate = AcceptGate(
            loop,
            self.new_connection,
            listeners,
            self.cfg.backlog,
            slots if self.tls is None else open_connections(slots, self.tls),
            limit,
            slots.room_at,
        )
        loop.set_exception_handler(accept_errors(self.gate.shortage))
        await self.gate.start()
        await self.table.start(links)
        tasks = [loop.create_task(self._sweep())]
        if self.reporter.status_fd >= 0:
            tasks.append(loop.create_task(self.reporter.report_load()))
        try:
            await self.stopped
        finally:
            for task in tasks:
                task.cancel()
            self.table.close()
            if self.access is not None:
                self.access.flush()

    def reload_tls(self) -> None:
        """SIGHUP from the master: the certificate files changed (front/tls.py)."""
        if self.tls is not None:
            self.tls.reload()

    def new_connection(self, listener: socket.socket) -> asyncio.Protocol:
        """The protocol of a new client connection on `listener`: a TLS handshake first on a
        TLS listener, a PROXY header first if configured."""
        secure = self.tls
        if secure is not None and secure.serves(listener):
            from maitred.front.tls import TLSHandshake  # see open_connections

            return TLSHandshake(self, secure)
        kind = self.connection_classes.get(listener, ClientConnection)
        server = self.server_ends.get(listener)
        if self.cfg.proxy_protocol:
            return ProxyHeaderGate(self, lambda: self._client(kind, server))
        return self._client(kind, server)

    def _client(self, kind: type[ClientConnection], server: ServerEnd | None) -> ClientConnection:
        conn = kind(self)
        conn.server = server
        return conn

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.timeouts.interval)
            self.sweep()

    def sweep(self) -> None:
        """One pass: the master, descriptors, timeouts, queues, heartbeat, the idle trim."""
        if os.getppid() != self.master_pid:
            log.warning("front: the master is gone, stopping")
            self.shutdown()
        now = self.loop.time()
        if self.gate is not None:
            self.gate.check_descriptors()
        self.timeouts.sweep(self.connections, now)
        for dispatcher in self.dispatchers.values():
            dispatcher.expire_queued(now)
            dispatcher.report_shed()
        self.reporter.beat(now)
        self.trim.check(self.admission.opened, idle=not self.connections)

    async def expire_requests(self, dispatcher: Dispatcher, timeout: float) -> None:
        """Enforce an app's --timeout, checking a few times per timeout period."""
        interval = min(SWEEP_INTERVAL, max(MIN_EXPIRY_INTERVAL, timeout / 4))
        while True:
            await asyncio.sleep(interval)
            dispatcher.expire(self.loop.time() - timeout)

    def shutdown(self) -> None:
        """Graceful stop: no new connections or requests; finish what is in flight."""
        if self.stopping:
            return
        self.stopping = True
        self.readiness.drain()
        adopting = self.gate.stop() if self.gate is not None else []
        log.info(
            "front: stopping, %d connections open, %d taken from the listen backlog",
            len(self.connections),
            len(adopting),
        )
        for conn in list(self.connections):
            # A kept-alive connection between requests may be closed (its client retries,
            # RFC 9112 section 9.3.1); one that has not sent its first request yet may be
            # carrying it right now, so it is served (with Connection: close) or swept later.
            if conn.slot() is Slot.IDLE:
                conn.close()
        self.loop.create_task(self._await_drained(adopting))

    async def _await_drained(self, adopting: list[asyncio.Task[None]]) -> None:
        """Wait for the connections in flight, the ones taken from the backlogs included, and
        for TLS handshakes under way: their clients connected before the stop too."""
        deadline = self.loop.time() + self.cfg.graceful_timeout
        # Each task handles its own errors; one that fails anyway must not stop the drain.
        await asyncio.gather(*adopting, return_exceptions=True)
        tls = self.tls
        in_flight = self.connections if tls is None else open_connections(self.connections, tls)
        while in_flight and self.loop.time() < deadline:
            await asyncio.sleep(STOP_POLL)
        for conn in list(self.connections):
            log.warning("front: graceful timeout, closing a connection with work in flight")
            conn.close()
        if not self.stopped.done():
            self.stopped.set_result(None)

    def drain_soon(self) -> None:
        """USR2: the server stops after --shutdown-delay; until the TERM, serve as before."""
        if self.readiness.state is not Readiness.DRAINING:
            log.info("front: the server stops soon; the health check answers 503")
        self.readiness.drain()

    def reopen_logs(self) -> None:
        """USR1: reopen log files, after logrotate moved them."""
        logs.reopen()
        if self.access is not None:
            self.access.reopen()

    # --- access log ---

    def log_access(self, exchange: Exchange) -> None:
        counters = self.counters
        if counters is not None and exchange.source != HEALTH:
            counters.count(exchange, self.loop.time())  # a health check is not the app's
        location = exchange.location
        if location is not None and not location.access_log:
            return  # access-log = false in its location (front/rules.py)
        if self.access is not None and (self.health is None or not self.health.quiet(exchange)):
            self.access.write(exchange)

    def access_log_error(self, peer: tuple[str, str, str, str, str], status: int) -> None:
        if self.access is not None:
            self.access.write_error(peer, status)


def run_front(
    cfg: Config,
    listeners: list[socket.socket],
    links: Mapping[str, socket.socket],
    master_pid: int,
    name: str = "front",
    status_fd: int = -1,
    found: Sequence[apps.App] | None = None,
    protocols: Sequence[str] = (),
    tls: FrontTLS | None = None,
    control: socket.socket | None = None,
    limit_table: LimitTable | None = None,
    hold: Hold | None = None,
) -> int:
    """Main of a front process (after fork); `links` are its link listeners by app, `name`
    says which front (maitred.frontplan), `status_fd` is the write end of its status pipe to
    the master, `found` the apps it serves (default: the one of `cfg`), `protocols` what
    each listener speaks (maitred.sockets), `tls` its TLS listeners and context, if any,
    `control` its end of the channel on which the master sends new tables of apps and cache
    purges (maitred.frontapps), `limit_table` the limits' table it shares with the other
    fronts (maitred.frontset), and `hold` the operator's drain (maitred.readiness.Hold)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group; master decides
    # uvloop listens for signals only once the loop runs: one that came before (a TERM from a
    # master that stops at once, its app failing to import) would be lost, and the master
    # would wait out the graceful timeout. Blocked until then, it waits for the loop.
    signal.pthread_sigmask(signal.SIG_BLOCK, LOOP_SIGNALS)
    loop = new_event_loop()
    # Titled once the loop exists: whoever finds the front by its title finds its event loop
    # chosen (uvloop or asyncio), as the tests check.
    setproctitle(f"maitred: {name}")
    asyncio.set_event_loop(loop)
    front = Front(cfg, loop, found, tls, limit_table, hold)
    # The sockets and the access log are open: nothing from here on needs root.
    if not privileges.switch(cfg.user, cfg.group, name):
        loop.close()
        return FRONT_START_FAILED
    loop.add_signal_handler(signal.SIGTERM, front.shutdown)
    loop.add_signal_handler(signal.SIGHUP, front.reload_tls)
    loop.add_signal_handler(signal.SIGQUIT, os._exit, 0)
    loop.add_signal_handler(signal.SIGUSR1, front.reopen_logs)
    loop.add_signal_handler(signal.SIGUSR2, front.drain_soon)
    loop.call_soon(signal.pthread_sigmask, signal.SIG_UNBLOCK, LOOP_SIGNALS)
    front.master_pid = master_pid
    if status_fd >= 0:
        os.set_blocking(status_fd, False)  # a heartbeat must never stop the loop
        front.reporter.status_fd = status_fd
    if control is not None:
        front.table.listen(control)
    try:
        loop.run_until_complete(front.serve(listeners, links, protocols))
        front.reporter.report_metrics()  # the last counts: the master keeps them past this front
    finally:
        front.router.close_caches()  # no stored body outlives its front (--cache-dir)
        loop.close()
    return 0
