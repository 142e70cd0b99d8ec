"""The apps a front serves, and what the master tells it of them while it runs.

Theory of operation
-------------------
Each app a front serves has a dispatcher (front/dispatcher.py), a link server on which its
workers connect, a task that enforces its --timeout and a load meter (front/load.py).
:class:`AppTable` keeps those that are not the dispatcher's (the front's ``dispatchers`` map is
the one everything else reads), starts them with the front (`start`) and changes them when the
master sends a new table (maitred.frontapps: --apps-dir, a HUP of the ``[apps]`` tables):

* a new app gets all four, its link server on the listener that came with the table;
* a changed app keeps its dispatcher, and with it its queue and its workers' links (the
  master replaces the workers, make-before-break, and the new ones link to the same
  listener); the dispatcher takes the new limits, and the app its new static mounts, routing
  and --timeout;
* an app gone is routed no more (404 from the next request), its link server closes, the
  requests still in its queue are answered 503 (a retry finds no app), and the requests its
  workers run finish on their links, which stay open until the master stops those workers;
* an app whose listener changed (removed and added again between two tables) is both.

The front is ready (maitred.readiness) once every app it started with has a worker; an app
that joins later does not count until its first worker links: one deploy importing, or failing
to, must not make a balancer take the whole server out.

The router is rebuilt last, in one step, so a request sees the old table or the new, never a
mix of them. Tables are applied one at a time, in the order they came.

The same channel brings purges of the response cache (maitred.frontapps): applied at once
(`purge`), to the caches of the apps the front serves at that moment.

Owned by the event loop thread.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from maitred import frontapps
from maitred.apps import App
from maitred.front.dispatcher import Dispatcher, WorkerConnection
from maitred.front.load import LoadMeter
from maitred.front.timeouts import sweep_interval

if TYPE_CHECKING:
    from maitred.front.main import Front

log = logging.getLogger("maitred.error")


class AppTable:
    """What a front keeps per app besides its dispatcher."""

    def __init__(self, front: Front) -> None:
        self.front = front
        self.servers: dict[str, asyncio.AbstractServer] = {}  # app -> its workers' link server
        self.inodes: dict[str, int] = {}  # app -> its link listener's (frontapps.inode)
        self.expiring: dict[str, asyncio.Task[None]] = {}  # app -> its --timeout task
        self.meters: dict[str, LoadMeter] = {}  # app -> its load meter (front/load.py)
        self.joining: set[str] = set()  # apps added at run time whose workers have not linked
        self._lock = asyncio.Lock()  # one table at a time, in the order they came
        self._applying: set[asyncio.Task[None]] = set()  # held: the loop keeps weak references

    async def start(self, links: Mapping[str, socket.socket]) -> None:
        """The apps the front started with, each on its link listener in `links`."""
        for app in self.front.apps:
            await self._serve(app, links[app.name])

    def ready(self) -> bool:
        """Whether every app it serves has a worker that takes requests, but those joining."""
        joined = [n for n in self.joining if self.front.dispatchers[n].has_ready_worker()]
        self.joining.difference_update(joined)
        dispatchers = self.front.dispatchers
        return all(d.has_ready_worker() for n, d in dispatchers.items() if n not in self.joining)

    def close(self) -> None:
        for name in list(self.servers):
            self._stop(name)

    def listen(self, control: socket.socket) -> None:
        """Take the tables and purges the master sends on `control` (maitred.frontapps)."""
        loop = self.front.loop
        control.setblocking(False)

        def readable() -> None:
            try:
                message = frontapps.receive(control)
            except BlockingIOError:
                return
            except ValueError as exc:  # the master's bug: said, and the front serves on
                log.error("front: %s; skipped", exc)
                return
            except OSError as exc:
                log.error("front: cannot read the master's channel: %s", exc)
                message = None
            if message is None:
                loop.remove_reader(control.fileno())  # the master is gone: the sweep sees it
                return
            if isinstance(message, frontapps.Purge):
                self.purge(message)
                return
            task = loop.create_task(self.apply(*message))
            self._applying.add(task)
            task.add_done_callback(self._applied)

        loop.add_reader(control.fileno(), readable)

    def purge(self, purge: frontapps.Purge) -> None:
        """Drop the matching entries of the caches of the apps it names (all: none named)."""
        gone = 0
        for name, cache in self.front.router.caches.items():
            if not purge.app or purge.app == name:
                gone += cache.purge(**{purge.kind: purge.value})
        log.info("cache purge by %s %s: %d entries dropped", purge.kind, purge.value, gone)

    def _applied(self, task: asyncio.Task[None]) -> None:
        self._applying.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("front: cannot apply a table of apps: %r", task.exception())

    async def apply(self, found: Sequence[App], links: dict[str, socket.socket]) -> None:
        """Serve the apps `found` from now on; `links` brings the listeners of new ones."""
        async with self._lock:
            front = self.front
            wanted = {app.name: app for app in found}
            for name in list(front.dispatchers):
                link = links.get(name)
                if name not in wanted or (link and frontapps.inode(link) != self.inodes[name]):
                    self._remove(name)
            for app in found:
                if app.name in front.dispatchers:
                    self._update(app)
                elif app.name in links:
                    self.joining.add(app.name)
                    await self._serve(app, links.pop(app.name))
                else:
                    log.error("front: app %s came without its link; not serving it", app.name)
            for sock in links.values():
                sock.close()  # the listener of an app it serves already
            before = [app.name for app in front.apps]
            front.apps = tuple(app for app in found if app.name in front.dispatchers)
            self._refresh(before)

    async def _serve(self, app: App, link: socket.socket) -> None:
        front = self.front
        dispatcher = front.dispatchers.get(app.name)
        if dispatcher is None:
            dispatcher = Dispatcher(front.loop, app.cfg.max_queue, app.cfg.queue_timeout, app.label)
            front.dispatchers[app.name] = dispatcher
        self.inodes[app.name] = frontapps.inode(link)
        self.servers[app.name] = await front.loop.create_unix_server(
            functools.partial(WorkerConnection, dispatcher), sock=link, backlog=front.cfg.backlog
        )
        self.meters[app.name] = LoadMeter(app.name, dispatcher, front.loop.time())
        self._expire(app)
        front.activity.add(app.name, app.label)
        if front.counters is not None:
            front.counters.add(app.name, app.label)

    def _expire(self, app: App) -> None:
        task = self.expiring.pop(app.name, None)
        if task is not None:
            task.cancel()
        if app.cfg.timeout:
            expire = self.front.expire_requests(self.front.dispatchers[app.name], app.cfg.timeout)
            self.expiring[app.name] = self.front.loop.create_task(expire)

    def _update(self, app: App) -> None:
        dispatcher = self.front.dispatchers[app.name]
        dispatcher.max_queue, dispatcher.queue_timeout = app.cfg.max_queue, app.cfg.queue_timeout
        old = next((a for a in self.front.apps if a.name == app.name), None)
        if old is None or old.cfg.timeout != app.cfg.timeout:
            self._expire(app)

    def _remove(self, name: str) -> None:
        self._stop(name)
        self.front.dispatchers.pop(name).shed_queue()

    def _stop(self, name: str) -> None:
        self.joining.discard(name)
        self.servers.pop(name).close()
        self.inodes.pop(name, None)
        self.meters.pop(name, None)
        task = self.expiring.pop(name, None)
        if task is not None:
            task.cancel()

    def _refresh(self, before: list[str]) -> None:
        """What the front derives from the whole table: its routing, its sweep interval."""
        front = self.front
        front.router.use_apps(front)
        shortest = min((a.cfg.queue_timeout for a in front.apps if a.cfg.queue_timeout), default=0)
        front.timeouts.interval = sweep_interval(front.cfg.replace(queue_timeout=shortest))
        names = [app.name for app in front.apps]
        level = logging.INFO if names != before else logging.DEBUG  # a reload: said by the master
        log.log(level, "front: the apps it serves now: %s", ", ".join(names) or "none")
