"""--cache-dir: the directories of fronts killed before they could remove them, and who does."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from maitred.front.cachefiles import CacheDir


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_the_first_body_removes_the_directories_of_fronts_that_no_longer_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dead = tmp_path / f"front-{dead_pid()}-k1ll3d"
    dead.mkdir()
    (dead / "1").write_bytes(b"a body nobody will serve")
    live = tmp_path / f"front-{os.getppid()}-l1ve"  # another server's front that runs
    live.mkdir()
    others = [tmp_path / "notes", tmp_path / f"front-{dead_pid()}-afile"]
    others[0].mkdir()
    others[1].write_text("not a cache directory")
    cache = CacheDir(str(tmp_path))
    with caplog.at_level(logging.INFO, logger="maitred.error"):
        body = cache.create()
    assert body is not None
    body.close()
    assert not dead.exists()
    assert live.is_dir() and all(p.exists() for p in others)
    assert f"removing {dead}, left by a front that no longer runs" in caplog.text
    cache.close()
