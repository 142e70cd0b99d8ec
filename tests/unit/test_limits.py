"""A location's rate and connection limits as a front judges them (front/limits.py): the keys'
forms, which key a request is counted under, limit-conn's counts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from maitred.config import Config, ConfigError
from maitred.front.leakybucket import DELAY, PASS, REFUSE, RateRule
from maitred.front.limits import (
    ADDRESS,
    Limiter,
    LimitRules,
    RateKeys,
    parse_key,
    parse_rate_text,
    parse_status,
    retry_after_field,
    rules_of,
)
from maitred.front.limittable import LimitTable
from maitred.front.rules import limits_of
from maitred.locations import read_locations

NOW = 100.0
NO_FIELDS: dict[bytes, list[bytes]] = {}


@pytest.fixture
def limiter() -> Iterator[Limiter]:
    table = LimitTable(256)
    yield Limiter(table)
    table.close()


def rules(name: str = "/login/", conn: int = 0, key: str = ADDRESS, **rate: object) -> LimitRules:
    made = rules_of(RateKeys(**rate), name, conn, name, key, 429)  # type: ignore[arg-type]
    assert made is not None
    return made


def test_key_and_status_forms() -> None:
    assert parse_key("address") == ADDRESS
    assert parse_key("header:X-Api-Key") == "header:X-Api-Key"
    assert parse_key(" Header: X-Api-Key ") == "header:X-Api-Key"
    for bad in ("header:", "header:X Api", "cookie:x", 5):
        with pytest.raises(ValueError):
            parse_key(bad)
    assert parse_status(503) == 503
    for bad in (200, 600, True, "x"):
        with pytest.raises((ValueError, TypeError)):
            parse_status(bad)


def test_keys_that_do_not_go_together() -> None:
    assert rules_of(RateKeys(), "/", 0, "/", ADDRESS, 429) is None  # no limit at all
    for keys in (RateKeys("", 5), RateKeys("5r/s", 5, True, 2), RateKeys("5r/s", 2, False, 3)):
        with pytest.raises(ValueError):
            rules_of(keys, "/", 0, "/", ADDRESS, 429)
    made = rules(rate="5r/s", burst=10, nodelay=True)
    assert made.rate is not None and made.rate.undelayed == 10


def test_each_address_has_its_own_bucket(limiter: Limiter) -> None:
    limit = rules(rate="1r/s", burst=1)
    first = [limiter.judge(limit, "127.0.0.1", NO_FIELDS, NOW).outcome for _ in range(3)]
    assert first == [PASS, DELAY, REFUSE]
    assert limiter.judge(limit, "127.0.0.2", NO_FIELDS, NOW).outcome is PASS
    refused = limiter.judge(limit, "127.0.0.1", NO_FIELDS, NOW)
    assert retry_after_field(refused.seconds) == b"Retry-After: 1\r\n"


def test_locations_do_not_share_buckets(limiter: Limiter) -> None:
    login, api = rules(rate="1r/s"), rules(name="/api/", rate="1r/s")
    assert limiter.judge(login, "127.0.0.1", NO_FIELDS, NOW).outcome is PASS
    assert limiter.judge(api, "127.0.0.1", NO_FIELDS, NOW).outcome is PASS
    assert limiter.judge(login, "127.0.0.1", NO_FIELDS, NOW).outcome is REFUSE


def test_a_header_key_counts_per_value_and_not_without_one(limiter: Limiter) -> None:
    limit = rules(rate="1r/s", key="header:X-Api-Key")
    alice = {b"x-api-key": [b"alice"]}
    assert limiter.judge(limit, "127.0.0.1", alice, NOW).outcome is PASS
    assert limiter.judge(limit, "127.0.0.1", alice, NOW).outcome is REFUSE
    assert limiter.judge(limit, "127.0.0.1", {b"x-api-key": [b"bob"]}, NOW).outcome is PASS
    # No key: not counted, as nginx does with an empty key.
    assert all(limiter.judge(limit, "127.0.0.1", NO_FIELDS, NOW).outcome is PASS for _ in range(5))


def test_limit_conn_counts_requests_in_flight(limiter: Limiter) -> None:
    limit = rules(conn=2)
    held = [limiter.judge(limit, "127.0.0.1", NO_FIELDS, NOW) for _ in range(3)]
    assert [v.outcome for v in held] == [PASS, PASS, REFUSE]
    assert held[0].held and held[2].held == 0
    limiter.release(held[0].held)
    assert limiter.judge(limit, "127.0.0.1", NO_FIELDS, NOW).outcome is PASS


def test_a_rate_refusal_takes_no_count(limiter: Limiter) -> None:
    limit = rules(rate="1r/s", conn=1)
    first = limiter.judge(limit, "127.0.0.1", NO_FIELDS, NOW)
    assert first.outcome is PASS and first.held
    refused = limiter.judge(limit, "127.0.0.1", NO_FIELDS, NOW)
    assert refused.outcome is REFUSE and not refused.held
    limiter.release(first.held)
    assert limiter.judge(limit, "127.0.0.1", NO_FIELDS, NOW + 1).held


def test_a_location_takes_the_servers_limits_unless_it_has_its_own() -> None:
    cfg = Config(rate="5r/s", burst=2, limit_conn=3, limit_status=503)
    server = limits_of(None, cfg)
    assert server is not None and server.rate == RateRule(5.0, 2, 0) and server.conn == 3
    login, api = read_locations(
        [
            {"path": "/login/", "rate": "1r/s", "nodelay": False},
            {"path": "/api/", "limit-conn": 1, "limit-key": "header:X-Api-Key"},
        ],
        "test",
    )
    own = limits_of(login, cfg)
    assert own is not None and own.rate == RateRule(1.0) and own.rate_name != server.rate_name
    assert own.conn == 3 and own.conn_name == server.conn_name  # the server's limit-conn
    assert own.status == 503
    mixed = limits_of(api, cfg)
    assert mixed is not None and mixed.rate_name == server.rate_name  # the server's bucket
    assert mixed.conn == 1 and mixed.header == b"x-api-key"
    assert limits_of(login, Config()) is not None and limits_of(None, Config()) is None


def test_location_keys_that_do_not_go_together_are_refused() -> None:
    for table in (
        {"path": "/a/", "burst": 5},
        {"path": "/a/", "rate": "5r/s", "burst": 2, "delay": 3},
        {"path": "/a/", "rate": "fast"},
        {"path": "/a/", "rate": "5r/s", "limit-status": 200},
        {"path": "/a/", "limit-key": "cookie:x"},
    ):
        with pytest.raises(ConfigError):
            read_locations([table], "test")


def test_an_empty_rate_is_none_and_turns_the_servers_off_in_a_location() -> None:
    assert parse_rate_text("") == ""
    (free,) = read_locations([{"path": "/health/", "rate": ""}], "test")
    assert limits_of(free, Config(rate="5r/s")) is None
