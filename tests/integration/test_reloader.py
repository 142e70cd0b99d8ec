"""--reload: the file watcher runs in a child of the master, never as a thread of the master.

A thread in the master can hold a lock (the import lock, a logging handler's) at the moment the
master forks a worker; the worker then waits on it forever. The Django test starts many servers
one after another because the hang came in some starts only. That a change to a .py file still
reloads the workers is tested in test_supervisor.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import procs
from harness import ServerFactory
from rawhttp import fetch

STARTS = 20
# A worker that imports Django answers its first request in well under a second; one that hangs
# answers never (the front gives up with a 503 after its queue timeout, 30 s).
FIRST_REQUEST_TIMEOUT = 10.0
WAIT = 10.0


@pytest.fixture(scope="module")
def django_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh `django-admin startproject` site, as a user starts with."""
    site = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "django", "startproject", "proj", str(site)],
        check=True,
        timeout=60,
    )
    return site


def test_every_start_of_a_django_site_with_reload_serves(
    servers: ServerFactory, django_site: Path
) -> None:
    for start in range(STARTS):
        server = servers.start(
            "proj.wsgi:application",
            "--reload",
            "-w",
            "1",
            "--chdir",
            str(django_site),
            "--pythonpath",
            str(django_site),
            env={"DJANGO_SETTINGS_MODULE": "proj.settings"},
        )
        try:
            response = fetch(server.port, "GET", "/", timeout=FIRST_REQUEST_TIMEOUT)
        except OSError as exc:
            raise AssertionError(f"start {start + 1}: no answer ({exc})\n{server.stderr}") from exc
        assert response.status == 200, (start + 1, response.status, server.stderr)
        server.stop()  # a worker that hung would need SIGKILL: exit status -9
        assert server.spawned.proc.returncode == 0, (start + 1, server.stderr)


def reloader_of(master: int) -> int | None:
    return next(iter(procs.children_titled(master, "maitred: reloader")), None)


def threads_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def test_the_master_watches_files_through_a_child_and_holds_no_thread(
    servers: ServerFactory,
) -> None:
    server = servers.start("hello:application", "-w", "1", "--reload")
    assert server.wait_for_log(r"reload: watching "), server.stderr
    reloader = reloader_of(server.pid)
    assert reloader is not None
    assert server.wait_for_log(rf"\[{reloader}\] \[INFO\] reload: watching "), server.stderr
    assert threads_of(server.pid) == 1


def test_the_reloader_leaves_with_a_killed_master(servers: ServerFactory) -> None:
    server = servers.start("hello:application", "-w", "1", "--reload")
    assert server.wait_for_log(r"reload: watching "), server.stderr
    reloader = procs.read_proc(reloader_of(server.pid) or 0)
    assert reloader is not None
    os.kill(server.pid, signal.SIGKILL)
    server.spawned.proc.wait(WAIT)
    assert procs.wait_vanished([reloader], timeout=WAIT) == []
