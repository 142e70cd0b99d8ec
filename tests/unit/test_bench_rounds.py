"""The bench's same-run statistics: round order, median, spread, the unsure flag, merging."""

from __future__ import annotations

import pytest
from bench.rounds import (
    median,
    median_round,
    merge_rounds,
    paired_ratios,
    round_orders,
    summarize,
)


def test_rounds_alternate_order_so_each_profile_runs_early_and_late() -> None:
    assert round_orders(["a", "b", "c"], 3) == [["a", "b", "c"], ["c", "b", "a"], ["a", "b", "c"]]
    assert round_orders(["a", "b"], 1) == [["a", "b"]]


def test_median_of_odd_and_even_counts() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5
    with pytest.raises(ValueError):
        median([])


def test_summary_gives_median_and_spread() -> None:
    summary = summarize([0.8, 0.9, 0.85])
    assert summary is not None
    assert (summary.median, summary.low, summary.high, summary.rounds) == (0.85, 0.8, 0.9, 3)
    assert summary.spread == pytest.approx(0.1)
    assert summarize([]) is None


def test_a_spread_wider_than_the_claimed_difference_is_unsure() -> None:
    # Claims 5 % slower, but the rounds range over 20 %: it cannot tell.
    unsure = summarize([0.85, 0.95, 1.05])
    assert unsure is not None and unsure.unsure
    # Claims 2x, within 0.1: it can.
    sure = summarize([1.95, 2.0, 2.05])
    assert sure is not None and not sure.unsure
    # One round has no spread to judge by.
    one = summarize([1.01])
    assert one is not None and not one.unsure


def test_ratios_pair_rounds_and_skip_missing_ones() -> None:
    assert paired_ratios([2.0, None, 3.0, 1.0], [1.0, 1.0, 2.0, 0.0]) == [2.0, 1.5]


def test_median_round_is_the_round_of_the_median_value() -> None:
    assert median_round([30.0, 10.0, 20.0]) == 2
    assert median_round([None, 5.0, 7.0]) == 1
    assert median_round([None, None]) is None


def _profile(name: str, rps: float, pss: int) -> dict[str, object]:
    return {
        "name": name,
        "memory": {"idle": {"pss_kib": pss}},
        "scenarios": {"hello": {"measured": {"rps": rps}}},
    }


def test_merge_keeps_the_median_round_and_every_rounds_figure() -> None:
    rounds = [[_profile("a", 10.0, 5)], [_profile("a", 30.0, 7)], [_profile("a", 20.0, 6)]]
    (merged,) = merge_rounds(rounds)
    assert merged["scenarios"]["hello"]["measured"]["rps"] == 20.0
    assert merged["scenarios"]["hello"]["rounds_rps"] == [10.0, 30.0, 20.0]
    assert merged["memory"]["idle"]["pss_kib"] == 6
