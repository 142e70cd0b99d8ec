"""The fronts' shared table of rate and connection limits: fixed size, in shared memory.

Theory of operation
-------------------
With ``--fronts N`` a client's connections land on different fronts, so a limit kept in each
front would let it through N times. The master makes one :class:`LimitTable` before it forks
any front, and every front it forks (at start, after a crash, on a HUP that replaces them)
inherits the same mapping: a ``memfd`` (shared memory with no name in any file system), sized
once, ``mmap``-ed shared. USR2 starts a new master, and with it a new, empty table: limits
start over across an upgrade, as they do when nginx's binary is replaced.

**Bounded.** The table has a fixed number of entries (--limit-keys), whatever the number of
clients. It is set-associative: a key's 64-bit fingerprint picks one set of :data:`WAYS`
entries, and the key lives in one of them. A key that is not there takes an entry of its set
that says nothing any more (empty; a bucket that has drained; a count at 0), else the least
recently used one (the oldest stamp) that counts no request in flight. Evicting a rate entry
only forgets a bucket: that key starts again with an empty one, as with nginx's zone when it is
full. An entry counting requests in flight is never evicted (its release must find it); a set
whose every entry does is a key that cannot be counted, and its request goes on uncounted
(fail open, logged by the caller) rather than being refused for others' sake.

**Fingerprints.** Python's ``hash()`` of the key with a random salt the master draws: SipHash,
keyed per interpreter, which the fronts share as forks of the master, so a client cannot choose
keys (header values) that collide into one set and push others' entries out. It costs 0.1 µs,
where a keyed BLAKE2 costs 1.5. 0 marks an empty entry, so a fingerprint of 0 becomes 1.

**Locking.** Each set is guarded by an ``fcntl`` record lock on the byte of the memfd at its
index, held for one read-modify-write of that set (a few microseconds). We chose this over a
semaphore or a lock-free scheme for one reason: the kernel drops a process's record locks when
it dies, so a front killed by --front-timeout while holding one cannot wedge the others. (Python
has no atomic compare-and-swap on shared memory, so lock-free would mean ctypes.) The cost is
two system calls a lookup, about 2.5 µs of the 6 to 10 µs a lookup costs (measured on a busy
2-core machine); only requests to a location with a limit pay it.

**Counts after a crash.** A front that dies with requests in flight cannot release them. The
master then sets every count to 0 (:meth:`LimitTable.forget_counts`); requests other fronts hold
are released against 0, which stays 0. For a moment after a front's crash, a connection limit is
looser than set, never stuck.

Entries are ``(fingerprint u64, stamp f64, count i32)``, 20 bytes, kept by part within a set
(its fingerprints together, so one C search finds a key): the stamp is the bucket's theoretical
arrival time (front/leakybucket.py) for a rate key, the last use for a count key; both are
``time.monotonic()`` seconds, which all processes share.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
from typing import NamedTuple

from maitred.front.leakybucket import REFUSE, Decision, RateRule, admit

WAYS = 8  # entries a key may live in: more ways evict less often and cost a longer scan
# A set is its WAYS fingerprints, then their stamps, then their counts: a lookup unpacks the
# set at once and finds a fingerprint with one search in C (tuple.index), not a Python loop.
SET = struct.Struct(f"<{WAYS}Q{WAYS}d{WAYS}i")
_STAMPS, _COUNTS = WAYS, 2 * WAYS  # where each part starts in the unpacked set
_FINGERPRINT, _STAMP, _COUNT = struct.Struct("<Q"), struct.Struct("<d"), struct.Struct("<i")
_NO_COUNTS = bytes(WAYS * _COUNT.size)
EMPTY = 0
_SALT_BYTES = 16
_MASK64 = (1 << 64) - 1
# A key its set has no room for (every entry counts requests in flight).
NO_ROOM = -1


class Entry(NamedTuple):
    way: int  # its place in the set, or NO_ROOM
    stamp: float  # as stored (0.0 for a new entry)
    held: int  # requests in flight it counts


class LimitTable:
    """A fixed-size table of limit keys in memory shared by the master and its fronts."""

    def __init__(self, keys: int) -> None:
        sets = 1
        while sets * WAYS < keys:
            sets *= 2  # a power of two: the set is the fingerprint's low bits
        self.sets = sets
        self.capacity = sets * WAYS
        self._fd = os.memfd_create("maitred-limits")
        os.ftruncate(self._fd, sets * SET.size)
        self._map = mmap.mmap(self._fd, sets * SET.size)
        self._salt = os.urandom(_SALT_BYTES)

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)

    def fingerprint(self, key: bytes) -> int:
        """The 64-bit fingerprint of a key (a location's name and a client's key)."""
        return (hash(self._salt + key) & _MASK64) or 1

    # --- one set, under its lock ---

    def _open(self, fingerprint: int) -> tuple[int, tuple[float, ...]]:
        """Lock the set of `fingerprint` (the caller unlocks it) and read it."""
        index = fingerprint & (self.sets - 1)
        self._lock(index)
        return index, SET.unpack_from(self._map, index * SET.size)

    def _lock(self, index: int) -> None:
        fcntl.lockf(self._fd, fcntl.LOCK_EX, 1, index)

    def _unlock(self, index: int) -> None:
        fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, index)

    def _find(self, values: tuple[float, ...], fingerprint: int, now: float) -> Entry:
        """Where `fingerprint` is in a set, or the entry it may take."""
        fingerprints = values[:WAYS]
        if fingerprint in fingerprints:  # the usual case: a client seen before
            way = fingerprints.index(fingerprint)
            return Entry(way, values[_STAMPS + way], int(values[_COUNTS + way]))
        victim, oldest = NO_ROOM, float("inf")
        for way in range(WAYS):
            stamp = values[_STAMPS + way]
            if values[_COUNTS + way]:
                continue  # requests in flight: never evicted
            if fingerprints[way] == EMPTY or stamp <= now:
                return Entry(way, 0.0, 0)  # says nothing any more
            if stamp < oldest:
                victim, oldest = way, stamp
        return Entry(victim, 0.0, 0)

    def _store(self, index: int, way: int, fingerprint: int, stamp: float, count: int) -> None:
        base = index * SET.size
        _FINGERPRINT.pack_into(self._map, base + way * _FINGERPRINT.size, fingerprint)
        _STAMP.pack_into(self._map, base + _STAMPS * _FINGERPRINT.size + way * _STAMP.size, stamp)
        self._count(index, way, count)

    def _count(self, index: int, way: int, count: int) -> None:
        offset = index * SET.size + _STAMPS * (_FINGERPRINT.size + _STAMP.size)
        _COUNT.pack_into(self._map, offset + way * _COUNT.size, count)

    # --- what the fronts ask ---

    def rate(self, key: bytes, rule: RateRule, now: float) -> Decision:
        """A request of `key` under `rule` at `now`: nginx's limit_req (front/leakybucket.py).
        Its bucket is updated unless it is refused."""
        fingerprint = self.fingerprint(key)
        index, values = self._open(fingerprint)
        try:
            way, tat, count = self._find(values, fingerprint, now)
            decision = admit(rule, tat, now)
            if way != NO_ROOM and decision.outcome is not REFUSE:
                self._store(index, way, fingerprint, decision.tat, count)
        finally:
            self._unlock(index)
        return decision

    def acquire(self, key: bytes, limit: int, now: float) -> int:
        """Count one request of `key` in flight, if it holds fewer than `limit`. Returns its
        fingerprint (for :meth:`release`), 0 when it holds `limit` already, or NO_ROOM when
        it cannot be counted (its set is full of requests in flight)."""
        fingerprint = self.fingerprint(key)
        index, values = self._open(fingerprint)
        try:
            way, _, count = self._find(values, fingerprint, now)
            if way == NO_ROOM:
                return NO_ROOM
            if count >= limit:
                return 0
            # The stamp is the last use; a count of 0 lets anybody take the entry.
            self._store(index, way, fingerprint, now, count + 1)
            return fingerprint
        finally:
            self._unlock(index)

    def release(self, fingerprint: int) -> None:
        """A request counted by :meth:`acquire` is over."""
        index, values = self._open(fingerprint)
        try:
            fingerprints = values[:WAYS]
            if fingerprint in fingerprints:  # else forgotten: nothing to release
                way = fingerprints.index(fingerprint)
                self._count(index, way, max(0, int(values[_COUNTS + way]) - 1))
        finally:
            self._unlock(index)

    def forget_counts(self) -> None:
        """A front died holding counts it cannot release: every count goes to 0 (the master,
        when it reaps the front)."""
        fcntl.lockf(self._fd, fcntl.LOCK_EX, 0, 0)  # the whole table
        try:
            offset = _STAMPS * (_FINGERPRINT.size + _STAMP.size)
            for index in range(self.sets):
                start = index * SET.size + offset
                self._map[start : start + len(_NO_COUNTS)] = _NO_COUNTS
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 0, 0)

    def used(self) -> int:
        """Entries holding a key (for tests and the check that the table stays bounded)."""
        return sum(
            WAYS - SET.unpack_from(self._map, index * SET.size)[:WAYS].count(EMPTY)
            for index in range(self.sets)
        )
