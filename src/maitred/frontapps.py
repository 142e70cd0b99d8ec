"""The master tells a running front a new table of apps: the message and both its ends.

Theory of operation
-------------------
A front starts with the apps of its generation (maitred.frontplan). When the set of apps
changes while it runs (--apps-dir, maitred.appsdir; a HUP that changes the ``[apps]`` tables
and no setting of the fronts), the master sends each front of the current generation its whole
new table over a channel of its own: a unix SOCK_SEQPACKET socket pair made when the front is
forked. The master's end is the front's :class:`Channel` (kept by maitred.frontset); the front
reads its end in its event loop (:func:`receive`), and maitred.front.apptable applies what
comes, without dropping a connection or a worker link.

A message is the front's apps (as maitred.frontplan.front_apps makes them: its share of each
queue), pickled, and the link listener of each app whose listener the front does not hold yet,
as open descriptors (SCM_RIGHTS) that the message names. Whole tables, never changes: a message
sent late or superseded cannot leave a front half-changed, and the front compares the table
with what it serves. SEQPACKET keeps a message and its descriptors together, whole or not at
all. A message names at most MAX_FILES new listeners; the apps past them wait for the next one.

The master never waits for a front: its end is non-blocking, and a message that does not fit
now (a front that is busy, or stuck and soon killed for its silence) is composed again from the
state of the moment and sent on a later turn of the master's loop (`Channel.flush`). Pickle is
fine here: it goes from the master, which the front trusts with everything already, to its own
child, forked from it with the same code.
"""

from __future__ import annotations

import array
import contextlib
import logging
import os
import pickle
import socket
from collections.abc import Iterable, Mapping, Sequence

from maitred.apps import App
from maitred.link.files import MAX_FILES

log = logging.getLogger("maitred.error")

# The largest message: a few KiB per app. The master's end gets a send buffer this large (as
# root; otherwise the system's limit, some hundred apps' worth), the front reads this much.
MAX_MESSAGE = 4 * 1024 * 1024
_INT = array.array("i").itemsize
ANCILLARY_SIZE = socket.CMSG_SPACE(MAX_FILES * _INT)

Table = tuple[tuple[App, ...], dict[str, socket.socket]]  # the apps, the new link listeners


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

    def __init__(self, sock: socket.socket, held: Iterable[socket.socket]) -> None:
        self.sock = sock
        self.held = {inode(link) for link in held}  # what it was forked with, or was sent
        self.dirty = False  # a new table waits to be sent

    def flush(self, found: Sequence[App], links: Mapping[str, socket.socket]) -> None:
        """Send the table of `found` (the front's apps) if one waits; `links` are the
        front's link listeners by app. Tried again on a later turn when it cannot go now."""
        if not self.dirty:
            return
        new = [(name, sock) for name, sock in links.items() if inode(sock) not in self.held]
        fresh = dict(new[:MAX_FILES])
        held = {name for name, sock in links.items() if inode(sock) in self.held}
        table = tuple(a for a in found if a.name in fresh or a.name in held)
        payload = pickle.dumps((table, tuple(fresh)), pickle.HIGHEST_PROTOCOL)
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
        self.dirty = len(new) > MAX_FILES  # the apps left out go with the next message

    def close(self) -> None:
        self.sock.close()


def receive(sock: socket.socket) -> Table | None:
    """In the front: the table a message on `sock` brings; None at the master's end (EOF) or
    for a message that came cut (said in the log: it is not applied)."""
    data, ancillary, flags, _ = sock.recvmsg(MAX_MESSAGE, ANCILLARY_SIZE)
    fds = array.array("i")
    for level, kind, item in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(item[: len(item) - len(item) % _INT])
    if not data or flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        for fd in fds:
            os.close(fd)
        if data:
            log.error("front: a table of apps from the master came cut; not applied")
        return None
    found, names = pickle.loads(data)
    links = {name: socket.socket(fileno=fd) for name, fd in zip(names, fds, strict=True)}
    return found, links
