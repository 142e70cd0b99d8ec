"""Run the real maitred server as a subprocess for integration tests.

``ServerFactory.start(app, *args)`` launches ``python -m maitred -b 127.0.0.1:0 ... APP`` with the
fixture apps of ``tests/apps`` importable, waits for the ``Listening at: http://127.0.0.1:PORT``
line on stderr (printed once the first worker has imported the app) and returns a ``Server``
that knows its port; ``launch`` and ``serving`` do the two halves, for a test that acts while
the app is being imported. Output is drained by background
threads for the whole life of the process (a full pipe would block the server) and kept for
assertions. Stopping sends SIGTERM to the server pid, then SIGKILL by pid after a timeout, and
fails the test if any process the server forked is still alive afterwards. After each test,
:mod:`hygiene` checks that the server leaked no descriptor and logged no error it was not told
to expect; :func:`waiting.wait_until` is the one way tests wait for a condition.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import hygiene
import procs
from waiting import wait_until

__all__ = ["wait_until"]  # the tests' one way to wait, re-exported beside the servers

TESTS_DIR = Path(__file__).resolve().parent
APPS_DIR = TESTS_DIR / "apps"
SRC_DIR = TESTS_DIR.parent / "src"

LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")
LOOPBACK = "127.0.0.1"
# Importing maitred, the app and forking workers takes well under a second; 15 s leaves room
# for a loaded CI machine without letting a hung start stall the suite.
START_TIMEOUT = 15.0
# A graceful stop lets in-flight requests finish; the longest fixture request is a few seconds.
STOP_TIMEOUT = 15.0
# Short-lived CLI runs (--version, bad arguments, an app that cannot import) end by themselves.
CLI_TIMEOUT = 20.0
OUTPUT_TAIL = 6000


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a server: ours, minus MAITRED_* settings, with src/ importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAITRED_")}
    paths = [str(SRC_DIR), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class OutputCapture:
    """Drains one pipe in a thread, keeps all the text, and lets tests wait for a pattern."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self._pipe = pipe
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self._eof = False
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        for raw in iter(self._pipe.readline, b""):
            with self._changed:
                self._lines.append(raw.decode("utf-8", "replace"))
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    @property
    def text(self) -> str:
        with self._changed:
            return "".join(self._lines)

    def wait_for(self, pattern: str | re.Pattern[str], timeout: float) -> re.Match[str] | None:
        """The first match of ``pattern`` in the output, waiting up to ``timeout`` for it."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                match = regex.search("".join(self._lines))
                remaining = deadline - time.monotonic()
                if match or self._eof or remaining <= 0:
                    return match
                self._changed.wait(remaining)

    def finish(self, timeout: float) -> None:
        """Wait for end of file (the writers have exited) and close the pipe."""
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._pipe.close()


@dataclass
class Spawned:
    """A maitred process with its output captured and its descendants tracked."""

    proc: subprocess.Popen[bytes]
    stderr: OutputCapture
    stdout: OutputCapture
    known_children: list[procs.ProcInfo] = field(default_factory=list)
    host: str = LOOPBACK  # the address of its first listener, named in "Listening at"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return f"--- stderr ---\n{self.stderr.text[-OUTPUT_TAIL:]}\n" + (
            f"--- stdout ---\n{self.stdout.text[-OUTPUT_TAIL:]}"
        )

    def remember_children(self) -> None:
        known = {(p.pid, p.start_time) for p in self.known_children}
        for info in procs.descendants_and_session(self.pid):
            if (info.pid, info.start_time) not in known:
                self.known_children.append(info)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, wait, SIGKILL by pid if needed; then assert that nothing it forked lives."""
        if self.proc.poll() is None:
            self.remember_children()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self.reap_and_check()

    def reap_and_check(self) -> None:
        self.remember_children()
        stray = procs.wait_vanished(self.known_children)
        procs.kill_each(stray)
        self.stderr.finish(timeout=5.0)
        self.stdout.finish(timeout=5.0)
        assert not stray, f"processes left behind by maitred pid {self.pid}: {stray}\n" + (
            self.output()
        )


def spawn(
    args: Sequence[str],
    cwd: Path,
    env: dict[str, str] | None = None,
    wrapper: Sequence[str] = (),
) -> Spawned:
    """`wrapper`: a command that execs maitred in its own place (systemd-socket-activate)."""
    proc = subprocess.Popen(
        [*wrapper, sys.executable, "-m", "maitred", *args],
        cwd=cwd,
        env=server_env(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stderr is not None and proc.stdout is not None
    return Spawned(proc, OutputCapture(proc.stderr), OutputCapture(proc.stdout))


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(
    args: Sequence[str], cwd: Path = APPS_DIR, env: dict[str, str] | None = None
) -> CliResult:
    """Run maitred to completion (it must exit by itself) and check it left no process behind."""
    spawned = spawn(args, cwd, env)
    try:
        spawned.proc.wait(CLI_TIMEOUT)
    except subprocess.TimeoutExpired:
        spawned.stop()
        raise AssertionError(
            f"maitred {list(args)} did not exit within {CLI_TIMEOUT} s\n{spawned.output()}"
        ) from None
    spawned.reap_and_check()
    return CliResult(spawned.proc.returncode, spawned.stdout.text, spawned.stderr.text)


@dataclass
class Server:
    """A running server: its port, its process and everything it has logged so far."""

    spawned: Spawned
    port: int
    expect_errors: tuple[str, ...] = ()
    baseline: hygiene.Snapshot = field(default_factory=dict)
    log_checked: int = 0  # how much of stderr the error check has read

    @property
    def pid(self) -> int:
        return self.spawned.pid

    @property
    def stderr(self) -> str:
        return self.spawned.stderr.text

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_for_log(self, pattern: str, timeout: float = 5.0) -> re.Match[str] | None:
        return self.spawned.stderr.wait_for(pattern, timeout)

    def stop(self) -> None:
        self.spawned.stop()

    def leaks(self) -> list[str]:
        """Descriptors its processes hold now and did not at start (see :mod:`hygiene`)."""
        if self.spawned.proc.poll() is not None:
            return []
        return hygiene.wait_no_leaks(self.pid, self.baseline)

    def new_errors(self, allowed: Sequence[str]) -> list[str]:
        """Errors logged since the last call that neither `allowed` nor the server expects."""
        text = self.stderr
        fresh, self.log_checked = text[self.log_checked :], len(text)
        return hygiene.unexpected_errors(fresh, [*self.expect_errors, *allowed])


class ServerFactory:
    """Starts servers on demand, checks them after each test and stops them at teardown.

    `expect_errors`: patterns of the error-log records that the current test provokes (from its
    ``expect_errors`` marker), beside those each server was started with.
    """

    def __init__(self) -> None:
        self._spawned: list[Spawned] = []
        self._servers: list[Server] = []
        self.expect_errors: tuple[str, ...] = ()

    def launch(
        self,
        app: str | None,
        *args: str,
        cwd: Path = APPS_DIR,
        env: dict[str, str] | None = None,
        wrapper: Sequence[str] = (),
        bind: tuple[str, int] = (LOOPBACK, 0),
    ) -> Spawned:
        """Start ``maitred`` serving ``app`` (None: no APP argument) with extra CLI ``args``,
        without waiting: it says "Listening at" only once its first worker has imported the
        app (see :meth:`serving`). `wrapper`: see :func:`spawn`. `bind`: the first listener's
        loopback address and port (0: the kernel picks one)."""
        where = ["--chdir", str(APPS_DIR), "--pythonpath", str(APPS_DIR)] if app else []
        argv = ["-b", f"{bind[0]}:{bind[1]}", *where, *args, *([app] if app else [])]
        spawned = spawn(argv, cwd, env, wrapper)
        spawned.host = bind[0]
        self._spawned.append(spawned)
        return spawned

    def serving(
        self, spawned: Spawned, expect_errors: Sequence[str] = (), check_fds: bool = True
    ) -> Server:
        """The server once it reports ``Listening at: http://127.0.0.1:PORT``.

        `expect_errors`: regular expressions for the error-log records this server is expected
        to write (any other ERROR record or traceback fails the test). `check_fds`: False for
        a test that must act before the workers are ready, as the descriptors' baseline waits
        for them."""
        listening = LISTENING
        if spawned.host != LOOPBACK:
            listening = re.compile(rf"Listening at: http://{re.escape(spawned.host)}:(\d+)")
        match = spawned.stderr.wait_for(listening, START_TIMEOUT)
        if match is None:
            try:
                spawned.stop()
            except AssertionError as exc:
                print(exc, file=sys.stderr)
            raise AssertionError(
                f"maitred {spawned.proc.args} did not report 'Listening at: "
                f"http://127.0.0.1:PORT' within {START_TIMEOUT} s (exit status "
                f"{spawned.proc.returncode})\n" + spawned.output()
            )
        server = Server(spawned, int(match.group(1)), tuple(expect_errors))
        if check_fds:
            server.baseline = hygiene.settle(server.pid)
        self._servers.append(server)
        return server

    def start(
        self,
        app: str | None,
        *args: str,
        cwd: Path = APPS_DIR,
        env: dict[str, str] | None = None,
        expect_errors: Sequence[str] = (),
        check_fds: bool = True,
        bind: tuple[str, int] = (LOOPBACK, 0),
    ) -> Server:
        """Start ``maitred`` serving ``app`` (None: no APP argument) with extra CLI ``args``,
        and wait until it serves (see :meth:`serving` and :meth:`launch` for the others)."""
        spawned = self.launch(app, *args, cwd=cwd, env=env, bind=bind)
        return self.serving(spawned, expect_errors, check_fds)

    def check(self) -> None:
        """After a test: no server leaked a descriptor or logged an unexpected error."""
        failures = []
        for server in self._servers:
            leaks = server.leaks()
            if leaks:
                failures.append(f"maitred pid {server.pid} leaked descriptors: {leaks}")
            errors = server.new_errors(self.expect_errors)
            if errors:
                failures.append(hygiene.describe(errors))
        assert not failures, "\n\n".join(failures)

    def close(self, check: bool = True) -> None:
        """Stop every server (failing on strays); with `check`, then look at their last logs."""
        failures = []
        for spawned in reversed(self._spawned):
            try:
                spawned.stop()
            except AssertionError as exc:
                failures.append(str(exc))
        self._spawned.clear()
        for server in self._servers:
            errors = server.new_errors(self.expect_errors)
            if check and errors:
                failures.append(hygiene.describe(errors))
        self._servers.clear()
        assert not failures, "\n\n".join(failures)
