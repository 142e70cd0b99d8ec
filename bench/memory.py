"""RSS and PSS of a server's whole process tree, read from /proc, idle and at peak.

RSS counts shared pages once per process, so for pre-forked servers it overstates what the tree
really costs; PSS divides each shared page among the processes that map it, so the PSS of a tree
is what the machine would get back by stopping it. We report both, and at idle the PSS of each
kind of process (master, front, worker), told apart by process title: a title that names a front
is a front, a root of the tree (the process the suite started) is the master, and every other
process is a worker.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.procs import children_map, descendants

# How often the sampler reads the tree while load runs: often enough to catch a burst, rarely
# enough that reading smaps_rollup of a few dozen processes costs under 1 % of a core.
SAMPLE_INTERVAL_S = 0.5


@dataclass(frozen=True)
class MemSample:
    rss_kib: int
    pss_kib: int
    processes: int

    def as_dict(self) -> dict[str, int]:
        return {"rss_kib": self.rss_kib, "pss_kib": self.pss_kib, "processes": self.processes}


def _rollup(pid: int) -> tuple[int, int]:
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except (OSError, ValueError):
        pass  # the process ended between listing and reading: it holds no memory now
    return rss, pss


# The process kinds of the per-process table, in the order it shows them.
MASTER, FRONT, WORKER = "master", "front", "worker"
ROLES = (MASTER, FRONT, WORKER)
FRONT_TITLE = b"front"


def _title(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0", 1)[0]
    except OSError:
        return b""


def role(pid: int, roots: Sequence[int]) -> str:
    if FRONT_TITLE in _title(pid):
        return FRONT
    return MASTER if pid in roots else WORKER


def roles_memory(roots: Sequence[int]) -> dict[str, dict[str, int]]:
    """PSS per kind of process: how many there are, and the PSS of each (mean, KiB)."""
    tree = children_map()
    totals: dict[str, list[int]] = {}
    for pid in {pid for root in roots for pid in descendants(root, tree)}:
        totals.setdefault(role(pid, roots), []).append(_rollup(pid)[1])
    return {
        name: {"processes": len(pss), "pss_kib_each": sum(pss) // len(pss)}
        for name, pss in totals.items()
    }


def tree_memory(roots: Sequence[int]) -> MemSample:
    tree = children_map()
    pids = {pid for root in roots for pid in descendants(root, tree)}
    rss = pss = 0
    for pid in pids:
        r, p = _rollup(pid)
        rss += r
        pss += p
    return MemSample(rss, pss, len(pids))


class PeakSampler:
    """Samples a tree in a background thread; ``peak`` holds the largest RSS, PSS and count seen.

    Only the sampler thread writes the samples; the main thread reads them after ``stop``.
    """

    def __init__(self, roots: Callable[[], Sequence[int]]) -> None:
        self._roots = roots
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mem-sampler", daemon=True)
        self.peak = MemSample(0, 0, 0)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            sample, peak = tree_memory(self._roots()), self.peak
            self.peak = MemSample(
                max(sample.rss_kib, peak.rss_kib),
                max(sample.pss_kib, peak.pss_kib),
                max(sample.processes, peak.processes),
            )
            self._stop.wait(SAMPLE_INTERVAL_S)
