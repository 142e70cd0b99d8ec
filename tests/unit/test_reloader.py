"""The master's decision on a reloader that exited: restart it, unless it cannot watch."""

from __future__ import annotations

import time

from maitred import exits
from maitred.children import Exit, ReloaderChild


def exited_after(seconds: float) -> ReloaderChild:
    return ReloaderChild(pid=1234, started=time.monotonic() - seconds)


SERVING = exits.Situation(
    stopping=False, serving_generations=frozenset({0}), app_imported=True, wanted=1
)


def test_a_reloader_that_ran_a_while_is_restarted() -> None:
    assert exits.classify(exited_after(exits.QUICK_DEATH + 1), -9, SERVING) is Exit.CRASH


def test_a_reloader_that_dies_at_its_start_is_not_restarted() -> None:
    assert exits.classify(exited_after(0.1), 1, SERVING) is Exit.FAILED_START


def test_its_role_in_the_log_is_its_kind() -> None:
    assert exited_after(0).role == "reloader"
