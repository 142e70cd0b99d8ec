"""Listening sockets this master did not bind: an old master's (USR2) or systemd's.

Theory of operation
-------------------
Both come as descriptors open at exec, and both end up as what maitred.sockets.bind_all takes:
the group of sockets to use for a `--bind` entry, by the entry's index. Whatever is not
inherited is bound as usual.

* An old master (maitred.upgrade) passes its groups in its bind order, so the index is the
  position.
* systemd (socket activation) passes `LISTEN_FDS` sockets from descriptor 3 on, for this very
  process (`LISTEN_PID`), each with a name in `LISTEN_FDNAMES` (FileDescriptorName= in the
  socket unit; "unknown" or the unit's name when not set). A `--bind fd://NAME` entry takes the
  socket of that name; any other entry takes the socket that listens on its address, so a
  socket unit with `ListenStream=127.0.0.1:8000` serves `-b 127.0.0.1:8000` unchanged. A socket
  that no entry takes is closed with a warning naming it, as the settings say what is served.

The master takes the variables out of its environment (as sd_listen_fds does with its
`unset_environment`): its children, the app and a new master must not take them for theirs.
A new master after USR2 gets every listener, systemd's included, the old master's way, and
is told which of them are systemd's (`MAITRED_SYSTEMD_FDS`): the socket unit owns their paths,
which no master may remove when it stops.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field

from maitred import sockets, upgrade

log = logging.getLogger("maitred.error")

LISTEN_FDS = "LISTEN_FDS"
LISTEN_PID = "LISTEN_PID"
LISTEN_FDNAMES = "LISTEN_FDNAMES"
FIRST_FD = 3  # SD_LISTEN_FDS_START
SYSTEMD_FDS = "MAITRED_SYSTEMD_FDS"  # to a new master (USR2): which inherited fds are systemd's


@dataclass
class Inherited:
    """The groups to use for bind entries, by index, and which sockets systemd owns."""

    groups: dict[int, list[socket.socket]] = field(default_factory=dict)
    systemd: list[socket.socket] = field(default_factory=list)


def listeners(texts: Sequence[str], environ: MutableMapping[str, str]) -> Inherited:
    """The sockets passed down to this process for the bind entries `texts`."""
    activated = from_systemd(environ)
    owned = {int(fd) for fd in environ.pop(SYSTEMD_FDS, "").split(",") if fd.isdigit()}
    if upgrade.LISTEN_FDS in environ:
        for _, sock in activated:  # not ours: an old master passes everything down
            sock.close()
        groups = dict(enumerate(upgrade.inherited_listeners(environ)))
        systemd = [sock for group in groups.values() for sock in group if sock.fileno() in owned]
        return Inherited(groups, systemd)
    groups, unused = match(texts, activated)
    for name, sock in unused:
        where = sockets.address_of(sock)
        log.warning("systemd passed socket %r (%s) that no --bind takes; closing it", name, where)
        sock.close()
    return Inherited(groups, [sock for group in groups.values() for sock in group])


def from_systemd(environ: MutableMapping[str, str]) -> list[tuple[str, socket.socket]]:
    """The sockets systemd passed to this process, with their names; the variables are taken
    out of `environ` either way."""
    count_text = environ.pop(LISTEN_FDS, "")
    pid_text = environ.pop(LISTEN_PID, "")
    names_text = environ.pop(LISTEN_FDNAMES, "")
    if not count_text.isdigit() or pid_text != str(os.getpid()):
        return []
    count = int(count_text)
    names = names_text.split(":") if names_text else []
    names += ["unknown"] * (count - len(names))
    found = []
    for offset in range(count):
        sock = socket.socket(fileno=FIRST_FD + offset)
        sock.set_inheritable(False)
        if sock.type != socket.SOCK_STREAM or not sock.getsockopt(
            socket.SOL_SOCKET, socket.SO_ACCEPTCONN
        ):
            sock.close()
            raise OSError(f"systemd passed {names[offset]!r}, which is no listening stream socket")
        sock.setblocking(False)
        found.append((names[offset], sock))
    return found


def match(
    texts: Sequence[str], activated: Sequence[tuple[str, socket.socket]]
) -> tuple[dict[int, list[socket.socket]], list[tuple[str, socket.socket]]]:
    """Which activated socket each bind entry takes (by its index: fd://NAME by name, others
    by address), and the sockets no entry takes."""
    left = list(activated)
    groups: dict[int, list[socket.socket]] = {}
    for index, text in enumerate(texts):
        address = sockets.parse_address(text)
        for entry in left:
            name, sock = entry
            if name == address.name if address.name else sockets.same_address(address, sock):
                groups[index] = [sock]
                left.remove(entry)
                break
    return groups, left


def env_for_new_master(systemd: Sequence[socket.socket]) -> dict[str, str]:
    """What tells a new master (USR2) which of the listeners it inherits are systemd's."""
    if not systemd:
        return {}
    return {SYSTEMD_FDS: ",".join(str(sock.fileno()) for sock in systemd)}
