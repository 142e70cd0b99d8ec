"""--apps-dir's pure parts: which files a poll reads, a file into an app's table, a set of
changes tried against the running apps, and two sets of apps into start / reload / stop."""

from __future__ import annotations

import stat

import pytest

from maitred import apps, appsdir
from maitred.appsdir import Stamp, parse, pending, settle
from maitred.config import Config, ConfigError

DIRECTORY = "/srv/apps"
FILE = stat.S_IFREG | 0o644


def stamp(inode: int = 1, uid: int = 1000, gid: int = 1000, mode: int = FILE) -> Stamp:
    return Stamp(inode, 10, 1, 1, uid, gid, mode)


def table(name: str, text: str, owner: bool = False, **kwargs: int) -> apps.Table:
    return parse(name, text, stamp(**kwargs), DIRECTORY, owner)


# --- which files a poll reads ---


def test_a_file_is_read_once_it_held_still_over_one_poll() -> None:
    one, two = stamp(1), stamp(2)
    assert pending({}, {}, {"shop": one}) == ((), ())  # just appeared: next poll
    assert pending({}, {"shop": one}, {"shop": one}) == (("shop",), ())
    assert pending({"shop": one}, {"shop": one}, {"shop": one}) == ((), ())  # handled
    assert pending({"shop": one}, {"shop": one}, {"shop": two}) == ((), ())  # changing
    assert pending({"shop": one}, {"shop": two}, {"shop": two}) == (("shop",), ())


def test_a_file_is_gone_once_two_polls_miss_it() -> None:
    one = stamp(1)
    assert pending({"shop": one}, {"shop": one}, {}) == ((), ())  # a rename's gap, maybe
    assert pending({"shop": one}, {}, {}) == ((), ("shop",))


# --- a file into an app's table ---


def test_a_file_is_the_table_of_the_app_it_names() -> None:
    shop = table("shop", 'app = "shop.wsgi"\nworkers = 3\nhosts = ["Shop.test"]\nchdir = "shop"\n')
    assert shop.name == "shop" and shop.source == f"{DIRECTORY}/shop.toml"
    assert dict(shop.settings) == {"app": "shop.wsgi", "workers": 3, "chdir": f"{DIRECTORY}/shop"}
    assert shop.route == apps.Route(("shop.test",), "", False)
    assert dict(table("abs", 'chdir = "/opt/abs"\n').settings) == {"chdir": "/opt/abs"}


@pytest.mark.parametrize(
    ("name", "text", "error"),
    [
        ("shop", "app = \n", r"/srv/apps/shop\.toml: not valid TOML: "),
        ("shop", "wokers = 2\n", r"/srv/apps/shop\.toml: unknown setting 'wokers'.*'workers'"),
        ("shop", "threads = 0\n", r"/srv/apps/shop\.toml: .*threads"),
        ("shop", "bind = ':80'\n", r"'bind' is a setting of the whole server"),
        ("shop", 'path = "shop"\n', r"'path' is a URL prefix starting with /"),
        ("no.dots", "", r"/srv/apps/no\.dots\.toml: the file's name is the app's"),
    ],
)
def test_a_bad_file_says_which_and_why(name: str, text: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        table(name, text)


def test_apps_dir_owner_runs_the_app_as_the_file_s_owner() -> None:
    shop = table("shop", 'app = "shop"\n', owner=True, uid=12345, gid=12346)
    assert dict(shop.settings) == {"app": "shop", "user": "12345", "group": "12346"}
    same = table("shop", 'user = "12345"\ngroup = "12346"\n', owner=True, uid=12345, gid=12346)
    assert dict(same.settings)["user"] == "12345"


@pytest.mark.parametrize(
    ("text", "owner", "error"),
    [
        ("", {"uid": 0, "gid": 0}, r"owned by root: with --apps-dir-owner .* never as root"),
        ('user = "12"\n', {}, r"user 12 and group - are not the file's owner \(uid 1000"),
        ('group = "12"\n', {}, r"user - and group 12 are not the file's owner"),
        ("", {"mode": stat.S_IFLNK | 0o777}, r"not a regular file \(a symlink\?\)"),
    ],
)
def test_apps_dir_owner_refuses_root_and_someone_else(
    text: str, owner: dict[str, int], error: str
) -> None:
    with pytest.raises(ConfigError, match=r"^/srv/apps/shop\.toml: " + error):
        table("shop", text, owner=True, **owner)


# --- changes tried against the running apps ---

SERVER = Config(apps=(apps.Table("main", (), apps.Route(path="/main")),), apps_dir=DIRECTORY)


def test_changes_are_tried_one_by_one_and_a_bad_one_changes_nothing() -> None:
    blog = table("blog", 'path = "/blog"\n')
    shop = table("shop", 'path = "/shop"\n')
    accepted, errors = settle(SERVER, {}, {"blog": blog, "shop": shop})
    assert accepted == {"blog": blog, "shop": shop} and errors == []
    clash = table("blog", 'path = "/shop"\n')
    same_name = table("main", 'path = "/other"\n')
    broken = ConfigError("/srv/apps/news.toml: not valid TOML: ...")
    changes = {"blog": clash, "main": same_name, "news": broken, "shop": None}
    after, errors = settle(SERVER, accepted, changes)
    assert after == {"blog": blog}  # shop removed; the rest refused
    assert errors == [
        "apps-dir: /srv/apps/blog.toml: apps blog and shop both serve any other Host at /shop: "
        "give one of them other hosts or another path; not applied, the app serves on as it was",
        "apps-dir: /srv/apps/main.toml: the config file has an app named main; not applied, "
        "the app is not started",
        "apps-dir: /srv/apps/news.toml: not valid TOML: ...; not applied, the app is not started",
    ]


def test_the_directory_s_tables_follow_the_config_file_s() -> None:
    shop = table("shop", 'path = "/shop"\n')
    merged = appsdir.merged(SERVER.replace(apps=(*SERVER.apps, shop)), {"shop": shop})
    assert [t.name for t in merged.apps] == ["main", "shop"]


# --- two sets of apps into start / reload / stop ---


def test_two_sets_of_apps_differ_by_start_reload_and_stop() -> None:
    def resolved(**paths: str) -> dict[str, apps.App]:
        tables = tuple(table(name, f'path = "{path}"\n') for name, path in paths.items())
        return {app.name: app for app in apps.resolve(SERVER.replace(apps=tables), "/")}

    old = resolved(a="/a", b="/b", c="/c")
    new = resolved(b="/b", c="/c2", d="/d")
    assert apps.diff(old, new) == apps.Diff(start=("d",), reload=("c",), stop=("a",))
    assert not apps.diff(old, old)
    assert apps.diff({}, old).start == ("a", "b", "c")
