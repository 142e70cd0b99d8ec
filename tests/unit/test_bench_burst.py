"""The burst bench's summary: the goals' ratios are taken within each round, then summed up."""

from __future__ import annotations

from bench.burst import BurstResult, summary


def result(name: str, p99: float, rest_pss: float) -> BurstResult:
    burst = {"latency_ms": {"p50": 1.0, "p99": p99}, "rps": 100.0, "errors": {}}
    return BurstResult(name, name, "ok", 30.0, rest_pss, 3, burst)


def test_each_ratio_is_taken_within_its_round_and_a_skipped_profile_says_so() -> None:
    rounds = [
        [result("maitred-1x4", 170, 33.0), result("maitred-4x4", 50, 48.0),
         result("maitred-scaling", 60, 34.0), BurstResult("uwsgi-cheaper", "u", "skipped")],
        [result("maitred-1x4", 400, 33.0), result("maitred-4x4", 500, 48.0),
         result("maitred-scaling", 550, 36.0), BurstResult("uwsgi-cheaper", "u", "skipped")],
        [result("maitred-1x4", 170, 33.0), result("maitred-4x4", 50, 48.0),
         result("maitred-scaling", 150, 34.0), BurstResult("uwsgi-cheaper", "u", "skipped")],
    ]  # fmt: skip
    rows = {line.split(" | ")[0][2:]: line for line in summary(rounds).splitlines()}
    # 1.2, 1.1 and 3.0: a slow machine in round 2 does not hide the bad round 3.
    assert "| 1.20 (1.10-3.00; mixed 1.3x) |" in rows["maitred-scaling"]
    assert "150 ms (60-550)" in rows["maitred-scaling"]
    assert "| 1.03 (1.03-1.09; meets 1.2x) |" in rows["maitred-scaling"]
    assert "skipped" in rows["u"]
