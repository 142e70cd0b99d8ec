"""The shared-cache rules of maitred.http.caching, over request/response header pairs taken from
the examples of RFC 9111 (and RFC 9213, RFC 5861 for the targeted field and the stale
allowances). Pure: no sockets."""

from __future__ import annotations

import pytest

from maitred.http.caching import (
    Fields,
    Policy,
    Refusal,
    RequestRule,
    current_age,
    directives,
    policy,
    request_rule,
    secondary_key,
    vary_names,
)

# The Date of every response below, and when it reached the cache (one second later).
DATE = b"Thu, 01 Dec 1994 16:00:00 GMT"
DATE_TIME = 786297600.0
REQUEST_TIME = DATE_TIME
RESPONSE_TIME = DATE_TIME + 1


def fields(*lines: str) -> Fields:
    found: Fields = {}
    for line in lines:
        name, _, value = line.partition(":")
        found.setdefault(name.strip().lower().encode(), []).append(value.strip().encode())
    return found


def decide(request: Fields, response: Fields, **defaults: float) -> Policy | Refusal:
    response.setdefault(b"date", [DATE])
    return policy(b"GET", 200, request, response, REQUEST_TIME, RESPONSE_TIME, **defaults)  # type: ignore[arg-type]


# (request fields, response fields, lifetime or the refusal)
TABLE: list[tuple[tuple[str, ...], tuple[str, ...], float | Refusal]] = [
    # RFC 9111 5.2.2.1: max-age
    ((), ("Cache-Control: max-age=3600",), 3600),
    # 5.2.2.10: s-maxage wins over max-age in a shared cache
    ((), ("Cache-Control: max-age=60, s-maxage=600",), 600),
    # 5.3: Expires, relative to Date; max-age wins over Expires
    ((), ("Expires: Thu, 01 Dec 1994 17:00:00 GMT",), 3600),
    ((), ("Expires: Thu, 01 Dec 1994 17:00:00 GMT", "Cache-Control: max-age=60"), 60),
    # 5.3: an invalid Expires ("0") means already expired
    ((), ("Expires: 0",), Refusal.NO_LIFETIME),
    # 5.2.2.5 no-store, 5.2.2.7 private (a shared cache), qualified forms included
    ((), ("Cache-Control: no-store, max-age=60",), Refusal.NO_STORE),
    ((), ("Cache-Control: private, max-age=60",), Refusal.PRIVATE),
    ((), ('Cache-Control: private="Set-Cookie", max-age=60',), Refusal.PRIVATE),
    # 5.2.2.4 no-cache: kept stale from the start when there is a validator to revalidate
    # it with (4.3.1), else nothing would ever make it usable
    ((), ("Cache-Control: no-cache, max-age=60",), Refusal.NO_CACHE),
    ((), ("Cache-Control: no-cache, max-age=60", 'ETag: "v1"'), 0),
    ((), ("Cache-Control: no-cache", "Last-Modified: Thu, 01 Dec 1994 15:00:00 GMT"), 0),
    # stale at once (max-age=0) but with a validator: kept, revalidated on each use
    ((), ("Cache-Control: max-age=0", 'ETag: "v1"'), 0),
    ((), ("Cache-Control: max-age=0",), Refusal.NO_LIFETIME),
    # a validator alone does not make a response cacheable (no heuristic freshness)
    ((), ('ETag: "v1"',), Refusal.NO_LIFETIME),
    # 3.5: a request with Authorization, only when the response allows a shared cache
    (
        ("Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==",),
        ("Cache-Control: max-age=60",),
        Refusal.AUTHORIZATION,
    ),
    (("Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==",), ("Cache-Control: s-maxage=60",), 60),
    (
        ("Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==",),
        ("Cache-Control: public, max-age=60",),
        60,
    ),
    (
        ("Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==",),
        ("Cache-Control: must-revalidate, max-age=60",),
        60,
    ),
    # a cookie belongs to one client
    ((), ("Cache-Control: max-age=60", "Set-Cookie: sessionid=abc"), Refusal.SET_COOKIE),
    # 4.1: Vary: * never matches
    ((), ("Cache-Control: max-age=60", "Vary: *"), Refusal.VARY_STAR),
    ((), ("Cache-Control: max-age=60", "Vary: Accept-Encoding, *"), Refusal.VARY_STAR),
    # no lifetime given: not stored (no heuristic freshness)
    ((), ("Cache-Control: public",), Refusal.NO_LIFETIME),
    ((), (), Refusal.NO_LIFETIME),
    # RFC 9213 section 2: CDN-Cache-Control replaces Cache-Control and Expires
    ((), ("CDN-Cache-Control: max-age=600", "Cache-Control: no-store"), 600),
    ((), ("CDN-Cache-Control: no-store", "Cache-Control: max-age=600"), Refusal.NO_STORE),
    ((), ("CDN-Cache-Control: max-age=5", "Expires: Thu, 01 Dec 1994 17:00:00 GMT"), 5),
    # several field lines are one list
    ((), ("Cache-Control: public", "Cache-Control: s-maxage=30"), 30),
]


@pytest.mark.parametrize(("request_lines", "response_lines", "expected"), TABLE)
def test_rfc_table(
    request_lines: tuple[str, ...], response_lines: tuple[str, ...], expected: float | Refusal
) -> None:
    decided = decide(fields(*request_lines), fields(*response_lines))
    if isinstance(expected, Refusal):
        assert decided is expected
    else:
        assert isinstance(decided, Policy)
        assert decided.lifetime == expected


def test_only_get_and_head_and_cacheable_statuses() -> None:
    response = fields("Cache-Control: max-age=60", f"Date: {DATE.decode()}")
    assert policy(b"POST", 200, {}, response, REQUEST_TIME, RESPONSE_TIME) is Refusal.METHOD
    assert policy(b"GET", 500, {}, response, REQUEST_TIME, RESPONSE_TIME) is Refusal.STATUS
    assert isinstance(policy(b"HEAD", 404, {}, response, REQUEST_TIME, RESPONSE_TIME), Policy)


def test_a_rule_gives_a_lifetime_only_to_a_response_that_gives_none() -> None:
    said_nothing = decide({}, fields())
    assert said_nothing is Refusal.NO_LIFETIME
    ruled = decide({}, fields(), default_ttl=10)
    assert isinstance(ruled, Policy) and ruled.lifetime == 10
    assert decide({}, fields("Cache-Control: max-age=3"), default_ttl=10).lifetime == 3  # type: ignore[union-attr]
    # and never overrides the cookie and Authorization rules, nor no-store
    assert decide({}, fields("Set-Cookie: a=b"), default_ttl=10) is Refusal.SET_COOKIE
    auth = fields("Authorization: Bearer x")
    assert decide(auth, fields(), default_ttl=10) is Refusal.AUTHORIZATION
    assert decide({}, fields("Cache-Control: no-store"), default_ttl=10) is Refusal.NO_STORE


def test_stale_allowances() -> None:
    # RFC 5861 section 3 and 4
    decided = decide({}, fields("Cache-Control: max-age=600, stale-while-revalidate=30"))
    assert isinstance(decided, Policy)
    assert (decided.stale_while_revalidate, decided.stale_if_error) == (30, 0)
    decided = decide({}, fields("Cache-Control: max-age=600, stale-if-error=1200"))
    assert isinstance(decided, Policy) and decided.stale_if_error == 1200
    # the default applies when the response names none; must-revalidate forbids both
    decided = decide({}, fields("Cache-Control: max-age=60"), default_stale_if_error=300)
    assert isinstance(decided, Policy) and decided.stale_if_error == 300
    decided = decide(
        {},
        fields("Cache-Control: max-age=60, must-revalidate, stale-while-revalidate=9"),
        default_stale_if_error=300,
    )
    assert isinstance(decided, Policy)
    assert (decided.stale_while_revalidate, decided.stale_if_error) == (0, 0)
    # no-cache: never served stale, whatever else it says
    decided = decide(
        {},
        fields("Cache-Control: no-cache, stale-while-revalidate=9, stale-if-error=9", 'ETag: "a"'),
        default_stale_if_error=300,
    )
    assert isinstance(decided, Policy) and decided.lifetime == 0
    assert (decided.stale_while_revalidate, decided.stale_if_error) == (0, 0)
    # stale at once, but usable stale: stored
    decided = decide({}, fields("Cache-Control: max-age=0, stale-while-revalidate=30"))
    assert isinstance(decided, Policy) and decided.lifetime == 0


def test_age() -> None:
    # RFC 9111 4.2.3: the greater of the apparent age and the corrected Age value
    decided = decide({}, fields("Cache-Control: max-age=60", "Age: 10"))
    assert isinstance(decided, Policy) and decided.initial_age == 11  # 10 + 1 s delay
    decided = decide({}, fields("Cache-Control: max-age=60"))
    assert isinstance(decided, Policy) and decided.initial_age == 1  # apparent age
    # 30 s resident on top
    assert current_age(10, DATE_TIME, REQUEST_TIME, RESPONSE_TIME, RESPONSE_TIME + 30) == 41
    # a Date in the future (clock skew) does not make the age negative
    assert current_age(0, DATE_TIME + 100, REQUEST_TIME, RESPONSE_TIME, RESPONSE_TIME) == 1


def test_vary() -> None:
    response = fields("Vary: Accept-Encoding", "Vary: accept-language , Cookie")
    names = vary_names(response)
    assert names == (b"accept-encoding", b"accept-language", b"cookie")
    gzip = fields("Accept-Encoding: gzip,  br", "Accept-Language: fr")
    assert secondary_key(names, gzip) == (b"gzip,br", b"fr", b"")
    assert secondary_key(names, fields("Accept-Encoding: gzip, br", "Accept-Language: fr")) == (
        secondary_key(names, gzip)
    )
    assert secondary_key(names, fields("Accept-Encoding: identity")) != secondary_key(names, gzip)
    decided = decide({}, fields("Cache-Control: max-age=60", "Vary: Accept-Encoding"))
    assert isinstance(decided, Policy) and decided.vary == (b"accept-encoding",)


def test_request_rules() -> None:
    assert request_rule({}) is RequestRule.ANY
    assert request_rule(fields("Cache-Control: no-store")) is RequestRule.NO_STORE
    assert request_rule(fields("Cache-Control: no-cache")) is RequestRule.REFRESH
    assert request_rule(fields("Cache-Control: max-age=0")) is RequestRule.REFRESH
    assert request_rule(fields("Pragma: no-cache")) is RequestRule.REFRESH
    assert request_rule(fields("Cache-Control: max-stale", "Pragma: no-cache")) is RequestRule.ANY


def test_directives() -> None:
    assert directives([b'max-age=60, Private="x", no-cache']) == {
        b"max-age": b"60",
        b"private": b"x",
        b"no-cache": b"",
    }
    # a malformed delta is stale at once, not a crash
    assert decide({}, fields("Cache-Control: max-age=soon")) is Refusal.NO_LIFETIME
