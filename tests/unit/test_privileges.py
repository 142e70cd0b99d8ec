"""--user and --group: names and numbers resolved, who may switch, and what each user reaches."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from maitred import privileges
from maitred.config import ConfigError, load
from maitred.front.spool import Body
from maitred.privileges import Identity, IdentityError, resolve

USER, OTHER, STRANGER = 54321, 54322, 54323  # numbers with no passwd entry
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")


def test_no_user_means_no_switch() -> None:
    assert resolve("", "") is None


def test_a_number_without_an_entry_takes_its_own_number_as_group() -> None:
    assert resolve(str(USER), "") == Identity(USER, USER, (USER,), str(USER))
    assert resolve(str(USER), str(OTHER)) == Identity(USER, OTHER, (OTHER,), str(USER))


def test_a_name_takes_its_primary_group_and_its_supplementary_groups() -> None:
    entry = pwd.getpwuid(0)
    identity = resolve(entry.pw_name, "")
    assert identity is not None
    assert (identity.uid, identity.gid, identity.name) == (0, entry.pw_gid, entry.pw_name)
    assert set(identity.groups) == set(os.getgrouplist(entry.pw_name, entry.pw_gid))
    assert resolve("0", "") == identity  # a number with an entry is that entry


def test_a_group_by_name() -> None:
    group = grp.getgrgid(0).gr_name
    identity = resolve(str(USER), group)
    assert identity is not None and identity.gid == 0


@pytest.mark.parametrize(
    ("user", "group", "message"),
    [
        ("no-such-user-here", "", "unknown user 'no-such-user-here'"),
        ("-1", "", "unknown user '-1'"),
        ("4294967295", "", "invalid user '4294967295'"),  # (uid_t)-1: "leave unchanged"
        ("99999999999999999999", "", "invalid user"),
        ("\u00b2", "", "unknown user"),  # a digit to str.isdigit, not to int()
        ("a\0b", "", "unknown user"),
        (str(USER), "no-such-group", "unknown group 'no-such-group'"),
        (str(USER), "99999999999", "invalid group '99999999999'"),
        ("", str(USER), "needs --user"),
    ],
)
def test_bad_names_and_numbers(user: str, group: str, message: str) -> None:
    with pytest.raises(IdentityError, match=message):
        resolve(user, group)


def test_root_needs_allow_root() -> None:
    root = resolve("0", "")
    with pytest.raises(IdentityError, match="needs --allow-root"):
        privileges.check_reachable(root, allow_root=False)
    if os.geteuid() == 0:
        privileges.check_reachable(root, allow_root=True)


def test_a_user_who_is_not_root_can_only_be_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: USER)
    monkeypatch.setattr(os, "getegid", lambda: USER)
    privileges.check_reachable(resolve(str(USER), ""), allow_root=False)
    with pytest.raises(IdentityError, match=f"maitred runs as {USER} .*not root.*{OTHER}"):
        privileges.check_reachable(resolve(str(OTHER), ""), allow_root=False)


def test_a_config_file_may_give_numbers(tmp_path: Path) -> None:
    (tmp_path / "maitred.toml").write_text(f"user = {USER}\ngroup = {OTHER}\n")
    cfg = load({}, {}, cwd=str(tmp_path))
    assert (cfg.user, cfg.group) == (str(USER), str(OTHER))


def test_the_settings_check_says_it_as_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown user 'no-such-user-here'"):
        load({"user": "no-such-user-here"}, {}, cwd="/nonexistent")
    with pytest.raises(ConfigError, match="needs --allow-root"):
        load({"user": "0"}, {}, cwd="/nonexistent")
    assert load({"user": "0", "allow_root": True}, {}, cwd="/nonexistent").user == "0"


@as_root
def test_preload_is_refused_with_another_user() -> None:
    with pytest.raises(ConfigError, match="--preload imports the app in the master"):
        load({"user": str(USER), "preload": True}, {}, cwd="/nonexistent")


# --- switching, in forked children ---


def in_child(identity: Identity, action: Callable[[], bytes]) -> bytes:
    """What `action` returns in a child that switched to `identity` (its error's name if it
    raised one)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            os.close(read_fd)
            privileges.drop(identity)
            try:
                answer = action()
            except OSError as exc:
                answer = type(exc).__name__.encode()
            os.write(write_fd, answer)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as fh:
        answer = fh.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return answer


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory every user may pass through (pytest's own is root's only)."""
    path = Path(tempfile.mkdtemp(prefix="users-unit-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def identity(uid: int) -> Identity:
    found = resolve(str(uid), "")
    assert found is not None
    return found


@as_root
def test_a_switch_holds_for_good() -> None:
    def ids() -> bytes:
        try:
            os.setuid(0)
        except PermissionError:
            return b"%d %d %r" % (os.geteuid(), os.getegid(), os.getgroups())
        return b"regained root"

    assert in_child(identity(USER), ids) == b"%d %d [%d]" % (USER, USER, USER)


@as_root
def test_a_spool_directory_is_its_front_s_alone(shared: Path) -> None:
    """The front writes a body there and keeps it as a descriptor without a name (which goes
    to its worker over the link); no other user may even look inside."""
    front = identity(OTHER)
    spool = shared / "spool"
    spool.mkdir(mode=0o700)
    privileges.grant_spool(front, str(spool))
    data = b"x" * 100

    def spool_a_body() -> bytes:
        body = Body(0, str(spool))  # every byte past 0 goes to a file
        body.add(data)
        body.end()
        _, fd = body.finish()
        return b"%d names, %s" % (len(os.listdir(spool)), os.pread(fd, 200, 0))

    assert in_child(front, spool_a_body) == b"0 names, " + data
    assert in_child(identity(USER), lambda: b"%d" % len(os.listdir(spool))) == b"PermissionError"


@as_root
def test_a_link_socket_is_its_workers_user_s_only(shared: Path) -> None:
    link = shared / "link.sock"
    link.write_bytes(b"")  # connecting needs write permission: a file shows it the same
    privileges.grant_link(identity(USER), str(link))
    assert in_child(identity(USER), lambda: b"%d" % os.open(link, os.O_WRONLY))
    assert in_child(identity(STRANGER), lambda: b"%d" % os.open(link, os.O_WRONLY)) == (
        b"PermissionError"
    )
