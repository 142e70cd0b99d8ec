"""The master's fronts: forking them, restarting them, and replacing them on a reload.

Theory of operation
-------------------
The arbiter (maitred.arbiter) owns the fronts; this is the part of it that keeps them. The
fronts that run one configuration form a generation (maitred.frontplan.Generation): the current
one serves, and a HUP that changes a setting of the fronts opens the next one. The pools' new
workers link to the next generation's fronts; once a new worker of every app has imported its
app, `swap` starts those fronts, and the current ones stop accepting, finish their requests
with their own workers (which the pools give up), and exit; as each one goes, its workers are
stopped after it (`gone`). If no new worker of some app can import it, `drop_next` gives the
next generation up and the fronts serve on with the settings they have.

When only the apps change (--apps-dir, a HUP of the [apps] tables), no generation opens: the
current one binds the new apps' link listeners (`use_apps`), and each of its fronts gets the
new table over its channel (maitred.frontapps), made at its fork, sent again each turn until
it goes through. Purges of the response cache (`purge_cache`) go over the same channels.

A front that dies is restarted (with backoff if it keeps dying, maitred.exits.Restarts), and the
bodies it had spooled are removed. A front that stops sending its heartbeat (--front-timeout) is
killed, and so restarted.

Owned by the master's loop; nothing here runs in a signal handler.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import ssl
from collections.abc import Callable, Collection, Iterable, MutableMapping
from typing import TYPE_CHECKING

from maitred import frontapps, frontplan, sockets, tls
from maitred.children import Child, Exit, FrontChild, WorkerChild
from maitred.config import Config
from maitred.exits import Restarts
from maitred.front.limittable import LimitTable
from maitred.frontplan import Generation
from maitred.pool import Pool
from maitred.readiness import Hold

if TYPE_CHECKING:
    from maitred.front.tls import FrontTLS

log = logging.getLogger("maitred.error")

Fork = Callable[[Callable[[], int]], int]
Listeners = Callable[[], list[list[socket.socket]]]  # the master's, per bind address


class FrontSet:
    """The generations of fronts alive: the current one, the next while a HUP waits for its
    workers, older ones while their fronts finish."""

    def __init__(
        self,
        cfg: Config,
        children: MutableMapping[int, Child],
        fork: Fork,
        listeners: Listeners,
        dirs: tuple[str, str],
        hold: Hold | None = None,
    ) -> None:
        self._children = children  # the arbiter's table of every child, by pid
        self._fork = fork
        self._listeners = listeners
        self._link_dir, self._spool_dir = dirs
        self._hold = hold  # `maitred ctl drain` (maitred.readiness.Hold)
        self._restarts = Restarts()
        self._count = 0
        self.generations: dict[int, Generation] = {}
        self._channels: dict[int, frontapps.Channel] = {}  # front pid -> its channel
        self.current = self._open(cfg)
        self.next: Generation | None = None
        # The TLS context the fronts start with (maitred.tls): the last one built without error.
        self.tls_context: ssl.SSLContext | None = None
        # The locations' rate and connection limits: one table every front inherits, so the
        # limits hold across fronts and generations (maitred.front.limittable).
        self.limit_table = LimitTable(cfg.limit_keys)

    # --- generations ---

    def _open(self, cfg: Config) -> Generation:
        generation = Generation(self._count, cfg, self._link_dir, self._spool_dir)
        self._count += 1
        self.generations[generation.number] = generation
        return generation

    def _close(self, generation: Generation) -> None:
        generation.close()
        self.generations.pop(generation.number, None)

    def open_next(self, cfg: Config) -> None:
        """A reload changed the fronts' settings: the new workers link to new fronts."""
        self.next = self._open(cfg)

    def for_new_workers(self) -> Generation:
        """The generation a worker started now links to (a HUP's new workers: the new fronts)."""
        return self.next or self.current

    def serving(self) -> frozenset[int]:
        """The numbers of the generations that are not on their way out."""
        numbers = {self.current.number}
        if self.next is not None:
            numbers.add(self.next.number)
        return frozenset(numbers)

    def link_listeners(self) -> list[socket.socket]:
        return [sock for g in self.generations.values() for sock in g.links.values()]

    def of(self, generation: Generation) -> list[Child]:
        return [c for c in self._children.values() if c.generation == generation.number]

    def fronts(self) -> list[FrontChild]:
        return [c for c in self._children.values() if isinstance(c, FrontChild)]

    # --- fronts ---

    def start(self) -> None:
        for number in frontplan.numbers(self.current.cfg.fronts):
            self._spawn(number)

    def _spawn(self, number: int) -> None:
        generation = self.current
        cfg = frontplan.front_config(generation.cfg, number, generation.spool_dir(number))
        found = frontplan.front_apps(generation.apps, cfg.fronts, number)
        links = generation.links_of(number)
        everything = [sock for group in self._listeners() for sock in group]
        # Each bind address's group, with the protocol its clients speak (maitred.sockets).
        protocols = [sockets.parse_address(text).protocol for text in cfg.bind]
        served = [
            (sock, protocol)
            for group, protocol in zip(self._listeners(), protocols, strict=True)
            for sock in frontplan.listeners_of(number, cfg.fronts, group)
        ]
        mine = [sock for sock, _ in served]
        secure = self._tls_of(cfg, number)
        read_fd, write_fd = os.pipe()
        master_pid = os.getpid()
        channel, control = frontapps.pair()

        def main() -> int:
            os.close(read_fd)
            channel.close()
            for sock in [*self.link_listeners(), *self.channel_sockets()]:
                if sock not in links.values():
                    sock.close()  # another front's or generation's: it would outlive that one
            for sock in everything:
                if sock not in mine:
                    sock.close()  # another front's: held here, it would outlive that front
            name = frontplan.name(number)
            kinds = [protocol for _, protocol in served]
            # The front's modules (asyncio, the parser, uvloop) are imported in the front: the
            # master and the workers never use them, so they would only take up memory there.
            # Imported in the master they would be shared, but measured (4 x 4, at rest) the
            # tree grows by 1.2 MiB of PSS: the front saves 2.4 MiB, yet the master grows by
            # 0.55 and each worker by 0.75 (it copies more of the master's pages, shares fewer).
            from maitred.front.main import run_front

            plan = (found, kinds, secure, control, self.limit_table, self._hold)
            return run_front(cfg, mine, links, master_pid, name, write_fd, *plan)

        try:
            pid = self._fork(main)
        finally:
            control.close()
        os.close(write_fd)
        self._channels[pid] = frontapps.Channel(channel, links.values(), found)
        front = FrontChild(pid=pid, number=number, status_fd=read_fd, generation=generation.number)
        self._children[pid] = front

    def _tls_of(self, cfg: Config, number: int) -> FrontTLS | None:
        """A front's TLS listeners and the context it starts with; None without TLS."""
        context = self.tls_context
        if context is None:
            return None
        groups = zip(self._listeners(), tls.schemes(cfg), strict=False)
        listeners = [
            sock
            for group, scheme in groups
            if scheme == sockets.HTTPS
            for sock in frontplan.listeners_of(number, cfg.fronts, group)
        ]
        from maitred.front.tls import FrontTLS  # only with TLS listeners (see main() above)

        return FrontTLS(cfg, context, listeners)

    def reload_tls(self) -> None:
        """The certificate files changed: the fronts running load them again."""
        for child in self.fronts():
            child.send(signal.SIGHUP)

    def check(self, now: float, front_timeout: float) -> None:
        """Restarts that are due; liveness by heartbeat (--front-timeout); tables of apps
        and purges still to be sent."""
        for number in self._restarts.due():
            self._spawn(number)
        kill_silent(self.fronts(), now, front_timeout)
        self._tell_apps()

    # --- the apps changing while the fronts run (maitred.frontapps) ---

    def use_apps(self, cfg: Config) -> None:
        """The apps of `cfg` from now on; the fronts' own settings are those they run with.
        The running fronts take the new table without a restart."""
        self.current.use(cfg)
        for child in self.of(self.current):
            channel = self._channels.get(child.pid)
            if channel is not None:
                channel.dirty = True
        self._tell_apps()

    def _tell_apps(self) -> None:
        for each in self._channels.values():
            each.send_purges()  # to every front, those finishing too: their caches still serve
        generation = self.current
        for child in self.fronts():
            channel = self._channels.get(child.pid)
            if channel is None or child.generation != generation.number:
                continue
            found = frontplan.front_apps(generation.apps, generation.cfg.fronts, child.number)
            channel.flush(found, generation.links_of(child.number))

    def channel_sockets(self) -> list[socket.socket]:
        """The master's ends of the fronts' channels: no other child may hold one."""
        return [channel.sock for channel in self._channels.values()]

    def next_start(self) -> float | None:
        return self._restarts.next_due()

    def stop(self) -> None:
        """The server stops: no front starts again."""
        self._restarts.clear()

    def purge_cache(self, purge: frontapps.Purge) -> int:
        """Send a purge of the response cache to every front that has one, now or on a later
        turn (maitred.frontapps); how many fronts it goes to."""
        message = frontapps.encode_purge(purge)
        channels = [self._channels.get(child.pid) for child in self.fronts()]
        return sum(c.purge(message) for c in channels if c is not None and c.cached)

    def exited(self, child: FrontChild, code: int, why: Exit) -> None:
        """A front exited, as `why` (maitred.exits.classify) says."""
        channel = self._channels.pop(child.pid, None)
        if channel is not None:
            channel.close()
        generation = self.generations.get(child.generation)
        if generation is None:
            return
        # Bodies the dead front was holding: nobody else will remove them.
        generation.empty_spool(child.number)
        if why in (Exit.CRASH, Exit.TIMEOUT):
            # Its requests in flight will never be released (front/limittable.py).
            self.limit_table.forget_counts()
        if why is Exit.OLD_GENERATION:
            self._gone(generation, child.number)
        elif why in (Exit.CRASH, Exit.TIMEOUT):
            self._restarts.schedule(child.number, child, code)

    # --- a HUP that replaces the fronts ---

    def worker_ready(self, child: WorkerChild, pools: Collection[Pool]) -> None:
        """A worker imported its app: once the next generation has one of every app, swap."""
        upcoming = self.next
        if upcoming is None or child.generation != upcoming.number:
            return
        ready = {c.pool for c in self.of(upcoming) if isinstance(c, WorkerChild) and c.ready}
        ready.add(child.pool)
        if ready >= {pool.name for pool in pools}:
            self.swap(pools)

    def next_failed(self, child: WorkerChild) -> bool:
        """A worker exited: whether it was the last of its app in the next generation (which
        then cannot serve that app)."""
        upcoming = self.next
        if upcoming is None or child.generation != upcoming.number:
            return False
        return not any(
            isinstance(c, WorkerChild) and c.pool == child.pool for c in self.of(upcoming)
        )

    def swap(self, pools: Iterable[Pool]) -> None:
        """A worker of every app of the next generation imported its app: its fronts start,
        and the current ones stop accepting and finish their requests, with their own
        workers."""
        old, new = self.current, self.next
        assert new is not None
        self.current, self.next = new, None
        for pool in pools:
            pool.release(old.number)  # they leave with their front (see _gone)
        self._restarts.clear()  # a crashed old front: the new one takes its place
        self.start()
        running = {c.number: c for c in self.fronts() if c.generation == old.number}
        for number in frontplan.numbers(old.cfg.fronts):
            if number in running:
                running[number].send(signal.SIGTERM)
            else:  # it had died: nothing left to finish
                self._gone(old, number)
        log.info("reload: new fronts serve; the old ones finish their requests")

    def _gone(self, generation: Generation, number: int) -> None:
        """A front of an old generation finished: its workers go too."""
        generation.close_link(number)
        workers = [c for c in self.of(generation) if isinstance(c, WorkerChild)]
        for child in workers:
            if frontplan.of_worker(child.worker_id, generation.cfg.fronts) == number:
                child.send(signal.SIGTERM)
        if not any(isinstance(c, FrontChild) for c in self.of(generation)):
            self._close(generation)

    def drop_next(self, pools: Iterable[Pool]) -> Config:
        """The next generation will not serve: its workers go, and the fronts keep running
        with the settings they have (the workers they replace serve on). Returns those."""
        assert self.next is not None
        for pool in pools:
            pool.drop(self.next.number)
        self._close(self.next)
        self.next = None
        return self.current.cfg

    def close_links(self) -> None:
        """Worker threads must not reconnect to a front that is gone."""
        for generation in self.generations.values():
            generation.close_links()


def kill_silent(fronts: Iterable[FrontChild], now: float, front_timeout: float) -> None:
    """Kill the fronts that sent no heartbeat for --front-timeout (0: never); each is
    restarted once reaped."""
    if not front_timeout:
        return
    for child in fronts:
        if now - child.last_seen > front_timeout:
            log.error("%s (pid %d) stopped responding; killing it", child.role, child.pid)
            child.last_seen = now  # said once; it is restarted once reaped
            child.leaving = Exit.TIMEOUT
            child.send(signal.SIGKILL)
