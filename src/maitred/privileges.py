"""Running the fronts and the workers as another user (--user, --group).

Theory of operation
-------------------
A master started as root binds the listeners (port 80 needs root), makes its runtime directory,
then forks; each child gives up root before it does anything else of its own:

* a worker drops right after the fork, before it imports the app, so no line of the app ever
  runs as root (which is also why --preload, an import by the master, is refused with --user);
* a front drops once it holds its sockets and has opened its access log, before it accepts a
  connection, as nginx's workers run as www-data.

Dropping is setgroups (the user's supplementary groups when it has a passwd entry, else just
the group), setgid, setuid, in that order (setgid after setuid would be refused), and then a
check that it held: the ids are what was asked, and setuid(0) fails.

The names are resolved once, when the settings are checked (maitred.config.check), so an
unknown user is one line and exit status 2 at start, or a HUP that keeps the old settings. A
number needs no passwd entry: containers and tests run as uids nobody named.

The master stays as it started (root), as nginx's and gunicorn's masters do, even when every
child runs as one user: it must start workers and fronts as the user at any time (a crash, a
recycled worker, a HUP that changes --user), reopen root-owned log files on USR1 and hand them
to the user, remove a pidfile in a directory only root writes, and remove its runtime
directory. Dropped to the workers' user, it would also be theirs to take over (ptrace), and
with it the listening sockets and the power over every child. It runs no app code and reads
nothing but 9-byte status messages from its children. The --reload watcher, a child that
reads file names and sends HUP, stays root with it.

What each user may reach in the runtime directory (mode 0711: passable, not listable):

* a link socket belongs to the user of the workers that connect to it, mode 0600: another
  app's workers (or any local user) cannot connect to this front as this app;
* a front's spool directory belongs to the front's user, mode 0700: the front creates, writes
  and removes the spooled request bodies (0600), and hands each to its worker as an open
  read-only descriptor, never as a name (maitred.link.files): apps of different users each
  get their own requests' bodies, and no app's user can open any other.

A switch makes Linux mark the process non-dumpable: its /proc/PID/fd then belong to root, and
a front could not open the file of a wsgi.file_wrapper response there (it would fall back to
the worker streaming it, maitred.front.sendfile). A worker holds nothing its user may not
have (no listener, the log files are the user's), so it becomes dumpable again
(:func:`open_to_user`); a front, which holds the listeners, stays closed.

Nothing the request path needs is imported after the switch: the children are forked from a
master that loaded every module of maitred's request path, so a Python installed where only
root may read (a pyenv under /root) serves as well. The app's own imports need a Python, a
virtualenv and an app its user may read.
"""

from __future__ import annotations

import contextlib
import ctypes
import grp
import logging
import os
import pwd
import stat
from collections.abc import Mapping
from typing import NamedTuple

log = logging.getLogger("maitred.error")

ROOT = 0
RUNTIME_MODE = 0o711  # the users of the children pass through to their own files
LINK_MODE = 0o600  # a link socket: only its workers' user connects
SPOOL_DIR_MODE = 0o700  # the front's alone: bodies reach workers as descriptors
LOG_MODE = 0o644  # as maitred's access log is created without --user
PR_SET_DUMPABLE = 4  # prctl(2)
NO_ID = 2**32 - 1  # (uid_t)-1: to setuid and chown, "leave unchanged", not an id


class IdentityError(ValueError):
    """--user or --group names nobody, or the process may not become them."""


class Identity(NamedTuple):
    """Whom a child runs as."""

    uid: int
    gid: int
    groups: tuple[int, ...]  # supplementary groups, after the drop
    name: str  # for the log: the user's name, or its number when it has no passwd entry

    def describe(self) -> str:
        return f"{self.name} (uid {self.uid}, gid {self.gid})"


def resolve(user: str, group: str) -> Identity | None:
    """The identity --user and --group name (None: neither is given, the children run as the
    master does). A name must exist; a number needs no entry. The group defaults to the user's
    primary group, or to the number of the uid when the user has no passwd entry."""
    if not user:
        if group:
            raise IdentityError(f"--group {group!r} needs --user: root cannot drop a group alone")
        return None
    entry = _passwd(user)
    if entry is None:  # a number nobody named
        uid = int(user)
        gid = _group(group) if group else uid
        return Identity(uid, gid, (gid,), str(uid))
    gid = _group(group) if group else entry.pw_gid
    groups = tuple(sorted(set(os.getgrouplist(entry.pw_name, gid))))
    return Identity(entry.pw_uid, gid, groups, entry.pw_name)


def _passwd(user: str) -> pwd.struct_passwd | None:
    """The passwd entry of a name or a number (None for a number without one)."""
    if _is_number(user):
        try:
            return pwd.getpwuid(_number(user, "user"))
        except KeyError:
            return None
    try:
        return pwd.getpwnam(user)
    except (KeyError, ValueError):  # ValueError: a NUL in the name
        raise IdentityError(f"unknown user {user!r}: not in the passwd database") from None


def _group(group: str) -> int:
    if _is_number(group):
        return _number(group, "group")
    try:
        return grp.getgrnam(group).gr_gid
    except (KeyError, ValueError):
        raise IdentityError(f"unknown group {group!r}: not in the group database") from None


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _number(text: str, what: str) -> int:
    if int(text) >= NO_ID:
        raise IdentityError(f"invalid {what} {text!r}: expected a name or a number < {NO_ID}")
    return int(text)


def check_reachable(identity: Identity | None, allow_root: bool) -> None:
    """IdentityError when this process cannot run its children as `identity`: root without
    --allow-root, or another user while this process is not root."""
    if identity is None:
        return
    if identity.uid == ROOT and not allow_root:
        raise IdentityError("--user is root (uid 0): running the app as root needs --allow-root")
    euid = os.geteuid()
    if euid != ROOT and (identity.uid, identity.gid) != (euid, os.getegid()):
        me = _passwd_name(euid)
        raise IdentityError(
            f"maitred runs as {me} (uid {euid}, gid {os.getegid()}), not root: it cannot "
            f"switch to --user {identity.describe()}; start it as root or drop --user"
        )


def _passwd_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def switch(user: str, group: str, who: str) -> bool:
    """In a child named `who` (for the log), right after the fork: become --user and --group
    (see :func:`drop`). False when it cannot, said in one line: the child then exits."""
    try:
        drop(resolve(user, group))
    except (IdentityError, OSError) as exc:
        log.error("%s: cannot run as --user %s: %s", who, user, exc)
        return False
    return True


def drop(identity: Identity | None) -> None:
    """In a child, before anything of its own: become `identity` for good (see above)."""
    if identity is None or os.geteuid() != ROOT:
        return  # as the master runs, or a non-root master already is this user (checked)
    os.setgroups(list(identity.groups))
    os.setgid(identity.gid)
    os.setuid(identity.uid)
    _verify(identity)


def _verify(identity: Identity) -> None:
    if os.getresuid() != (identity.uid,) * 3 or os.getresgid() != (identity.gid,) * 3:
        raise PermissionError(f"the switch to {identity.describe()} did not hold")
    if identity.uid != ROOT:
        try:
            os.setuid(ROOT)
        except PermissionError:
            return
        raise PermissionError(f"after the switch to {identity.describe()}, setuid(0) succeeded")


def open_to_user() -> None:
    """In a worker that switched: its files are its user's to open through /proc again, so
    that its front (the same user) can take over a wsgi.file_wrapper response's file."""
    if os.geteuid() != ROOT:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)


def master_line(front: Identity | None, apps: Mapping[str, Identity | None]) -> str | None:
    """The line the master logs at start, naming who runs what: the fronts as `front`, the
    workers of each app (by its label, "" for the only one) as its identity (None: nobody
    switches, the line says nothing)."""
    users = set(apps.values())
    someone = front or next(filter(None, users), None)
    if someone is None:
        return None
    if os.geteuid() != ROOT:  # then each is the master's user (checked with the settings)
        return f"running as {someone.describe()}, the user maitred was started as"
    if len(users) == 1 and front in users:
        return (
            f"fronts and workers run as {_as(front)}; the master stays root to start them as "
            "that user, reopen the log files and remove its pidfile and runtime directory"
        )
    workers = "; ".join(
        f"the workers of {name or 'the app'} as {_as(who)}" for name, who in apps.items()
    )
    return (
        f"fronts run as {_as(front)}; {workers}; the master stays root to start each app's "
        "workers as its own user at any time (a crash, a recycling, a reload), reopen the log "
        "files and remove its pidfile and runtime directory"
    )


def _as(identity: Identity | None) -> str:
    return identity.describe() if identity is not None else "root, as the master"


# --- the runtime directory, as root, before the children start ---


def share_runtime(switching: bool, *dirs: str) -> None:
    """Let the children's users pass through the master's directories to their own files
    (`switching`: some child runs, or may come to run, as another user)."""
    if switching and os.geteuid() == ROOT:
        for path in dirs:
            os.chmod(path, RUNTIME_MODE)


def grant_link(identity: Identity | None, path: str) -> None:
    """A link socket: only the user of the workers that connect to it may."""
    if identity is not None and os.geteuid() == ROOT:
        os.chown(path, identity.uid, identity.gid)
        os.chmod(path, LINK_MODE)


def grant_spool(front: Identity | None, path: str) -> None:
    """A front's spool directory: the front's user's alone."""
    if front is not None and os.geteuid() == ROOT:
        os.chown(path, front.uid, front.gid)
        os.chmod(path, SPOOL_DIR_MODE)


def hand_over_logs(user: str, group: str, *paths: str) -> None:
    """Log files the children write and reopen (USR1): --user's, so that they can. Created if
    missing, as the master (root) may create them where the children's user may not."""
    identity = None
    with contextlib.suppress(IdentityError):  # a user gone since the start: the children say
        identity = resolve(user, group)
    if identity is None or os.geteuid() != ROOT:
        return
    for path in paths:
        if not path or path == "-":
            continue
        with contextlib.suppress(OSError):
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, LOG_MODE)
            try:
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    os.fchown(fd, identity.uid, identity.gid)
            finally:
                os.close(fd)
