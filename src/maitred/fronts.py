"""How the master divides one server among several fronts (--fronts).

Each front is an event loop in a process of its own. They serve the same addresses, each
through a listening socket of its own in an SO_REUSEPORT group (maitred.sockets), so the kernel
deals new connections evenly to the fronts. Everything else is the front's own too:

* its workers: worker N belongs to front ((N - 1) mod fronts) + 1 and connects only to that
  front's link socket, so each front dispatches to threads nobody else uses, and a request
  waits only in its own front's queue;
* its link socket and spool directory (the master empties the spool of a front that died);
* its share of --max-connections and --max-queue, so the server as a whole keeps to them.

A front is numbered 1..N; the only front of a server has number 0, so its process title and
log name stay plain "front".
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TypeVar

from maitred.config import Config

T = TypeVar("T")


def numbers(fronts: int) -> list[int]:
    """The numbers of a server's fronts."""
    return [0] if fronts == 1 else list(range(1, fronts + 1))


def name(number: int) -> str:
    """How logs and the process title call a front."""
    return f"front {number}" if number else "front"


def of_worker(worker_id: int, fronts: int) -> int:
    """The number of the front a worker serves."""
    return 0 if fronts == 1 else (worker_id - 1) % fronts + 1


def listeners_of(number: int, fronts: int, group: Sequence[T]) -> list[T]:
    """The sockets of one address that a front serves. Every socket of the group is served by
    some front (a connection the kernel put on an unserved one would wait forever), and every
    front serves one at least: a group from an upgrade may hold more or fewer than fronts."""
    index = max(number - 1, 0)
    if len(group) >= fronts:
        return list(group[index::fronts])
    return [group[index % len(group)]]


def share(total: int, fronts: int, number: int) -> int:
    """One front's part of a server-wide limit; the parts add up to `total` (0: no limit)."""
    if fronts == 1 or total == 0:
        return total
    base, extra = divmod(total, fronts)
    return max(1, base + (1 if number <= extra else 0))


def front_config(cfg: Config, number: int, spool_dir: str) -> Config:
    """The settings one front runs with."""
    return cfg.replace(
        body_temp_dir=cfg.body_temp_dir or spool_dir,
        max_connections=share(cfg.max_connections, cfg.fronts, number),
        max_queue=share(cfg.max_queue, cfg.fronts, number),
    )


def spool_dir(base: str, number: int) -> str:
    return os.path.join(base, str(number))


def link_path(base: str, number: int) -> str:
    return os.path.join(base, f"link-{number}.sock")
