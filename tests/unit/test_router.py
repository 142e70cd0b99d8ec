"""The router's request ids: the client's when it is usable, else a new one."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

from maitred import apps
from maitred.config import Config
from maitred.front.router import Router
from maitred.http.parser import Limits, RequestHead
from maitred.http.response import DateCache

NEW_ID = re.compile(r"[0-9a-f]{32}")


class Dispatcher:
    def __init__(self) -> None:
        self.submitted: list[Any] = []

    def submit(self, exchange: Any) -> None:
        self.submitted.append(exchange)


class Bits:
    """Stands in for the router's random generator: the numbers it draws, in order."""

    def __init__(self, *numbers: int) -> None:
        self.numbers = list(numbers)

    def getrandbits(self, bits: int) -> int:
        assert bits == 128
        return self.numbers.pop(0)


def make_router() -> tuple[Router, Dispatcher]:
    dispatcher = Dispatcher()
    cfg = Config()
    front = SimpleNamespace(
        cfg=cfg,
        apps=apps.resolve(cfg),
        dispatchers={"main": dispatcher},
        date=DateCache(),
        health=None,
        limits=Limits(),
    )
    return Router(front), dispatcher  # type: ignore[arg-type]


UNTRUSTED = ("192.0.2.1", "5000", "", "", "http")
TRUSTED = ("127.0.0.1", "5000", "", "", "http")  # a proxy by the default --forwarded-allow-ips


def route(router: Router, headers: list[tuple[bytes, bytes]], peer: Any = UNTRUSTED) -> Any:
    """The exchange as the router leaves it, from a peer that is not a trusted proxy unless
    `peer` says otherwise."""
    exchange = SimpleNamespace(
        head=RequestHead(b"GET", b"/", "1.1", headers, True),
        conn=SimpleNamespace(peer=peer),
        peer=peer,
        request_id="",
        extra_head=b"",
        refusal=None,
        not_before=0.0,
        target=None,
        app="",
    )
    assert router.head(exchange) is None  # type: ignore[arg-type]
    router.route(exchange)  # type: ignore[arg-type]
    return exchange


def test_a_new_id_is_32_hex_digits_with_its_leading_zeros() -> None:
    router, dispatcher = make_router()
    router.random = Bits(1, 2**128 - 1, 0xABC << 112)  # type: ignore[assignment]
    ids = [route(router, [(b"Host", b"h")]) for _ in range(3)]
    assert [e.request_id for e in ids] == ["0" * 31 + "1", "f" * 32, "0abc" + "0" * 28]
    assert ids[0].extra_head == b"X-Request-ID: " + b"0" * 31 + b"1\r\n"
    assert dispatcher.submitted == ids


def test_new_ids_differ() -> None:
    router, _ = make_router()
    ids = {route(router, []).request_id for _ in range(1000)}
    assert len(ids) == 1000 and all(NEW_ID.fullmatch(i) for i in ids)


def test_a_usable_client_id_is_kept_and_an_unusable_one_replaced() -> None:
    router, _ = make_router()
    kept = route(router, [(b"x-request-id", b"req-42.abc_DEF")])
    assert kept.request_id == "req-42.abc_DEF"
    assert kept.extra_head == b"X-Request-ID: req-42.abc_DEF\r\n"
    replaced = route(router, [(b"X-Request-ID", b"has space")])
    assert NEW_ID.fullmatch(replaced.request_id)


def test_the_first_of_repeated_client_ids_is_the_one() -> None:
    router, _ = make_router()
    exchange = route(router, [(b"X-Request-ID", b"first"), (b"x-request-id", b"second")])
    assert exchange.request_id == "first"


# --- forwarded fields ---

X_FORWARDED = [
    (b"HOST", b"internal:8000"),
    (b"x-FORWARDED-for", b"6.6.6.6, 203.0.113.7"),
    (b"X-Forwarded-PROTO", b"https"),
    (b"X-FORWARDED-HOST", b"www.example.com"),
]
FORWARDED = [(b"FORWARDED", b"for=198.51.100.4:4711;proto=https;host=forwarded.example")]


def test_forwarded_fields_in_any_case_are_honoured_from_a_trusted_peer() -> None:
    router, _ = make_router()
    exchange = route(router, X_FORWARDED, TRUSTED)
    assert exchange.peer == ("203.0.113.7", "0", "", "", "https")
    assert exchange.head.headers[0] == (b"HOST", b"www.example.com")
    assert exchange.head.fields[b"host"] == [b"www.example.com"]
    exchange = route(router, FORWARDED, TRUSTED)
    assert exchange.peer == ("198.51.100.4", "4711", "", "", "https")
    assert exchange.head.headers[-1] == (b"Host", b"forwarded.example")


def test_forwarded_fields_are_ignored_from_other_peers() -> None:
    router, _ = make_router()
    for headers in (X_FORWARDED, FORWARDED):
        exchange = route(router, list(headers), UNTRUSTED)
        assert exchange.peer == UNTRUSTED
        assert exchange.head.headers == headers


def test_without_forwarded_fields_the_peer_is_not_even_looked_up() -> None:
    router, _ = make_router()
    looked_up: list[str] = []
    router.trusted = looked_up.append  # type: ignore[assignment]
    exchange = route(router, [(b"Host", b"h"), (b"X-Forwarded", b"not one of them")], TRUSTED)
    assert exchange.peer == TRUSTED and not looked_up
    route(router, [(b"Host", b"h"), (b"Forwarded", b"for=192.0.2.9")], TRUSTED)
    assert looked_up == ["127.0.0.1"]


def test_a_new_table_rebuilds_only_the_changed_apps_static_files(tmp_path: Any) -> None:
    """Each app's static files (and the file cache in them) outlive a new table of apps in
    which its settings and its share of the cache stay the same."""
    served = [("/static", str(tmp_path))]

    def table(b_max_age: int) -> tuple[apps.App, ...]:
        return (
            apps.App("a", Config(static=tuple(served)), apps.Route(hosts=("a",))),
            apps.App(
                "b",
                Config(static=tuple(served), static_max_age=b_max_age),
                apps.Route(hosts=("b",)),
            ),
        )

    front = SimpleNamespace(
        cfg=Config(),
        apps=table(60),
        dispatchers={"a": Dispatcher(), "b": Dispatcher()},
        date=DateCache(),
        health=None,
        limits=Limits(),
    )
    router = Router(front)  # type: ignore[arg-type]
    before = dict(router.statics)
    front.apps = table(120)  # the apps dir changed b only
    router.use_apps(front)  # type: ignore[arg-type]
    assert router.statics["a"] is before["a"]
    assert router.statics["b"] is not before["b"]
    assert router.statics["b"].cfg.static_max_age == 120  # type: ignore[union-attr]
