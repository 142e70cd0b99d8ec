"""The front process: an event loop that owns every client connection.

It serves on the listening sockets the master bound (up to --max-connections at once, making
room for a new client by closing an idle or slow one: front/slots.py, front/accept.py),
accepts worker links on one link socket per app (maitred.apps), each feeding that app's own
dispatcher, and sweeps the connections a few
times per shortest timeout, at least once a second, enforcing the timeouts of
front/timeouts.py (one pass over the connections is cheaper than a timer per request),
checking that file descriptors have not run out (front/accept.py), and telling the master it is
alive (a HEARTBEAT on its status pipe: a front that stops is killed, see --front-timeout);
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
import contextlib
import ipaddress
import logging
import os
import signal
import socket
from collections.abc import Mapping, Sequence, Sized
from typing import TYPE_CHECKING

from setproctitle import setproctitle

from maitred import apps, heap, logs, privileges, sockets, status
from maitred.config import Config
from maitred.front import inflight
from maitred.front.accept import (
    AcceptGate,
    Accepting,
    accept_errors,
    fit_fd_limit,
)
from maitred.front.accesslog import AccessLog
from maitred.front.apptable import AppTable
from maitred.front.connection import ClientConnection
from maitred.front.dispatcher import Dispatcher
from maitred.front.exchange import HEALTH, Exchange
from maitred.front.health import HealthCheck
from maitred.front.inflight import Activity
from maitred.front.limittable import LimitTable
from maitred.front.load import REPORT_INTERVAL, SAMPLE_INTERVAL, LoadMeter, watch
from maitred.front.metrics import FrontCounters
from maitred.front.proxy import ProxyHeaderGate
from maitred.front.router import Router
from maitred.front.slots import Slot, Slots, Verdict
from maitred.front.timeouts import ConnectionTimeouts
from maitred.http.errors import RETRY_AFTER, simple_response
from maitred.http.parser import Limits
from maitred.http.response import DateCache
from maitred.readiness import Hold, Readiness, ReadinessState

if TYPE_CHECKING:
    from maitred.front.tls import FrontTLS

log = logging.getLogger("maitred.error")

SWEEP_INTERVAL = 1.0  # longest pause between --timeout checks
STOP_POLL = 0.05  # seconds between checks that a graceful stop is complete
MIN_EXPIRY_INTERVAL = 0.05  # the finest grain of --timeout checks
HEARTBEAT_INTERVAL = 1.0  # the master hears from a front about this often
# Handled by the event loop; USR2 comes from the master only: the server stops after
# --shutdown-delay, so answer readiness checks 503 from now on (maitred.readiness). SIGHUP:
# load the TLS certificate again (front/tls.py).
LOOP_SIGNALS = (signal.SIGTERM, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP)
# SERVER_NAME, SERVER_PORT and url scheme of a connection (the end of its peer tuple); that of
# a Unix-socket listener, where there are no addresses (server_end).
ServerEnd = tuple[str, str, str]
UNIX_END: ServerEnd = ("localhost", "", "http")
FRONT_START_FAILED = 1  # exit status of a front that could not switch to --user
# A global, read as a connection's slot changes: an Enum member read as a class attribute costs
# a Python call in CPython 3.11 (front/states.py).
PAUSED = Accepting.PAUSED


def gateway_classes(protocols: Sequence[str]) -> Mapping[str, type[ClientConnection]]:
    """The connection classes of the protocols other than HTTP, by protocol.

    The gateways (uwsgi://, fastcgi://) are imported only by a front that has such a listener:
    their modules would take memory in every front that serves HTTP alone.
    """
    if all(protocol in (sockets.HTTP, sockets.HTTPS) for protocol in protocols):
        return {}
    from maitred.front.gateway import GATEWAYS

    return GATEWAYS


def open_connections(connections: Sized, tls: FrontTLS) -> Sized:
    """What a front with TLS listeners counts against --max-connections: its connections and
    its handshakes under way. front/tls.py is imported only by such a front (like the
    gateways, see gateway_classes)."""
    from maitred.front.tls import OpenConnections

    return OpenConnections(connections, tls.handshakes)


def server_end(listener: socket.socket) -> ServerEnd | None:
    """SERVER_NAME, SERVER_PORT and scheme of every plain connection accepted on `listener`,
    or None when they differ between connections: a listener on a wildcard address (0.0.0.0,
    [::]) has each connection's own local address. Settled once per listener, it spares a new
    connection the transport's lookups of its local address and TLS object, and the strings
    they build: about half of what the peer tuple costs (uvloop and asyncio both call
    getsockname(2) on every accepted socket anyway, before the front hears of it)."""
    if listener.family not in (socket.AF_INET, socket.AF_INET6):
        return UNIX_END
    try:
        host, port = listener.getsockname()[:2]
        unspecified = ipaddress.ip_address(host.partition("%")[0]).is_unspecified
    except (OSError, ValueError):
        return None  # closed, or an address it cannot read: ask each connection
    return None if unspecified else (host, str(port), "http")


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
        # The apps it serves (their max-queue its share of theirs: maitred.frontplan), each
        # with a dispatcher of its own.
        self.apps = tuple(found) if found is not None else apps.resolve(cfg)
        self.dispatchers = {
            app.name: Dispatcher(loop, app.cfg.max_queue, app.cfg.queue_timeout, app.label)
            for app in self.apps
        }
        self.limits = Limits(
            request_line=cfg.limit_request_line,
            fields=cfg.limit_request_fields,
            field_size=cfg.limit_request_field_size,
            body=cfg.limit_request_body,  # the router's rules may count instead (use_apps)
        )
        self.connections: set[ClientConnection] = set()
        self.opened = 0  # connections opened so far: its activity, for the idle trim
        self.trim = heap.IdleTrim()  # the heap's free pages go back once it is idle
        self.slots: Slots[ClientConnection] = Slots(
            cfg.max_connections, cfg.max_connections_per_ip, ClientConnection.slot, loop.time
        )
        self._warned: set[str] = set()  # what was logged as a warning once (then debug)
        shortest = min((a.cfg.queue_timeout for a in self.apps if a.cfg.queue_timeout), default=0)
        self.timeouts = ConnectionTimeouts(cfg.replace(queue_timeout=shortest))
        self.gate: AcceptGate | None = None
        self.date = DateCache()
        self.access = (
            AccessLog(cfg.access_logfile, cfg.access_log_format, loop)
            if cfg.access_logfile
            else None
        )
        # Ready once every app it started with has a worker that takes requests
        # (front/apptable.py: an app that joins later holds nothing back).
        self.readiness = ReadinessState(lambda: self.table.ready(), hold)
        self.health = (
            HealthCheck(cfg.health_path, self.readiness, self.date, cfg.log_health_checks)
            if cfg.health_path
            else None
        )
        self.router = Router(self)
        self.table = AppTable(self)  # what else it keeps per app; new tables at run time
        # --stats-bind: what it answers, counted per app for the master (front/metrics.py).
        self.counters = (
            FrontCounters(((app.name, app.label) for app in self.apps), self.router.caches)
            if cfg.stats_bind
            else None
        )
        # The requests it holds, for the status page and `maitred ctl top` (the control
        # socket is always on): a walk once a second, nothing per request (front/inflight.py).
        self.activity = Activity(((app.name, app.label) for app in self.apps), self.dispatchers)
        self.stopping = False
        # The connection class of each listener that does not speak HTTP (serve).
        self.connection_classes: dict[socket.socket, type[ClientConnection]] = {}
        # The server end of the peer of each listener's plain connections (server_end).
        self.server_ends: dict[socket.socket, ServerEnd | None] = {}
        self.stopped: asyncio.Future[None] = loop.create_future()
        self.master_pid = os.getppid()
        self.status_fd = -1  # the write end of the status pipe to the master
        self.last_beat = 0.0

    @staticmethod
    def peer_info(
        transport: asyncio.BaseTransport, server: ServerEnd | None = None
    ) -> tuple[str, str, str, str, str]:
        """(REMOTE_ADDR, REMOTE_PORT, SERVER_NAME, SERVER_PORT, url scheme) of a connection;
        `server` is the last three when its listener says them for all (:func:`server_end`)."""
        if server is not None:
            if server is UNIX_END:
                return ("", "", *server)  # no addresses: nothing to ask
            remote = transport.get_extra_info("peername")
            if isinstance(remote, tuple):
                return (remote[0], str(remote[1]), *server)
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        scheme = "http" if transport.get_extra_info("ssl_object") is None else "https"
        if isinstance(local, tuple):
            remote = peer if isinstance(peer, tuple) else ("", 0)
            return (remote[0], str(remote[1]), local[0], str(local[1]), scheme)
        return ("", "", "localhost", "", scheme)  # a unix socket: no addresses to report

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
        self.slots.limit = limit = fit_fd_limit(self.cfg.max_connections)
        self.gate = AcceptGate(
            loop,
            self.new_connection,
            listeners,
            self.cfg.backlog,
            self.slots if self.tls is None else open_connections(self.slots, self.tls),
            limit,
            self.slots.room_at,
        )
        loop.set_exception_handler(accept_errors(self.gate.shortage))
        await self.gate.start()
        await self.table.start(links)
        tasks = [loop.create_task(self._sweep())]
        if self.status_fd >= 0:
            tasks.append(loop.create_task(self._report_load()))
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
        self._beat(now)
        self.trim.check(self.opened, idle=not self.connections)

    def _beat(self, now: float) -> None:
        """Tell the master the loop runs; short sweep intervals do not make it chattier."""
        if self.status_fd < 0 or now - self.last_beat < HEARTBEAT_INTERVAL / 2:
            return
        self.last_beat = now
        with contextlib.suppress(OSError):  # a full pipe (the master is busy) or no master
            os.write(self.status_fd, status.encode(status.HEARTBEAT))

    async def _report_load(self) -> None:
        """Sample each pool's load, and report it to the master once per REPORT_INTERVAL, or
        at once when its requests begin to wait (front/load.py)."""
        samples = round(REPORT_INTERVAL / SAMPLE_INTERVAL)
        while True:
            meters = list(self.table.meters.values())  # the apps change at run time
            for _ in range(samples):
                await watch(meters, SAMPLE_INTERVAL, self._report)
                now = self.loop.time()
                for meter in meters:
                    if meter.sample(now):
                        self._report(meter, now)
            for meter in meters:
                self._report(meter, now)
            self.report_metrics()

    def _report(self, meter: LoadMeter, now: float) -> None:
        """One pool's load in one write: at most PIPE_BUF, so it goes whole or not at all."""
        with contextlib.suppress(OSError):  # a full pipe (a busy master), no master
            os.write(self.status_fd, status.encode_load(meter.report(now)))

    def report_metrics(self) -> None:
        """The requests it holds now and, with --stats-bind, each app's counters so far, one
        whole message each."""
        if self.status_fd < 0:
            return
        reports = self.activity.snapshots(self.connections, self.loop.time())
        if self.counters is not None:
            reports = [*self.counters.snapshots(self.connections), *reports]
        for figures in reports:
            message = inflight.encode(figures)
            if message is None:
                self._warn_once("metrics", "metrics of %s do not fit one message", figures["app"])
                continue
            with contextlib.suppress(OSError):  # a full pipe: the next report says it all
                os.write(self.status_fd, message)

    # --- connection slots (front/slots.py) ---

    def connection_opened(self, conn: ClientConnection) -> None:
        self.connections.add(conn)
        self.opened += 1
        verdict, evicted = self.slots.admit(conn, conn.peer[0])
        if evicted is not None:
            self._make_room(evicted)
        if verdict is Verdict.ADDRESS_FULL:
            self._warn_once(
                "address",
                "front: refusing a connection from %s: it holds %d (max-connections-per-ip)",
                conn.peer[0],
                self.slots.held_by(conn.peer[0]),
            )
        if verdict is not Verdict.ADMITTED:
            self._turn_away(conn)
        if self.gate is not None:
            self.gate.update()

    def slot_changed(self, conn: ClientConnection, slot: Slot) -> None:
        """The connection went idle or began a head (front/slots.py)."""
        self.slots.entered(conn, slot)
        gate = self.gate
        if gate is not None and gate.state is PAUSED:
            gate.update()  # it may be a slot a newcomer waiting in the backlog can have

    def connection_closed(self, conn: ClientConnection) -> None:
        self.connections.discard(conn)
        self.slots.release(conn)
        if self.gate is not None:
            self.gate.update()

    def _make_room(self, conn: ClientConnection) -> None:
        """Close a connection whose slot a new one took: silently when idle, with 503 when it
        was sending a request head (it has been for HEAD_GRACE seconds at least)."""
        sending = conn.parser.in_head
        self._warn_once(
            "evict",
            "front: all %d connection slots taken (max-connections): closing %s from %s to "
            "make room for a new one",
            self.slots.limit,
            "a connection slow to send its request head" if sending else "an idle connection",
            conn.peer[0],
        )
        if sending:
            self.access_log_error(conn.peer, 503)
            self._turn_away(conn)
        else:
            conn.close()

    def _turn_away(self, conn: ClientConnection) -> None:
        conn.write(simple_response(503, self.date.get(), extra=RETRY_AFTER))
        conn.close()

    def _warn_once(self, kind: str, message: str, *args: object) -> None:
        """A warning the first time, debug after: an attack would otherwise flood the log."""
        log.log(logging.DEBUG if kind in self._warned else logging.WARNING, message, *args)
        self._warned.add(kind)

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
        front.status_fd = status_fd
    if control is not None:
        front.table.listen(control)
    try:
        loop.run_until_complete(front.serve(listeners, links, protocols))
        front.report_metrics()  # the last counts: the master keeps them past this front
    finally:
        front.router.close_caches()  # no stored body outlives its front (--cache-dir)
        loop.close()
    return 0
