"""Opening a static file that is the one its stat described, and the cache of small files.

Theory of operation
-------------------
A static response's headers come from the ``lstat`` made while resolving the path. When the file
is then opened (O_NOFOLLOW unless its own name is a checked symlink), ``fstat`` must show the
same file (device, inode, size, mtime, ctime), else :class:`Changed` is raised and the request
starts over: a deploy that replaces files never gets a length that disagrees with the bytes.
(Someone who can write to the static tree could still race a symlink into a directory between
the check and the open; that user can publish files anyway.)

Small files are kept in memory (:class:`FileCache`), checked against each request's stat the
same way: a hit costs one lstat and one send, where sendfile would cost open, fstat, write,
sendfile and close.

Owned by the event loop thread.
"""

from __future__ import annotations

import os
from typing import TypeAlias

# Device, inode, size, mtime and ctime: whether a file is still the one a stat described.
Identity: TypeAlias = tuple[int, int, int, int, int]

_OPEN = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK  # NONBLOCK: opening a FIFO must not hang


class Changed(Exception):
    """The file changed between its stat and its open: start the request over."""


def identity(st: os.stat_result) -> Identity:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def open_checked(path: bytes, st: os.stat_result, linked: bool) -> int:
    """Open the file that `st` describes; Changed if what opens is not that file any more."""
    try:
        fd = os.open(path, _OPEN if linked else _OPEN | os.O_NOFOLLOW)
    except OSError:
        raise Changed from None
    opened = os.fstat(fd)
    if identity(opened) != identity(st):
        os.close(fd)
        raise Changed
    return fd


class FileCache:
    """The contents of small static files, keyed by path and checked against each request's
    stat: device, inode, size, mtime and ctime all equal, or the file is read again.

    A hit costs the one lstat the request makes anyway, instead of open, fstat, read and close.
    A file rewritten in place within one timestamp tick with the same size would be served
    stale until its next change; deploys write new files (or new names), which is always seen.
    Bounded by bytes; the oldest entries go first.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.entries: dict[bytes, tuple[Identity, bytes]] = {}

    def read(self, path: bytes, st: os.stat_result, known: Identity, linked: bool) -> bytes:
        """The file's contents; `known` is ``identity(st)``, which the caller has made already."""
        entry = self.entries.get(path)
        if entry is not None and entry[0] == known:
            return entry[1]
        fd = open_checked(path, st, linked)
        try:
            data = os.pread(fd, st.st_size, 0)
        finally:
            os.close(fd)
        if len(data) != st.st_size:
            raise Changed
        self._keep(path, known, data)
        return data

    def _keep(self, path: bytes, known: Identity, data: bytes) -> None:
        if len(data) > self.limit:
            return
        old = self.entries.pop(path, None)
        if old is not None:
            self.size -= len(old[1])
        entries = self.entries
        while entries and self.size + len(data) > self.limit:
            self.size -= len(entries.pop(next(iter(entries)))[1])
        entries[path] = (known, data)
        self.size += len(data)
