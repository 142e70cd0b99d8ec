"""The master's decision on a reloader that exited: restart it, unless it cannot watch."""

from __future__ import annotations

import time

from maitred import reloader
from maitred.children import Child


def exited_after(seconds: float) -> Child:
    return Child(1234, reloader.KIND, started=time.monotonic() - seconds)


def test_a_reloader_that_ran_a_while_is_restarted() -> None:
    assert reloader.restarts(exited_after(reloader.QUICK_DEATH + 1), -9)


def test_a_reloader_that_dies_at_its_start_is_not_restarted() -> None:
    assert not reloader.restarts(exited_after(0.1), 1)


def test_its_role_in_the_log_is_its_kind() -> None:
    assert exited_after(0).role == "reloader"
