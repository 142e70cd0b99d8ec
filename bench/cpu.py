"""Where the machine's CPU went while a scenario ran: server, load generator, anything else.

On a 2-core machine shared by server and load generator, a figure means little without this.
"Other" is the time the machine spent running processes (user and system) minus the server tree,
the load processes and this harness: when it is large, something outside the benchmark was
competing, and the run should be redone. Interrupt time is shown apart ("kernel"): on loopback,
most of the TCP work runs as softirq, belongs to no process, and grows with the request rate.
Steal is time the hypervisor gave our virtual cores to someone else.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

from bench.procs import children_map, descendants

TICKS_PER_S = os.sysconf("SC_CLK_TCK")
# Positions in /proc/stat's "cpu" line: user nice system idle iowait irq softirq steal.
_PROCESS_FIELDS = (0, 1, 2)
_KERNEL_FIELDS = (5, 6)
_STEAL_FIELD = 7


@dataclass(frozen=True)
class MachineTimes:
    processes: float
    kernel: float
    steal: float


def machine_times() -> MachineTimes:
    with open("/proc/stat") as f:
        fields = [int(value) for value in f.readline().split()[1:]]
    return MachineTimes(
        sum(fields[i] for i in _PROCESS_FIELDS) / TICKS_PER_S,
        sum(fields[i] for i in _KERNEL_FIELDS) / TICKS_PER_S,
        fields[_STEAL_FIELD] / TICKS_PER_S,
    )


def tree_cpu_s(roots: Sequence[int]) -> float:
    """User + system time of a process tree, with what its reaped children used."""
    tree = children_map()
    total = 0
    for pid in {pid for root in roots for pid in descendants(root, tree)}:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # utime stime cutime cstime: fields 14-17, i.e. 11-14 after the command name.
        fields = stat[stat.rindex(b")") + 2 :].split()
        total += sum(int(value) for value in fields[11:15])
    return total / TICKS_PER_S


@dataclass(frozen=True)
class CpuMark:
    wall: float
    machine: MachineTimes
    server: float
    harness: float


def mark(roots: Sequence[int]) -> CpuMark:
    return CpuMark(time.monotonic(), machine_times(), tree_cpu_s(roots), time.process_time())


def shares(start: CpuMark, end: CpuMark, loadgen_s: float) -> dict[str, float]:
    """CPU use between two marks, in % of one core."""
    wall = max(end.wall - start.wall, 1e-9)
    server = end.server - start.server
    harness = end.harness - start.harness
    processes = end.machine.processes - start.machine.processes
    other = max(0.0, processes - server - loadgen_s - harness)

    def pct(seconds: float) -> float:
        return round(100 * seconds / wall, 1)

    return {
        "server_cpu_pct": pct(server),
        "loadgen_cpu_pct": pct(loadgen_s),
        "harness_cpu_pct": pct(harness),
        "kernel_cpu_pct": pct(end.machine.kernel - start.machine.kernel),
        "steal_cpu_pct": pct(end.machine.steal - start.machine.steal),
        "other_cpu_pct": pct(other),
    }
