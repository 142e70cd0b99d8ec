"""The plan of the fronts: how the master divides one server among several fronts (--fronts),
and the generations of fronts a reload goes through. Pure functions and a record; the master's
fronts themselves, as processes, are maitred.frontset's.

Each front is an event loop in a process of its own. They serve the same addresses, each
through a listening socket of its own in an SO_REUSEPORT group (maitred.sockets), so the kernel
deals new connections evenly to the fronts. Everything else is the front's own too:

* its workers: worker N of each app belongs to front ((N - 1) mod fronts) + 1 and connects
  only to that front's link socket for its app (maitred.apps), so each front dispatches to
  threads nobody else uses, and a request waits only in its own front's queue for its app;
* its link sockets, one per app, and its spool directory (the master empties the spool of a
  front that died), both per generation (:class:`Generation`);
* its share of --max-connections, --max-connections-per-ip and of each app's --max-queue, so
  the server as a whole keeps to them.

A front is numbered 1..N; the only front of a server has number 0, so its process title and
log name stay plain "front".
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
from collections.abc import Sequence
from typing import TypeVar

from maitred import apps, privileges, sockets
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
        max_connections_per_ip=share(cfg.max_connections_per_ip, cfg.fronts, number),
        max_queue=share(cfg.max_queue, cfg.fronts, number),
    )


def front_apps(found: Sequence[apps.App], fronts: int, number: int) -> tuple[apps.App, ...]:
    """The apps as one front serves them: each with the front's share of its max-queue."""
    return tuple(
        dataclasses.replace(
            app, cfg=app.cfg.replace(max_queue=share(app.cfg.max_queue, fronts, number))
        )
        for app in found
    )


class Generation:
    """The fronts that run one configuration, and what each has from the master: the link
    listener its workers connect to, and its spool directory.

    A HUP that changes a setting of the fronts opens the next generation (maitred.arbiter):
    its workers start first, and once one has imported the app its fronts start; the fronts of
    the generation before stop accepting, finish their requests and exit, and the workers of
    each then go too. Each generation has link sockets of its own, so a new worker can only
    reach a new front, and spool directories of their own, so emptying a departed front's
    spool never touches a body its successor holds.
    """

    def __init__(self, number: int, cfg: Config, link_dir: str, spool_base: str) -> None:
        self.number = number
        self.cfg = cfg
        self.apps = apps.resolve(cfg)  # in the master, whose directory is the server's
        # (front number, app) -> the link listener of that app's workers of that front
        self.links: dict[tuple[int, str], socket.socket] = {}
        self._link_dir = link_dir
        self._spool_base = spool_base
        try:
            for front in numbers(cfg.fronts):
                os.mkdir(self.spool_dir(front), 0o700)
            self._bind_links()
            self._grant()
        except BaseException:
            self.close()
            raise

    def use(self, cfg: Config) -> None:
        """The apps of `cfg` from now on, the fronts' settings unchanged (--apps-dir, a HUP
        that changes only [apps] tables): a link listener for each new app, none for an app
        gone, each granted to its app's user (a reload may change it). The running fronts
        hear of it from maitred.frontapps."""
        found = apps.resolve(cfg)
        names = {app.name for app in found}
        for front, name in [key for key in self.links if key[1] not in names]:
            self.links.pop((front, name)).close()
            with contextlib.suppress(OSError):
                os.unlink(self.link_path(front, name))
        self.cfg, self.apps = cfg, found
        self._bind_links()
        self._grant()

    def _bind_links(self) -> None:
        """A link listener for each app of each front that has none yet."""
        for front in numbers(self.cfg.fronts):
            for app in self.apps:
                if (front, app.name) not in self.links:
                    path = self.link_path(front, app.name)
                    address = sockets.Address(socket.AF_UNIX, "", 0, path)
                    self.links[front, app.name] = sockets.bind(address, self.cfg.backlog)

    def _grant(self) -> None:
        """--user: each link socket is reachable by its own app's workers only, each spool
        directory by its front alone (maitred.privileges says how)."""
        front = privileges.resolve(self.cfg.user, self.cfg.group)
        workers = {app.name: privileges.resolve(app.cfg.user, app.cfg.group) for app in self.apps}
        for number, app in self.links:
            privileges.grant_link(workers[app], self.link_path(number, app))
        for number in numbers(self.cfg.fronts):
            privileges.grant_spool(front, self.spool_dir(number))

    def link_path(self, front: int, app: str) -> str:
        return os.path.join(self._link_dir, f"link-{app}-{front}.{self.number}.sock")

    def links_of(self, front: int) -> dict[str, socket.socket]:
        """The link listeners of one front, by app."""
        return {app: sock for (number, app), sock in self.links.items() if number == front}

    def spool_dir(self, front: int) -> str:
        return os.path.join(self._spool_base, f"{front}.{self.number}")

    def empty_spool(self, front: int) -> None:
        """Remove the bodies a front left behind (it died, or it is gone)."""
        spool = self.spool_dir(front)
        with contextlib.suppress(OSError):
            for name in os.listdir(spool):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(spool, name))

    def close_link(self, front: int) -> None:
        """The front is gone for good: its workers must not reconnect to a front nobody runs."""
        for app in self.links_of(front):
            self.links.pop((front, app)).close()
            with contextlib.suppress(OSError):
                os.unlink(self.link_path(front, app))

    def close_links(self) -> None:
        for front in {number for number, _ in self.links}:
            self.close_link(front)

    def close(self) -> None:
        self.close_links()
        for front in numbers(self.cfg.fronts):
            self.empty_spool(front)
            with contextlib.suppress(OSError):
                os.rmdir(self.spool_dir(front))
