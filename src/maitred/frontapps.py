"""The master's channel to each running front: new tables of apps and cache purges.

Theory of operation
-------------------
The master tells a running front two kinds of thing, over one channel per front: a unix
SOCK_SEQPACKET socket pair made when the front is forked. The master's end is the front's
:class:`Channel` (kept by maitred.frontset); the front reads its end in its event loop
(:func:`receive`, in maitred.front.apptable), one message at a time, as it comes. A message is
a pickled pair ``(kind, body)``, of one of two kinds:

* ``"apps"``, a new table of apps. A front starts with the apps of its generation
  (maitred.frontplan). When the set of apps changes while it runs (--apps-dir,
  maitred.appsdir; a HUP that changes the ``[apps]`` tables and no setting of the fronts), the
  master sends each front of the current generation its whole new table, and
  maitred.front.apptable applies it without dropping a connection or a worker link. The body
  is the front's apps (as maitred.frontplan.front_apps makes them: its share of each queue)
  and the names of the link listeners it brings, as open descriptors (SCM_RIGHTS): those the
  front does not hold yet. Whole tables, never changes: a message sent late or superseded
  cannot leave a front half-changed, and the front compares the table with what it serves. A
  message names at most MAX_FILES new listeners; the apps past them wait for the next one.
* ``"purge"``, a purge of the response cache (`maitred ctl cache purge`,
  maitred.cachecommands): a :class:`Purge`, sent to every front whose apps have a cache
  (--cache-size). Each matching app's cache drops its matching entries
  (maitred.front.cache.ResponseCache.purge) and the front logs how many went.

SEQPACKET keeps a message and its descriptors together, whole or not at all. The master never
waits for a front: its end is non-blocking. A table that does not fit now (a front that is
busy, or stuck and soon killed for its silence) is composed again from the state of the moment
and sent on a later turn of the master's loop (`Channel.flush`); a purge that does not fit is
queued, in order, and sent on a later turn too (at most MAX_QUEUED_PURGES wait: past them a
purge is refused for that front, and the log says so). A message the front cannot read (cut,
not a pair, of an unknown kind) is logged and skipped: the master sent it, so it is a bug, not
a reason to stop serving. Pickle is fine here: it goes from the master, which the front trusts
with everything already, to its own child, forked from it with the same code.
"""

from __future__ import annotations

import array
import contextlib
import logging
import os
import pickle
import socket
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from maitred.apps import App
from maitred.link.files import MAX_FILES

log = logging.getLogger("maitred.error")

# The largest message: a few KiB per app. The master's end gets a send buffer this large (as
# root; otherwise the system's limit, some hundred apps' worth), the front reads this much.
MAX_MESSAGE = 4 * 1024 * 1024
_INT = array.array("i").itemsize
ANCILLARY_SIZE = socket.CMSG_SPACE(MAX_FILES * _INT)

# A front that does not read (stuck, soon killed for its silence) holds at most this many purges
# in the master: enough for a burst of deploys' purges, little memory.
MAX_QUEUED_PURGES = 1000
APPS, PURGE = "apps", "purge"  # the kinds of message
PURGE_KINDS = ("url", "prefix", "tag")

Table = tuple[tuple[App, ...], dict[str, socket.socket]]  # the apps, the new link listeners


class Purge(NamedTuple):
    kind: str  # one of PURGE_KINDS
    value: str
    app: str = ""  # the pool name of one app; "": every app


def encode_purge(purge: Purge) -> bytes:
    """A purge's message; ValueError when it is malformed."""
    if purge.kind not in PURGE_KINDS or not purge.value:
        raise ValueError(f"a purge needs one of {', '.join(PURGE_KINDS)} and a value")
    return pickle.dumps((PURGE, tuple(purge)), pickle.HIGHEST_PROTOCOL)


def pair() -> tuple[socket.socket, socket.socket]:
    """(the master's end, the front's end) of a new front's channel."""
    master, front = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for option in (getattr(socket, "SO_SNDBUFFORCE", None), socket.SO_SNDBUF):
        if option is not None:
            with contextlib.suppress(OSError):
                master.setsockopt(socket.SOL_SOCKET, option, MAX_MESSAGE)
                break
    master.setblocking(False)
    return master, front


def inode(sock: socket.socket) -> int:
    """Names a listening socket across processes: its inode is the same in each holder."""
    return os.fstat(sock.fileno()).st_ino


class Channel:
    """The master's end of one front's channel, and which link listeners the front holds."""

    def __init__(
        self, sock: socket.socket, held: Iterable[socket.socket], apps: Iterable[App]
    ) -> None:
        self.sock = sock
        self.held = {inode(link) for link in held}  # what it was forked with, or was sent
        self.dirty = False  # a new table waits to be sent
        self.cached = has_cache(apps)  # whether purges concern it: the apps it was last told
        self.purges: deque[bytes] = deque()  # purges' messages that did not fit yet, in order

    def purge(self, message: bytes) -> bool:
        """Send a purge's message (`encode_purge`) now, or on a later turn; whether it goes."""
        if len(self.purges) >= MAX_QUEUED_PURGES:
            log.warning("a front reads no purges: %d wait; one more is refused", MAX_QUEUED_PURGES)
            return False
        self.purges.append(message)
        self.send_purges()
        return True

    def send_purges(self) -> None:
        """Send the purges that wait, oldest first, until the channel is full."""
        while self.purges:
            try:
                self.sock.send(self.purges[0])
            except BlockingIOError:
                return  # tried again on a later turn
            except OSError as exc:  # the front is gone: reaped soon
                log.warning("cannot send a cache purge to a front: %s", exc)
                self.purges.clear()
                return
            self.purges.popleft()

    def flush(self, found: Sequence[App], links: Mapping[str, socket.socket]) -> None:
        """Send the table of `found` (the front's apps) if one waits; `links` are the
        front's link listeners by app. Tried again on a later turn when it cannot go now."""
        if not self.dirty:
            return
        new = [(name, sock) for name, sock in links.items() if inode(sock) not in self.held]
        fresh = dict(new[:MAX_FILES])
        held = {name for name, sock in links.items() if inode(sock) in self.held}
        table = tuple(a for a in found if a.name in fresh or a.name in held)
        payload = pickle.dumps((APPS, (table, tuple(fresh))), pickle.HIGHEST_PROTOCOL)
        fds = array.array("i", (s.fileno() for s in fresh.values()))
        rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)] if fds else []
        try:
            self.sock.sendmsg([payload], rights)
        except BlockingIOError:
            return  # the front reads it later; composed again then
        except OSError as exc:  # the front is gone (reaped soon), or the table is too large
            log.warning("cannot tell a front its new apps: %s", exc)
            self.dirty = False
            return
        self.held = {inode(links[a.name]) for a in table}
        self.cached = has_cache(table)
        self.dirty = len(new) > MAX_FILES  # the apps left out go with the next message

    def close(self) -> None:
        self.sock.close()


def has_cache(apps: Iterable[App]) -> bool:
    return any(app.cfg.cache_size for app in apps)


def receive(sock: socket.socket) -> Table | Purge | None:
    """In the front: what a message on `sock` brings, a table or a purge; None at the
    master's end (EOF). ValueError for a message it cannot read (the text says why)."""
    data, ancillary, flags, _ = sock.recvmsg(MAX_MESSAGE, ANCILLARY_SIZE)
    fds = array.array("i")
    for level, kind, item in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(item[: len(item) - len(item) % _INT])
    try:
        if not data:
            return None
        if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            raise ValueError("a message from the master came cut")
        message = _decode(data)
    except ValueError:
        for fd in fds:
            os.close(fd)
        raise
    if isinstance(message, Purge):
        for fd in fds:
            os.close(fd)
        return message
    found, names = message
    links = {name: socket.socket(fileno=fd) for name, fd in zip(names, fds, strict=True)}
    return found, links


def _decode(data: bytes) -> tuple[tuple[App, ...], tuple[str, ...]] | Purge:
    """A message's body: (apps, names of the listeners that came) or a purge."""
    try:
        kind, body = pickle.loads(data)
        if kind == PURGE:
            purge = Purge(*map(str, body))
        elif kind == APPS:
            found, names = body
            return tuple(found), tuple(names)
    except Exception as exc:  # unpickling raises anything: said, never a crash
        raise ValueError(f"a malformed message from the master: {data[:80]!r} ({exc!r})") from None
    if kind != PURGE:
        raise ValueError(f"a message of unknown kind {kind!r} from the master")
    if purge.kind not in PURGE_KINDS:
        raise ValueError(f"a purge of unknown kind {purge.kind!r} from the master")
    return purge
