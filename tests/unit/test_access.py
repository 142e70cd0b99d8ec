"""allow/deny lists on client addresses (IPv4 and IPv6), and the rules' pure parts."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from maitred.access import REMEMBERED, AccessList
from maitred.config import Config
from maitred.front.rules import HeaderEdit, Rule, expand
from maitred.http.parser import RequestHead
from maitred.locations import read_locations


def test_allow_alone_lets_in_its_addresses_and_nobody_else() -> None:
    access = AccessList(["10.0.0.0/8", "127.0.0.1", "2001:db8::/32"], [])
    assert access("10.1.2.3") and access("127.0.0.1") and access("2001:db8::1")
    assert not access("127.0.0.2")
    assert not access("11.0.0.1")
    assert not access("2001:db9::1")
    assert not access("")  # a unix socket's client has no address: not listed
    assert not access("garbage")


def test_deny_alone_refuses_its_addresses_and_lets_in_the_rest() -> None:
    access = AccessList([], ["192.0.2.0/24", "::1"])
    assert not access("192.0.2.77") and not access("::1")
    assert access("192.0.3.1") and access("::2") and access("")


def test_the_most_specific_entry_decides_whatever_list_it_is_in() -> None:
    # nginx: allow 10.0.0.5; deny 10.0.0.0/8; allow all;  and  deny 10.0.0.5; allow 10/8;
    access = AccessList(["10.0.0.5", "all"], ["10.0.0.0/8"])
    assert access("10.0.0.5") and not access("10.0.0.6") and access("192.0.2.1")
    access = AccessList(["10.0.0.0/8"], ["10.0.0.5"])
    assert not access("10.0.0.5") and access("10.0.0.6") and not access("192.0.2.1")
    # deny all beside allow lines: as allow alone
    access = AccessList(["fd00::/8"], ["all"])
    assert access("fd12::1") and not access("fe80::1") and not access("10.0.0.1")


def test_on_a_tie_deny_wins() -> None:
    access = AccessList(["10.0.0.0/8"], ["10.0.0.0/8"])
    assert not access("10.0.0.1")


def test_ipv4_clients_of_an_ipv6_listener_are_judged_as_ipv4() -> None:
    access = AccessList(["127.0.0.1", "::ffff:10.0.0.0/104"], [])
    assert access("::ffff:127.0.0.1")
    assert access("10.9.9.9") and access("::ffff:10.9.9.9")
    assert not access("::ffff:127.0.0.2")
    assert not access("::1")  # IPv6 loopback is another address than 127.0.0.1
    assert access("fe80::1%eth0") is False  # a zone is ignored, the address judged


def test_unix_socket_clients_are_let_in_only_when_listed() -> None:
    assert AccessList(["unix"], [])("")
    assert not AccessList(["unix"], [])("127.0.0.1")
    assert not AccessList([], ["unix"])("")


def test_verdicts_are_remembered_within_a_bound() -> None:
    access = AccessList(["10.0.0.0/8"], [])
    for n in range(REMEMBERED + 10):
        access(f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}")
    assert len(access.seen) <= REMEMBERED


def test_header_edit_adds_lines_and_replaces_those_of_its_names() -> None:
    edit = HeaderEdit([("Strict-Transport-Security", "max-age=1"), ("X-Frame-Options", "DENY")])
    head = b"HTTP/1.1 200 OK\r\nServer: maitred\r\nContent-Type: text/plain\r\n"
    assert edit(head) == head + b"Strict-Transport-Security: max-age=1\r\nX-Frame-Options: DENY\r\n"
    own = b"HTTP/1.1 200 OK\r\nx-frame-options: SAMEORIGIN\r\nContent-Length: 2\r\n"
    assert edit(own) == (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
        b"Strict-Transport-Security: max-age=1\r\nX-Frame-Options: DENY\r\n"
    )
    # A name inside another field's value is not a field of that name.
    value = b"HTTP/1.1 200 OK\r\nX-Note: x-frame-options: no\r\n"
    assert edit(value) == value + edit.lines


def exchange(target: bytes, host: bytes = b"example.com:8080", scheme: str = "http") -> Any:
    head = RequestHead(b"GET", target, "1.1", [(b"Host", host)], True)
    return SimpleNamespace(head=head, peer=("10.0.0.1", "1", "srv", "80", scheme))


def test_redirects_substitute_scheme_host_and_request_uri() -> None:
    e = exchange(b"/a/b?x=1&y=%20")
    assert expand("https://$host$request_uri", e) == b"https://example.com/a/b?x=1&y=%20"
    assert expand("$scheme://www.$host/", e) == b"http://www.example.com/"
    assert expand("https://x$request_uri", exchange(b"http://h/p?q")) == b"https://x/p?q"


def rule(**keys: Any) -> Rule:
    (loc,) = read_locations([{"path": "/", **keys}], "t")
    return Rule(loc, Config(allow=("192.0.2.0/24",)))


def test_a_rule_refuses_by_address_then_size_and_redirects_before_all() -> None:
    assert rule().judge(exchange(b"/")) is not None  # the server's --allow: 10.0.0.1 not in it
    assert rule(allow=["10.0.0.0/8"]).judge(exchange(b"/")) is None  # its own replace it
    refusal = rule(deny=["10.0.0.1"], redirect="https://x$request_uri").judge(exchange(b"/q"))
    assert refusal is not None and refusal.status == 301
    assert refusal.headers == b"Location: https://x/q\r\n"
    big = exchange(b"/")
    big.head.content_length = 2049
    sized = rule(allow=["all"], **{"max-body-size": "2K"})
    refusal = sized.judge(big)
    assert refusal is not None and refusal.status == 413
    big.head.content_length = 2048
    assert sized.judge(big) is None


def test_a_rules_own_answers_carry_its_headers() -> None:
    r = rule(allow=["10.9.9.9"], headers={"X-A": "1"})
    refusal = r.judge(exchange(b"/"))
    assert refusal is not None and refusal.status == 403 and refusal.headers == b"X-A: 1\r\n"
    assert r.too_large().headers == b"X-A: 1\r\n"
