"""Apps in the config file (maitred.apps): the tables, and the apps resolved from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from maitred import apps, config
from maitred.apps import Route
from maitred.config import ConfigError, load
from maitred.scaling import Bounds


def resolved(tmp_path: Path, text: str, cli: dict[str, str] | None = None) -> dict[str, apps.App]:
    (tmp_path / "maitred.toml").write_text(text)
    cfg = load(cli or {}, {}, cwd=str(tmp_path))
    return {app.name: app for app in apps.resolve(cfg, "/srv")}


SHOP_AND_BLOG = """
workers = 3
timeout = 20
static = ["/assets=assets"]
[env]
SHARED = "1"
[apps.shop]
app = "shop.wsgi"
hosts = ["Shop.Example.com.", "*.shop.example.com"]
threads = 2
max-queue = 7
[apps.shop.env]
DJANGO_SETTINGS_MODULE = "shop.settings"
SHARED = "2"
[apps.blog]
app = "blog:app"
chdir = "blog"
path = "/blog/"
pythonpath = ["lib"]
virtualenv = "venv"
static = ["/blog/static=static"]
default = true
"""


def test_the_top_level_values_are_every_apps_defaults(tmp_path: Path) -> None:
    found = resolved(tmp_path, SHOP_AND_BLOG)
    shop, blog = found["shop"], found["blog"]
    assert (shop.cfg.app, shop.cfg.workers, shop.cfg.threads, shop.cfg.max_queue) == (
        "shop.wsgi",
        3,
        2,
        7,
    )
    assert (blog.cfg.app, blog.cfg.workers, blog.cfg.threads, blog.cfg.timeout) == (
        "blog:app",
        3,
        4,
        20.0,
    )
    # env merges key by key, the app's table winning
    assert dict(shop.cfg.env) == {"SHARED": "2", "DJANGO_SETTINGS_MODULE": "shop.settings"}
    assert dict(blog.cfg.env) == {"SHARED": "1"}
    assert not shop.cfg.apps and not blog.cfg.apps


def test_routing_and_script_name(tmp_path: Path) -> None:
    # Static prefixes are whole URL paths: under root-path too.
    text = SHOP_AND_BLOG.replace('"/blog/static=', '"/r/blog/static=')
    found = resolved(tmp_path, 'root-path = "/r/"\n' + text)
    shop, blog = found["shop"], found["blog"]
    assert shop.route == Route(("shop.example.com", "*.shop.example.com"), "", False)
    assert blog.route == Route((), "/blog", True)
    assert (shop.cfg.root_path, shop.prefix) == ("/r", "")  # every path of its hosts
    assert (blog.cfg.root_path, blog.prefix) == ("/r/blog", "/r/blog")
    assert (shop.label, blog.label) == ("shop", "blog")


def test_paths_of_a_table_are_under_its_chdir_inherited_ones_under_the_servers(
    tmp_path: Path,
) -> None:
    found = resolved(tmp_path, SHOP_AND_BLOG)
    shop, blog = found["shop"], found["blog"]
    assert shop.cfg.chdir == "/srv" and shop.cfg.static == (("/assets", "/srv/assets"),)
    assert blog.cfg.chdir == "/srv/blog"
    assert blog.cfg.pythonpath == ("/srv/blog/lib",)
    assert blog.cfg.virtualenv == "/srv/blog/venv"
    assert blog.cfg.static == (("/blog/static", "/srv/blog/static"),)


def test_without_tables_the_command_line_app_is_the_implicit_main() -> None:
    cfg = load({"app": "mysite.wsgi"}, {}, cwd="/nonexistent")
    (app,) = apps.resolve(cfg)
    assert (app.name, app.label, app.cfg, app.prefix) == ("main", "", cfg, "")
    assert app.route.any_host and apps.names(cfg) == ("main",)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("thraeds = 2", "[apps.shop]: unknown setting 'thraeds'; did you mean 'threads'?"),
        ("bind = [':1']", "'bind' is a setting of the whole server, not of one app"),
        ("workers = 0", "[apps.shop]: invalid value 0 for 'workers': expected integer >= 1"),
        ("hosts = ['shop.example.com:80']", "invalid host 'shop.example.com:80'"),
        ("path = 'shop'", "'path' is a URL prefix starting with /"),
        ("path = '/a/../b'", "invalid path '/a/../b'"),
        ("default = 'yes'", "'default' is true or false"),
        ("path = '/shop'\nstatic = ['/static=s']", "static mount /static is outside its path"),
    ],
)
def test_a_bad_table_is_one_clear_error(tmp_path: Path, table: str, message: str) -> None:
    (tmp_path / "maitred.toml").write_text(f"[apps.shop]\n{table}\n")
    with pytest.raises(ConfigError) as caught:
        load({}, {}, cwd=str(tmp_path))
    assert message in str(caught.value)


def test_two_apps_may_not_claim_the_same_host_and_path(tmp_path: Path) -> None:
    (tmp_path / "maitred.toml").write_text(
        "[apps.a]\nhosts = ['x.example']\n[apps.b]\nhosts = ['X.example']\n"
    )
    with pytest.raises(ConfigError, match=r"apps a and b both serve x\.example at /"):
        load({}, {}, cwd=str(tmp_path))
    (tmp_path / "maitred.toml").write_text("[apps.a]\n[apps.b]\npath = '/b'\n[apps.c]\n")
    with pytest.raises(ConfigError, match="apps a and c both serve any other Host at /"):
        load({}, {}, cwd=str(tmp_path))


def test_each_app_keeps_the_rules_and_preload_is_for_one_app(tmp_path: Path) -> None:
    (tmp_path / "maitred.toml").write_text("fronts = 2\nworkers = 2\n[apps.a]\nworkers = 1\n")
    with pytest.raises(ConfigError, match=r"app a: fronts \(2\) must not exceed workers \(1\)"):
        load({}, {}, cwd=str(tmp_path))
    (tmp_path / "maitred.toml").write_text("preload = true\n[apps.a]\n")
    with pytest.raises(ConfigError, match="preload is for a server of one app"):
        load({}, {}, cwd=str(tmp_path))


def test_a_hup_that_changes_only_a_table_keeps_the_fronts(tmp_path: Path) -> None:
    """The running fronts take the new table of apps (maitred.frontapps)."""
    (tmp_path / "maitred.toml").write_text("[apps.a]\nthreads = 2\n")
    running = load({}, {}, cwd=str(tmp_path))
    (tmp_path / "maitred.toml").write_text("[apps.a]\nthreads = 3\n[apps.b]\npath = '/b'\n")
    reload = config.on_reload(running, load({}, {}, cwd=str(tmp_path)))
    assert not reload.fronts and reload.cfg.apps[0].settings == (("threads", 3),)
    (tmp_path / "maitred.toml").write_text("keepalive = 3\n[apps.a]\nthreads = 2\n")
    assert config.on_reload(running, load({}, {}, cwd=str(tmp_path))).fronts is True


def test_env_is_also_a_table_at_the_top_level(tmp_path: Path) -> None:
    (tmp_path / "maitred.toml").write_text('[env]\nA = "1"\nB = "x=y"\n')
    assert load({}, {}, cwd=str(tmp_path)).env == (("A", "1"), ("B", "x=y"))


def test_the_docs_say_which_settings_an_app_may_set() -> None:
    text = config.settings_markdown()
    assert "### `threads`" in text and "- per app: yes" in text
    bind = text.split("### `bind`")[1].split("### ")[0]
    assert "- per app: no, the whole server" in bind


TWO_USERS = """
[apps.shop]
app = "shop:app"
hosts = ["shop.test"]
user = "{shop}"
[apps.blog]
app = "blog:app"
hosts = ["blog.test"]
user = "{blog}"
"""


@pytest.mark.parametrize(
    ("euid", "shop", "message"),
    [
        (0, "0", "app shop: --user is root (uid 0): running the app as root needs --allow-root"),
        (54331, "54332", "app shop: maitred runs as 54331 (uid 54331, gid 54331), not root"),
    ],
)
def test_each_app_s_user_is_checked_and_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, euid: int, shop: str, message: str
) -> None:
    """As the top-level --user is: root needs allow-root, and a master that is not root runs
    its apps as its own user only; the one line names the app."""
    monkeypatch.setattr(config.privileges.os, "geteuid", lambda: euid)
    monkeypatch.setattr(config.privileges.os, "getegid", lambda: euid)
    with pytest.raises(ConfigError) as refused:
        resolved(tmp_path, TWO_USERS.format(shop=shop, blog=euid or 54331))
    assert str(refused.value).startswith(message)
    assert "\n" not in str(refused.value)


def test_each_app_scales_within_its_own_bounds_and_warms_up_as_its_first_host(
    tmp_path: Path,
) -> None:
    text = SHOP_AND_BLOG.replace("max-queue = 7", 'max-queue = 7\nmax-workers = 6\nwarmup = ["/"]')
    found = resolved(tmp_path, "min-workers = 1\n" + text)
    shop, blog = found["shop"], found["blog"]
    assert Bounds.of(shop.cfg) == Bounds(1, 6, 30.0, 2)  # its own maximum, the top's minimum
    assert Bounds.of(blog.cfg) == Bounds(1, 3, 30.0, 4)  # no maximum of its own: -w
    assert (shop.cfg.warmup, blog.cfg.warmup) == (("/",), ())
    # A warm-up request names the app's first host that is no wildcard, or localhost.
    assert (shop.warmup_host, blog.warmup_host) == ("shop.example.com", "localhost")
    wildcard = resolved(tmp_path, SHOP_AND_BLOG.replace('"Shop.Example.com.", ', ""))
    assert wildcard["shop"].warmup_host == "localhost"
