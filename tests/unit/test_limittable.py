"""The fronts' shared limit table (front/limittable.py): bounded whatever the number of keys,
what it evicts, counts in flight, and two processes sharing one table."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator

import pytest

from maitred.front.leakybucket import PASS, REFUSE, RateRule
from maitred.front.limittable import NO_ROOM, WAYS, LimitTable

NOW = 5000.0
BURST = RateRule(5.0, burst=10, undelayed=10)


@pytest.fixture
def table() -> Iterator[LimitTable]:
    made = LimitTable(1024)
    yield made
    made.close()


def admitted(table: LimitTable, key: bytes, count: int, now: float = NOW) -> int:
    return sum(table.rate(key, BURST, now).outcome is not REFUSE for _ in range(count))


def test_a_key_gets_its_burst_and_no_more(table: LimitTable) -> None:
    assert admitted(table, b"a", 100) == 11
    assert admitted(table, b"b", 100) == 11  # another key: its own bucket
    assert table.rate(b"a", BURST, NOW + 0.2).outcome is PASS


def test_the_table_stays_bounded_whatever_the_number_of_keys(table: LimitTable) -> None:
    assert table.capacity == 1024
    for n in range(20_000):
        table.rate(b"client-%d" % n, BURST, NOW + n * 1e-6)
    assert table.used() == table.capacity


def test_a_drained_bucket_is_taken_before_a_live_one() -> None:
    table = LimitTable(WAYS)  # one set: every key competes for its entries
    try:
        admitted(table, b"busy", 11)  # full for two seconds
        for n in range(WAYS - 1):
            admitted(table, b"idle-%d" % n, 1)  # one request: drained after 0.2 s
        later = NOW + 1.0
        for n in range(WAYS - 1):
            table.rate(b"new-%d" % n, BURST, later)  # take the drained ones' entries
        # The busy key is still known: its bucket has 5 places free, not 11.
        assert admitted(table, b"busy", 100, later) == 5
    finally:
        table.close()


def test_when_full_the_least_recently_used_key_goes() -> None:
    table = LimitTable(WAYS)
    try:
        for n in range(WAYS):
            admitted(table, b"key-%d" % n, 11, NOW + n * 0.1)  # each full; key-0 the oldest
        now = NOW + WAYS * 0.1  # none drained yet
        admitted(table, b"newcomer", 1, now)
        assert admitted(table, b"key-0", 100, now) == 11  # forgotten: a fresh bucket
        assert admitted(table, b"key-%d" % (WAYS - 1), 100, now) < 11  # remembered
    finally:
        table.close()


def test_counts_in_flight(table: LimitTable) -> None:
    held = [table.acquire(b"conn", 2, NOW) for _ in range(3)]
    assert held[0] and held[1] and held[2] == 0  # the third is over the limit
    table.release(held[0])
    again = table.acquire(b"conn", 2, NOW)
    assert again == held[0]
    table.forget_counts()  # a front died holding them
    table.release(held[1])  # released against 0: stays 0
    assert all(table.acquire(b"conn", 2, NOW) for _ in range(2))


def test_an_entry_counting_requests_is_never_evicted() -> None:
    table = LimitTable(WAYS)
    try:
        held = [table.acquire(b"conn-%d" % n, 1, NOW) for n in range(WAYS)]
        assert all(held)
        assert table.acquire(b"one-more", 1, NOW) == NO_ROOM  # goes on uncounted
        admitted(table, b"rate-key", 1)  # admitted, untracked
        assert all(table.acquire(b"conn-%d" % n, 1, NOW) == 0 for n in range(WAYS))
    finally:
        table.close()


def in_child(work: Callable[[], int]) -> Callable[[], int]:
    """Run `work` in a forked child at once; the returned call waits for its result."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        try:
            os.write(write, b"%d" % work())
        finally:
            os._exit(0)
    os.close(write)

    def result() -> int:
        with os.fdopen(read, "rb") as pipe:
            value = int(pipe.read())
        os.waitpid(pid, 0)
        return value

    return result


def test_two_processes_share_one_bucket(table: LimitTable) -> None:
    child = in_child(lambda: admitted(table, b"shared", 200))
    mine = admitted(table, b"shared", 200)
    assert mine + child() == 11


def test_two_processes_share_counts(table: LimitTable) -> None:
    mine = table.acquire(b"conn", 3, NOW)
    assert in_child(lambda: sum(bool(table.acquire(b"conn", 3, NOW)) for _ in range(5)))() == 2
    assert table.acquire(b"conn", 3, NOW) == 0
    table.release(mine)
    assert table.acquire(b"conn", 3, NOW) == mine


def test_a_process_killed_holding_a_lock_wedges_nobody(table: LimitTable) -> None:
    index = table.fingerprint(b"victim") & (table.sets - 1)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child takes the lock and waits to be killed
        table._lock(index)
        os.write(write, b"x")
        signal.pause()
        os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"x"
    os.close(read)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert admitted(table, b"victim", 1) == 1
