"""The master's runtime directory and pidfile: what counts as left by a master that is gone."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from maitred import runtime

TITLE_WAIT = 10.0


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def titled() -> Iterator[subprocess.Popen[bytes]]:
    """A live process titled as a maitred master is."""
    code = "import setproctitle, time, sys; setproctitle.setproctitle(sys.argv[1]); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code, runtime.MASTER_TITLE])
    try:
        deadline = time.monotonic() + TITLE_WAIT
        cmdline = Path(f"/proc/{proc.pid}/cmdline")
        while not cmdline.read_bytes().startswith(runtime.MASTER_TITLE.encode()):
            assert time.monotonic() < deadline, "the process never took the title"
            time.sleep(0.02)
        yield proc
    finally:
        proc.kill()
        proc.wait()


def runtime_dir(where: Path, name: str, owner: str | None) -> Path:
    """A runtime directory whose owner file holds `owner` (None: it has none)."""
    path = where / name
    (path / "spool").mkdir(parents=True)
    if owner is not None:
        (path / runtime.OWNER_FILE).write_text(owner)
    return path


def test_only_the_directories_of_masters_that_are_gone_are_removed(tmp_path: Path) -> None:
    me, started = os.getpid(), runtime.start_time(os.getpid())
    assert started is not None
    live = runtime_dir(tmp_path, "maitred-live", f"{me} {started}\n")
    # Its pid now names another process.
    reused = runtime_dir(tmp_path, "maitred-reused", f"{me} {started + 1}\n")
    dead = runtime_dir(tmp_path, "maitred-dead", f"{dead_pid()} 1\n")
    unknown = runtime_dir(tmp_path, "maitred-older", None)  # an older maitred's, or another's
    partial = runtime_dir(tmp_path, "maitred-partial", f"{dead_pid()} ")  # being written
    other = runtime_dir(tmp_path, "other-dead", f"{dead_pid()} 1\n")
    body = tmp_path / "maitred-body-x"
    body.write_bytes(b"")
    assert sorted(runtime.remove_stale_dirs(str(tmp_path))) == sorted([str(reused), str(dead)])
    left = (live, unknown, partial, other, body)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in left)


def test_a_directory_another_master_removes_meanwhile_is_passed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Masters starting together each clear what dead ones left: one must not crash because
    another removed a directory between the listing and its look at it."""
    gone = runtime_dir(tmp_path, "maitred-gone", f"{dead_pid()} 1\n")
    with os.scandir(tmp_path) as listing:
        entries = list(listing)  # the listing names the directory...
    shutil.rmtree(gone)  # ...then the other master removes it

    class Listing:
        def __enter__(self) -> Iterator[os.DirEntry[str]]:
            return iter(entries)

        def __exit__(self, *exc: object) -> None:
            pass

    monkeypatch.setattr(runtime.os, "scandir", lambda where: Listing())
    assert runtime.remove_stale_dirs(str(tmp_path)) == []


def test_a_new_directory_is_named_for_its_master(tmp_path: Path) -> None:
    path = Path(runtime.make_dir(str(tmp_path)))
    owner = (path / runtime.OWNER_FILE).read_text()
    assert owner == f"{os.getpid()} {runtime.start_time(os.getpid())}\n"
    assert runtime.remove_stale_dirs(str(tmp_path)) == []
    assert path.is_dir()


@pytest.mark.parametrize("content", ["", "garbage\n", "{dead}\n", "{live}\n"])
def test_a_stale_pidfile_is_overwritten_with_a_log_line(
    tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    pidfile = tmp_path / "maitred.pid"
    with subprocess.Popen(["sleep", "30"]) as other:  # alive, and no maitred master
        pidfile.write_text(content.format(dead=dead_pid(), live=other.pid))
        with caplog.at_level(logging.INFO, logger="maitred.error"):
            runtime.check_pidfile(str(pidfile))
        other.kill()
    assert f"the pidfile {pidfile} named " in caplog.text
    assert "overwriting it" in caplog.text


def test_no_pidfile_or_none_asked_for_says_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="maitred.error"):
        runtime.check_pidfile("")
        runtime.check_pidfile(str(tmp_path / "absent.pid"))
    assert caplog.text == ""


def test_a_pidfile_of_a_running_master_is_refused(
    tmp_path: Path, titled: subprocess.Popen[bytes]
) -> None:
    pidfile = tmp_path / "maitred.pid"
    pidfile.write_text(f"{titled.pid}\n")
    with pytest.raises(runtime.PidfileInUse, match=f"names pid {titled.pid}, a maitred master"):
        runtime.check_pidfile(str(pidfile))


def test_a_pidfile_is_replaced_whole_never_truncated_under_a_reader(tmp_path: Path) -> None:
    """A reader that opened the old pidfile keeps reading the old pid, whole: the new one comes
    in by a rename, so no reader can meet an empty or half-written file."""
    pidfile = tmp_path / "maitred.pid"
    runtime.write_pidfile(str(pidfile), 111)
    with open(pidfile, encoding="ascii") as reader:
        runtime.write_pidfile(str(pidfile), 222)
        assert reader.read() == "111\n"
    assert pidfile.read_text() == "222\n"
    assert [p.name for p in tmp_path.iterdir()] == ["maitred.pid"]  # no temporary file left


def test_a_pidfile_gets_the_mode_of_a_plain_create_and_a_killed_masters_temp_goes(
    tmp_path: Path,
) -> None:
    pidfile = tmp_path / "maitred.pid"
    (tmp_path / f"maitred.pid.{os.getpid()}.tmp").write_text("half")  # a killed master's
    umask = os.umask(0o027)
    try:
        runtime.write_pidfile(str(pidfile), os.getpid())
    finally:
        os.umask(umask)
    assert pidfile.stat().st_mode & 0o777 == 0o640
    assert pidfile.read_text() == f"{os.getpid()}\n"
    assert [p.name for p in tmp_path.iterdir()] == ["maitred.pid"]
