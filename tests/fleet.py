"""Several maitred instances behind one load balancer, for the scale-out tests.

Each :class:`Instance` is one maitred on its own loopback address (127.0.0.2, .3, .4: Linux
routes all of 127/8 to lo), as separate machines would be. Its first start lets the kernel
pick a port; a restart binds the same address and port again, since the balancer's config
names them. The master's pid is read from its ``--pidfile``, because a USR2 upgrade replaces
the master: the new one (a child of the old, orphaned when the old exits) rewrites the file.

The operations are the steps of a rolling deploy, each returning once the step is complete:
:meth:`Instance.reload` (HUP: new workers replaced the old ones), :meth:`Instance.upgrade`
(USR2: the new master serves and the old one is gone), :meth:`Instance.restart` (TERM with
--shutdown-delay, wait for the exit, start again). :meth:`Instance.kill` is the crash: SIGKILL
to the master and every process below it, read from /proc (only processes this test started).
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

import procs
from harness import Server, ServerFactory
from load import Load
from waiting import wait_until

ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
HEALTH_PATH = "/readyz"
# Long enough for a balancer checking every 200 ms to see two failed checks, with room for a
# loaded machine; the restart phase of a deploy costs this much per instance.
SHUTDOWN_DELAY = "2"
WORKERS, THREADS = 1, 4
APP = "slow:application"
# A new master imports Python, maitred and the app, then forks its first worker; a graceful
# stop finishes the requests in flight. Both take a second or two on a loaded 2-core machine.
STEP_TIMEOUT = 30.0


def is_gone(pid: int) -> bool:
    info = procs.read_proc(pid)
    return info is None or info.state == "Z"


def workers_of(master: int) -> set[int]:
    return set(procs.children_titled(master, "maitred: worker"))


@dataclass
class Instance:
    servers: ServerFactory
    address: str
    pidfile: Path
    port: int = 0
    started: list[Server] = field(default_factory=list)

    def args(self) -> tuple[str, ...]:
        return (
            *("-w", str(WORKERS), "--threads", str(THREADS)),
            *("--health-path", HEALTH_PATH, "--shutdown-delay", SHUTDOWN_DELAY),
            *("--pidfile", str(self.pidfile)),
        )

    def start(self) -> None:
        # No descriptor baseline: with a balancer's connections coming and going the count
        # never settles, and the instances are stopped before the harness would compare.
        where = (self.address, self.port)
        server = self.servers.start(APP, *self.args(), bind=where, check_fds=False)
        self.port = server.port
        self.started.append(server)
        wait_until(lambda: self.master() == server.pid, what=f"{self.address}'s pidfile")

    def master(self) -> int | None:
        try:
            return int(self.pidfile.read_text())
        except (FileNotFoundError, ValueError):
            return None  # not written yet, or removed by a master that stopped

    def running_master(self) -> int:
        master = self.master()
        assert master is not None and not is_gone(master), f"{self.address} has no master"
        return master

    def reload(self) -> None:
        """HUP; returns once only new workers are left."""
        master = self.running_master()
        old = workers_of(master)
        os.kill(master, signal.SIGHUP)
        wait_until(
            lambda: len(now := workers_of(master)) == WORKERS and not now & old,
            STEP_TIMEOUT,
            f"{self.address}'s new workers alone",
        )

    def upgrade(self) -> None:
        """USR2; returns once the new master wrote its pid and the old one exited."""
        old = self.running_master()
        os.kill(old, signal.SIGUSR2)
        wait_until(
            lambda: self.master() not in (None, old) and is_gone(old),
            STEP_TIMEOUT,
            f"{self.address}'s new master alone",
        )

    def stop(self) -> None:
        """TERM; returns once the master exited (after --shutdown-delay and the drain)."""
        master = self.master()
        if master is None or is_gone(master):
            return
        os.kill(master, signal.SIGTERM)
        wait_until(lambda: is_gone(master), STEP_TIMEOUT, f"{self.address}'s master to exit")

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill(self) -> list[procs.ProcInfo]:
        """SIGKILL the master and all its descendants at once: a crashed machine."""
        master = procs.read_proc(self.running_master())
        assert master is not None
        victims = [master, *procs.descendants_and_session(master.pid)]
        procs.kill_each(victims)
        assert not procs.wait_vanished(victims), f"{self.address} survived SIGKILL"
        return victims


def start_fleet(servers: ServerFactory, tmp_path: Path) -> list[Instance]:
    fleet = [Instance(servers, address, tmp_path / f"{address}.pid") for address in ADDRESSES]
    for instance in fleet:
        instance.start()
    return fleet


def stop_fleet(fleet: list[Instance]) -> None:
    """Stop every master still running, upgraded ones included (the harness knows only the
    processes it started itself)."""
    for instance in fleet:
        instance.stop()


def served_by(instance: Instance, body: bytes) -> bool:
    """Whether the slow app's answer `body` came from one of `instance`'s workers."""
    master = instance.master()
    return master is not None and json.loads(body).get("pid") in workers_of(master)


def rolling_deploy(fleet: list[Instance], load: Load) -> None:
    """Every way to deploy, one instance at a time: HUP each, USR2 each, TERM + restart each.

    After each step, the next waits until the balancer sends `load` to the instance again, as
    an operator would: a balancer that learns of failures only from failed requests (nginx's
    ``max_fails``) keeps a server out for ``fail_timeout`` even once it serves again, and
    stopping the next one in that time leaves it no server at all."""
    for step in (Instance.reload, Instance.upgrade, Instance.restart):
        for instance in fleet:
            step(instance)
            wait_in_rotation(instance, load)


def wait_in_rotation(instance: Instance, load: Load) -> None:
    """Until an answer to `load` sent from now on comes from `instance`."""
    mark = len(load.results)
    wait_until(
        lambda: any(served_by(instance, body) for _, body in load.results[mark:]),
        STEP_TIMEOUT,
        f"{instance.address} back in the balancer's rotation",
    )
