"""Locations: reading [[locations]] tables, and which one a request path falls in."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from maitred import apps, check, config
from maitred.config import ConfigError
from maitred.locations import (
    Location,
    LocationTable,
    normal_path,
    ordered,
    read_locations,
    request_path,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib


def table(*paths: str, own: tuple[str, ...] = ()) -> LocationTable[str]:
    """A table whose values are the paths as written (server-wide, then the app's own)."""
    server = read_locations([{"path": p} for p in paths], "test") if paths else ()
    mine = read_locations([{"path": p} for p in own], "test", "app") if own else ()
    return LocationTable(
        [(loc, loc.shown_path) for loc in server], [(loc, "app " + loc.shown_path) for loc in mine]
    )


def match(t: LocationTable[str], target: bytes) -> str | None:
    return t.match(request_path(target))


def test_the_longest_prefix_wins_and_exact_beats_every_prefix() -> None:
    t = table("/", "/admin/", "/admin/users/", "= /admin/users/")
    assert match(t, b"/") == "/"
    assert match(t, b"/other") == "/"
    assert match(t, b"/admin/x") == "/admin/"
    assert match(t, b"/admin/users/7") == "/admin/users/"
    assert match(t, b"/admin/users/") == "= /admin/users/"


def test_a_prefix_matches_on_segment_boundaries_with_or_without_its_slash() -> None:
    for written in ("/admin", "/admin/"):
        t = table(written)
        assert match(t, b"/admin") == written
        assert match(t, b"/admin/") == written
        assert match(t, b"/admin/x?y=1") == written
        assert match(t, b"/administrator") is None
        assert match(t, b"/adm") is None


def test_an_exact_location_takes_its_path_only() -> None:
    t = table("= /login")
    assert match(t, b"/login") == "= /login"
    assert match(t, b"/login?next=/") == "= /login"
    assert match(t, b"/login/") is None
    assert match(t, b"/login/x") is None


def test_no_location_matches_when_none_covers_the_path() -> None:
    assert match(table("/api/"), b"/") is None
    assert not table()


def test_the_path_is_matched_decoded_and_normalised_as_the_app_reads_it() -> None:
    t = table("/", "/admin/")
    for sneaky in (
        b"/%61dmin/",
        b"/static/../admin/",
        b"//admin/",
        b"/./admin/x",
        b"/x/%2e%2e/admin/",
        b"http://example.com/admin/",
    ):
        assert match(t, sneaky) == "/admin/", sneaky
    assert normal_path(b"/a/b/") == b"/a/b/"
    assert normal_path(b"/a/./b/../") == b"/a/"
    assert normal_path(b"/../..") == b"/"


def test_the_apps_own_location_replaces_the_servers_on_the_same_path() -> None:
    t = table("/", "/admin/", own=("/admin", "/shop/"))
    assert match(t, b"/admin/x") == "app /admin"
    assert match(t, b"/shop/cart") == "app /shop/"
    assert match(t, b"/blog") == "/"


def test_keys_are_parsed_into_the_location() -> None:
    (loc,) = read_locations(
        [
            {
                "path": "/admin/",
                "allow": ["10.0.0.0/8", "::1"],
                "deny": "192.0.2.1",
                "auth-basic": "/etc/htpasswd",
                "max-body-size": "100M",
                "headers": {"Strict-Transport-Security": "max-age=1"},
                "access-log": False,
            }
        ],
        "f",
    )
    assert loc == Location(
        "/admin/",
        False,
        "f #1 '/admin/'",
        "",
        allow=("10.0.0.0/8", "::1"),
        deny=("192.0.2.1",),
        auth_basic="/etc/htpasswd",
        max_body_size=100 << 20,
        headers=(("Strict-Transport-Security", "max-age=1"),),
        access_log=False,
    )
    assert loc.allow is not None and loc.redirect_status == 301


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"allow": ["127.0.0.1"]}, "needs a path"),
        ({"path": "admin/"}, "invalid path"),
        ({"path": "/a/../b"}, "dot segments"),
        ({"path": "/a//b"}, "dot segments"),
        ({"path": "/", "alow": ["127.0.0.1"]}, "did you mean 'allow'"),
        ({"path": "/", "allow": ["10.0.0.300"]}, "invalid allow"),
        ({"path": "/", "max-body-size": "lots"}, "invalid max-body-size"),
        ({"path": "/", "headers": {"Content-Length": "1"}}, "invalid headers"),
        ({"path": "/", "headers": {"X-A": "a\r\nb"}}, "invalid headers"),
        ({"path": "/", "redirect": "https://x/$uri"}, "invalid redirect"),
        ({"path": "/", "redirect": "https://x/", "redirect-status": 200}, "redirect-status"),
        ({"path": "/", "redirect-status": 302}, "redirect-status without redirect"),
        ({"path": "/", "access-log": 3}, "invalid access-log"),
    ],
)
def test_bad_locations_are_refused_with_what_is_wrong(
    entry: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        read_locations([entry], "maitred.toml [[locations]]")


def test_one_path_given_twice_is_refused() -> None:
    with pytest.raises(ConfigError, match="given twice"):
        read_locations([{"path": "/a"}, {"path": "/a/"}], "f")
    read_locations([{"path": "/a"}, {"path": "= /a"}], "f")  # a prefix and an exact: both


def test_check_lists_them_in_the_order_requests_consult_them() -> None:
    locs = read_locations([{"path": p} for p in ("/", "/a/b/", "= /a", "/a/")], "f")
    assert [loc.shown_path for loc in ordered(locs)] == ["= /a", "/a/b/", "/a/", "/"]


def test_check_prints_them_as_toml_that_reads_back_the_same(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("")
    (tmp_path / "maitred.toml").write_text(
        '[[locations]]\npath = "/"\nheaders = { X-A = "1" }\n'
        '[[locations]]\npath = "= /a"\nredirect = "https://x$request_uri"\n'
        '[apps.shop]\nhosts = ["shop.example"]\n'
        f'[[apps.shop.locations]]\npath = "/admin/"\nallow = ["::1"]\n'
        f'auth-basic = "{tmp_path}/pw"\n'
        '[apps.blog]\nhosts = ["blog.example"]\n'
    )
    cfg = config.load({"config": str(tmp_path / "maitred.toml")}, {}, cwd=str(tmp_path))
    listing = check.render_locations(apps.resolve(cfg, str(tmp_path)))
    assert "# app shop consults: = /a (server), /admin/ (its own), / (server)" in listing
    again = tomllib.loads(listing)
    assert [t["path"] for t in again["locations"]] == ["= /a", "/"]
    assert again["apps"]["shop"]["locations"] == [
        {"path": "/admin/", "allow": ["::1"], "auth-basic": f"{tmp_path}/pw"}
    ]


def test_a_missing_htpasswd_file_stops_the_start(tmp_path: Path) -> None:
    (tmp_path / "maitred.toml").write_text('[[locations]]\npath = "/"\nauth-basic = "nope"\n')
    with pytest.raises(ConfigError, match=r"#1 '/': auth-basic: .*No such file"):
        config.load({"config": str(tmp_path / "maitred.toml")}, {}, cwd=str(tmp_path))
