"""maitred.heap: the C heap's free pages go back to the system, once per busy spell."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from test_dispatcher import Setup

from maitred import heap

MIB = 1024 * 1024
# Objects above CPython's small-object limit (512 bytes) come from malloc's heap.
MALLOCED = 2000
COUNT = 20_000  # about 40 MiB of them


def resident_anonymous() -> int:
    """Bytes of this process's resident anonymous memory (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no RssAnon in /proc/self/status")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_trim_gives_freed_heap_pages_back() -> None:
    chunks = [bytes([i % 256]) * MALLOCED for i in range(COUNT)]
    pin = chunks[-1]  # the last one, at the heap's top, keeps free() itself from trimming
    before = resident_anonymous()
    del chunks
    assert resident_anonymous() > before - 10 * MIB  # freed, but still held by malloc
    assert heap.trim()
    assert resident_anonymous() < before - 20 * MIB
    assert pin


def test_idle_trim_runs_once_per_busy_spell(monkeypatch: pytest.MonkeyPatch) -> None:
    trims: list[int] = []
    monkeypatch.setattr(heap, "trim", lambda: trims.append(1) or True)
    idle = heap.IdleTrim()
    assert not idle.check(0, idle=True)  # nothing happened yet: nothing to give back
    assert not idle.check(3, idle=False)  # busy: the pages are in use
    assert idle.check(3, idle=True)
    assert not idle.check(3, idle=True)  # trimmed already, nothing since
    assert not idle.check(5, idle=False)
    assert idle.check(5, idle=True)
    assert len(trims) == 2


def count_trims(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    trims: list[int] = []
    monkeypatch.setattr(heap, "trim", lambda: trims.append(1) or True)
    return trims


def test_a_front_trims_once_its_connections_are_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    trims = count_trims(monkeypatch)
    setup = Setup()
    setup.front.sweep()
    conn, _ = setup.connect()
    setup.front.sweep()
    assert trims == []  # nothing served yet, then a client connected
    conn.connection_lost(None)
    setup.front.sweep()
    setup.front.sweep()
    assert trims == [1]
