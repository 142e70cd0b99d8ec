"""nginx's limit_req as a leaky bucket (front/leakybucket.py), against a fake clock: the rate,
the burst, nodelay and two-stage delay, Retry-After."""

from __future__ import annotations

import pytest

from maitred.front.leakybucket import (
    DELAY,
    PASS,
    REFUSE,
    Decision,
    RateRule,
    admit,
    parse_rate,
    retry_after,
)

NOW = 1000.0


class Key:
    """One key's bucket as the shared table keeps it: a tat, updated unless refused."""

    def __init__(self, rule: RateRule) -> None:
        self.rule = rule
        self.tat = 0.0

    def send(self, now: float) -> Decision:
        decision = admit(self.rule, self.tat, now)
        self.tat = decision.tat
        return decision


def outcomes(key: Key, count: int, now: float) -> list[Decision]:
    return [key.send(now) for _ in range(count)]


def test_rates_in_nginx_forms() -> None:
    assert parse_rate("5r/s") == 5.0
    assert parse_rate("30r/m") == 0.5
    assert parse_rate("0.5r/s") == 0.5
    for bad in ("5", "5r/h", "r/s", "-1r/s", "0r/s", "5 per second"):
        with pytest.raises(ValueError):
            parse_rate(bad)


def test_no_burst_admits_one_per_interval() -> None:
    key = Key(RateRule(5.0))
    assert [d.outcome for d in outcomes(key, 3, NOW)] == [PASS, REFUSE, REFUSE]
    assert key.send(NOW + 0.1).outcome is REFUSE  # half an interval later: still too soon
    assert key.send(NOW + 0.2).outcome is PASS
    assert key.send(NOW + 0.4).outcome is PASS


def test_a_burst_of_100_admits_11_and_delays_them_by_their_place() -> None:
    key = Key(RateRule(5.0, burst=10))
    decisions = outcomes(key, 100, NOW)
    admitted = [d for d in decisions if d.outcome is not REFUSE]
    assert len(admitted) == 11
    assert admitted[0] == Decision(PASS, 0.0, NOW + 0.2)
    # nginx's default: each excess request waits for the ones ahead of it to drain.
    assert [round(d.seconds, 6) for d in admitted[1:]] == [round(0.2 * n, 6) for n in range(1, 11)]
    assert all(d.outcome is DELAY for d in admitted[1:])
    # Refused ones leave the bucket as it was: one more fits an interval later.
    assert key.send(NOW + 0.2).outcome is DELAY
    assert key.send(NOW + 0.2).outcome is REFUSE


def test_nodelay_answers_the_burst_at_once_but_spends_it() -> None:
    key = Key(RateRule(5.0, burst=10, undelayed=10))
    decisions = outcomes(key, 20, NOW)
    assert [d.outcome for d in decisions] == [PASS] * 11 + [REFUSE] * 9
    assert key.send(NOW + 0.1).outcome is REFUSE
    assert key.send(NOW + 0.2).outcome is PASS


def test_two_stage_delay_lets_the_first_go_and_delays_the_rest() -> None:
    key = Key(RateRule(10.0, burst=12, undelayed=8))
    decisions = outcomes(key, 15, NOW)
    assert [d.outcome for d in decisions] == [PASS] * 9 + [DELAY] * 4 + [REFUSE] * 2
    # The 10th request is at level 9, one past the 8 undelayed: it waits one interval.
    assert [round(d.seconds, 6) for d in decisions[9:13]] == [0.1, 0.2, 0.3, 0.4]


def test_the_bucket_drains_at_the_rate() -> None:
    key = Key(RateRule(2.0, burst=4, undelayed=4))
    assert all(d.outcome is PASS for d in outcomes(key, 5, NOW))
    assert key.send(NOW).outcome is REFUSE
    later = NOW + 1.0  # two intervals: two places free again
    assert [d.outcome for d in outcomes(key, 3, later)] == [PASS, PASS, REFUSE]
    assert [d.outcome for d in outcomes(key, 5, NOW + 100)] == [PASS] * 5  # long idle: empty


def test_retry_after_says_when_a_place_frees() -> None:
    key = Key(RateRule(30 / 60, burst=1))  # 30r/m: one every two seconds
    outcomes(key, 2, NOW)
    refused = key.send(NOW)
    assert refused.outcome is REFUSE
    assert refused.seconds == pytest.approx(2.0)
    assert retry_after(refused.seconds) == 2
    assert retry_after(0.01) == 1  # never 0
    assert retry_after(2.5) == 3


def test_bad_rules_are_refused() -> None:
    for bad in ({"per_second": 0.0}, {"per_second": 1.0, "burst": -1}):
        with pytest.raises(ValueError):
            RateRule(**bad)  # type: ignore[arg-type]
