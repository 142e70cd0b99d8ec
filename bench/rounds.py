"""Rounds and same-run ratios: how the suite tells 0.8x from 1.0x on a noisy shared machine.

Theory of operation: absolute figures on this machine drift by 15 % or more between runs (other
work shares the two cores), and a server measured first or last in a run sees a different machine
than one measured in the middle. So the suite runs every profile several times, in rounds whose
order alternates (A B C, then C B A, then A B C ...): each profile is measured early and late
equally often. Every round gives, for each profile and scenario, a ratio to the baseline profile
measured in that same round; the report shows the median of those ratios and their spread (the
lowest and the highest). A row whose spread is wider than the difference its median claims
(|median - 1|) cannot say which server is faster, and the report flags it.

Pure functions only: no process, no clock, unit-tested in tests/unit/test_bench_rounds.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# A ratio of 1.0 claims no difference at all.
PARITY = 1.0


def round_orders(names: Sequence[str], rounds: int) -> list[list[str]]:
    """The order profiles run in, per round: as given, then reversed, alternately."""
    forward = list(names)
    return [forward if i % 2 == 0 else forward[::-1] for i in range(rounds)]


def median(values: Sequence[float]) -> float:
    """The middle value (the mean of the two middle ones for an even count)."""
    if not values:
        raise ValueError("median of no values")
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


@dataclass(frozen=True)
class RatioSummary:
    """The ratios of one profile to the baseline over a run's rounds."""

    median: float
    low: float
    high: float
    rounds: int

    @property
    def spread(self) -> float:
        return self.high - self.low

    @property
    def claimed(self) -> float:
        """The difference the median claims between the profile and the baseline."""
        return abs(self.median - PARITY)

    @property
    def unsure(self) -> bool:
        """The spread is wider than the claimed difference: the row cannot tell who is faster.

        One round has no spread to judge by: it is never flagged, and never trusted either
        (the report shows the number of rounds).
        """
        return self.rounds > 1 and self.spread > self.claimed

    def as_dict(self) -> dict[str, float | int | bool]:
        return {
            "median": round(self.median, 4),
            "low": round(self.low, 4),
            "high": round(self.high, 4),
            "rounds": self.rounds,
            "unsure": self.unsure,
        }


def summarize(ratios: Sequence[float]) -> RatioSummary | None:
    """Median and spread of the per-round ratios; None when no round gave a ratio."""
    if not ratios:
        return None
    return RatioSummary(median(ratios), min(ratios), max(ratios), len(ratios))


def paired_ratios(values: Sequence[float | None], bases: Sequence[float | None]) -> list[float]:
    """value / base for each round in which both were measured (and the base is not zero)."""
    return [v / b for v, b in zip(values, bases, strict=True) if v is not None and b]


def median_round(values: Sequence[float | None]) -> int | None:
    """The index of the round whose value is the median one (the lower middle for an even count):
    its figures (latency, CPU shares) stand for the profile in the single-figure tables."""
    measured = sorted((v, i) for i, v in enumerate(values) if v is not None)
    if not measured:
        return None
    return measured[(len(measured) - 1) // 2][1]


Outcome = dict[str, Any]


def rps(outcome: Outcome | None) -> float | None:
    """A scenario's successful requests per second; None when it failed or did not run."""
    if outcome is None or "error" in outcome:
        return None
    return float(outcome["measured"]["rps"])


def merge_rounds(rounds: Sequence[Sequence[Outcome]]) -> list[Outcome]:
    """One result per profile from several rounds (each a list of profile results, in the same
    profile order): each scenario's outcome is that of its median-throughput round, with every
    round's throughput beside it (``rounds_rps``); the idle memory is that of the round with
    the median idle PSS. A single round is returned as it is."""
    if len(rounds) == 1:
        return list(rounds[0])
    merged = []
    for runs in zip(*rounds, strict=True):
        # A round in which the profile failed says so only if every round did.
        base = next((run for run in runs if run["scenarios"]), runs[0])
        profile = {**base, "scenarios": {}}
        for name in dict.fromkeys(n for run in runs for n in run["scenarios"]):
            figures = [rps(run["scenarios"].get(name)) for run in runs]
            chosen = median_round(figures)
            source = base if chosen is None else runs[chosen]
            outcome = source["scenarios"].get(name, {"error": "did not run"})
            profile["scenarios"][name] = {**outcome, "rounds_rps": figures}
        idle = [run["memory"].get("idle", {}).get("pss_kib") for run in runs]
        chosen = median_round(idle)
        if chosen is not None:
            profile["memory"] = runs[chosen]["memory"]
        merged.append(profile)
    return merged
