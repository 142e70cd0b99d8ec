"""Which app serves a request (maitred.front.routes): Host first, then the longest path prefix."""

from __future__ import annotations

import pytest

from maitred.apps import Route
from maitred.front.routes import Routes, host_name, request_path

ROUTES: Routes[str] = Routes(
    [
        (Route(("shop.example.com", "*.shop.example.com")), "", "shop"),
        (Route(("shop.example.com",), "/admin"), "/admin", "shop-admin"),
        (Route(("*.example.com",)), "", "any-sub"),
        (Route(("blog.example.com", "[::1]")), "/blog", "blog"),
        (Route((), "/api"), "/r/api", "api"),
        (Route(("www.example.com",), "", default=True), "", "www"),
    ]
)


@pytest.mark.parametrize(
    ("host", "target", "app"),
    [
        # exact names first, port, case and a trailing dot do not matter
        (b"shop.example.com", b"/", "shop"),
        (b"SHOP.Example.com.:8000", b"/cart?x=1", "shop"),
        # the longest prefix among the apps of that host, on a segment boundary
        (b"shop.example.com", b"/admin", "shop-admin"),
        (b"shop.example.com", b"/admin/users?q", "shop-admin"),
        (b"shop.example.com", b"/admin?q", "shop-admin"),
        (b"shop.example.com", b"/administrators", "shop"),
        (b"shop.example.com", b"/%61dmin/x", "shop-admin"),  # compared decoded
        # the most specific wildcard, subdomains only
        (b"eu.shop.example.com", b"/", "shop"),
        (b"a.b.example.com", b"/", "any-sub"),
        # a host named exactly never falls back to other apps' paths
        (b"blog.example.com", b"/blog/post", "blog"),
        (b"blog.example.com", b"/", None),
        (b"[::1]:8000", b"/blog", "blog"),
        # unknown hosts: the default app and the apps without hosts
        (b"example.com", b"/r/api/v1", "api"),
        (b"other.test", b"/", "www"),
        (b"", b"/", "www"),  # HTTP/1.0 without Host
        # absolute-form: its authority is the host
        (b"other.test", b"http://shop.example.com/admin/x", "shop-admin"),
    ],
)
def test_choose(host: bytes, target: bytes, app: str | None) -> None:
    assert ROUTES.choose(host, target) == app


def test_without_a_default_an_unknown_host_gets_no_app() -> None:
    routes: Routes[str] = Routes([(Route(("a.test",)), "", "a"), (Route((), "/b"), "/b", "b")])
    assert routes.choose(b"x.test", b"/") is None
    assert routes.choose(b"x.test", b"/b/c") == "b"
    assert routes.choose(b"a.test", b"/b/c") == "a"


def test_host_name_and_request_path() -> None:
    assert host_name(b"Example.COM.:80") == b"example.com"
    assert host_name(b"[::1]:8000") == b"[::1]"
    assert request_path(b"/a%2Fb?x") == b"/a/b"
    assert request_path(b"http://h:1/p?q") == b"/p"
    assert request_path(b"*") == b"*"
