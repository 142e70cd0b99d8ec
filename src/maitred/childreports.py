"""What the children tell the master through their status pipes, and whom each message concerns.

Theory of operation
-------------------
Every child writes small messages on a pipe the master reads from its loop (maitred.status;
maitred.processes reads them). Anything a child says is its heartbeat. Then:

* a worker says READY once it imported its app: the fronts start sending to it, and its pool
  learns whether its app imports (the first worker ever: the master may say it listens); while
  the server stops, nothing more starts, so READY is heard no more;
* a worker's HEARTBEAT carries the age of its oldest request in flight (the liveness check);
* RECYCLE (--max-requests, --max-memory) and STUCK ask its pool to replace it;
* a worker's part of a stack dump goes to the control socket (`maitred ctl stacks`);
* a front's figures go to the book (maitred.book), on its way out too and in its last words;
  its load reports go to the pools and the book only while its generation serves: those of
  fronts a reload replaced would count workers the pools gave up.

A worker that sends a front's message is not listened to. Owned by the master's loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from maitred import status
from maitred.book import MetricsBook
from maitred.children import Child, FrontChild, WorkerChild
from maitred.frontset import FrontSet
from maitred.masterservers import MasterServers
from maitred.poolset import PoolSet
from maitred.processes import Processes


class ChildReports:
    """Reads a child's status pipe and hands each message to the fronts, a pool or the book."""

    def __init__(
        self,
        processes: Processes,
        poolset: PoolSet,
        book: MetricsBook,
        servers: MasterServers,
        announce: Callable[[], None],
    ) -> None:
        self._processes = processes
        self._poolset = poolset
        self._book = book
        self._servers = servers
        self._announce = announce  # an app imported: say where the server listens, if it is time

    def read(self, child: Child, fronts: FrontSet, stopping: bool) -> None:
        """What `child` said since the last turn."""
        said = self._processes.read_status(child)
        if said:
            child.last_seen = time.monotonic()
        if not isinstance(child, WorkerChild):
            self._front_said(child, said, fronts)  # besides, it is its heartbeat
            return
        for message in said:
            if isinstance(message, status.StacksPart) and self._servers.commands is not None:
                self._servers.commands.heard(child, message)  # `maitred ctl stacks`
                continue
            if isinstance(message, (status.LoadReport, status.MetricsReport, status.StacksPart)):
                continue  # a front's message; a worker has no business sending it
            kind, value = message
            if kind == status.READY:
                self._ready(child, fronts, stopping)
            elif kind == status.HEARTBEAT:
                child.oldest_request = value
            elif kind in (status.RECYCLE, status.STUCK):
                why = "recycling" if kind == status.RECYCLE else "stuck request"
                pool = self._poolset.pool_of(child)
                if pool is not None:
                    pool.replace(child, why)

    def front_exited(self, child: FrontChild) -> None:
        """A front's last counts, unread before it exited, stay in the totals."""
        for message in child.last_words:
            if isinstance(message, status.MetricsReport):
                self._book.front_said(child.pid, message.figures)
        self._book.front_exited(child.pid)

    def _front_said(self, child: Child, said: list[status.Message], fronts: FrontSet) -> None:
        """A front's load reports go to their pools; those of fronts on their way out (a
        reload replaced them) would count workers the pool gave up."""
        for message in said:  # counted by every front, on its way out too
            if isinstance(message, status.MetricsReport):
                self._book.front_said(child.pid, message.figures)
        if child.generation not in fronts.serving():
            return
        now = time.monotonic()
        pools = self._poolset.pools
        for message in said:
            if isinstance(message, status.LoadReport) and message.pool in pools:
                pools[message.pool].load(child.pid, message, now)
                self._book.load(child.pid, message)

    def _ready(self, child: WorkerChild, fronts: FrontSet, stopping: bool) -> None:
        """A worker imported the app and serves."""
        if stopping:
            # Nothing starts now (the staged start's other workers would miss the stop and
            # hold it up for the graceful timeout), nor says it listens.
            return
        fronts.worker_ready(child, self._poolset.pools.values())
        pool = self._poolset.pool_of(child)
        if pool is not None and pool.ready(child):  # the first worker ever: the app imports
            self._announce()
