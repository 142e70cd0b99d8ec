"""The response cache's files: bodies past --cache-max-object kept on disk (--cache-dir).

Theory of operation
-------------------
A body larger than --cache-max-object would cost its size in memory for each stored page;
with --cache-dir the fetch that records it writes it to a file instead (:class:`BodyFile`),
and the stored entry names the file. A hit sends it as static files are sent, with sendfile
(:class:`StoredFileSender`): the page cache serves it, the front's memory holds none of it.

Each cache (one app in one front) has a directory of its own (:class:`CacheDir`), made with
mkdtemp under --cache-dir: mode 0700 and a name no other front or app uses, so fronts never
share file names and app users cannot read the pages. It is made on the first body written,
after the front dropped its privileges, so it belongs to the front's user. Files are created
with O_EXCL and mode 0600.

A body is written whole before its entry enters the store (maitred.front.cachefetch.Fetch.over),
so a body still being written is never served. A file goes when its entry goes (eviction,
purge, a newer response: maitred.front.cachestore.Store), when its fetch stores nothing, and
with the whole directory when the front stops. A front killed with SIGKILL cannot remove its
directory: the next directory made under --cache-dir removes those whose front's pid (in the
name) no longer runs (:func:`remove_dead`). One whose pid runs is left alone, whoever runs it:
another maitred server may share the directory. A send under way when its entry goes keeps
its open descriptor, so its client still gets the whole body.

Writes are synchronous, in the event loop: they go to the page cache, as the response spool's
do (maitred.front.respspool); a write that fails (a full disk) drops that body, never the
response its client is getting.

Owned by the event loop thread.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile

from maitred.front.exchange import Exchange
from maitred.front.sendfile import FileSender

log = logging.getLogger("maitred.error")

DIR_PREFIX = "front-{pid}-"
DIR_NAME = re.compile(r"front-(\d+)-\w+")  # what mkdtemp makes of DIR_PREFIX
FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
FILE_MODE = 0o600
DIR_MODE = 0o700


def runs(pid: int) -> bool:
    """Whether process `pid` exists (one of another user's too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it runs, as another user
    return True


def remove_dead(root: str) -> None:
    """Remove the cache directories under `root` of fronts that no longer run (killed before
    they could), one log line each."""
    try:
        names = os.listdir(root)
    except OSError:
        return
    for name in names:
        match = DIR_NAME.fullmatch(name)
        if match is None or runs(int(match.group(1))):
            continue
        path = os.path.join(root, name)
        if os.path.isdir(path) and not os.path.islink(path):
            log.info("cache: removing %s, left by a front that no longer runs", path)
            shutil.rmtree(path, ignore_errors=True)


def remove_file(path: str) -> None:
    """Unlink a stored body's file; one already gone is no error."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.error("cache: cannot remove %s: %s", path, exc)


class BodyFile:
    """A body being written to its file."""

    __slots__ = ("fd", "path")

    def __init__(self, fd: int, path: str) -> None:
        self.fd = fd
        self.path = path

    def write(self, data: bytes) -> bool:
        """Append `data`; False (and the file removed) when the disk refused it."""
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError as exc:
            log.error("cache: cannot write %s: %s", self.path, exc)
            self.discard()
            return False
        return True

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def discard(self) -> None:
        """The body is not stored: its file goes."""
        self.close()
        remove_file(self.path)


class CacheDir:
    """One cache's directory of bodies under --cache-dir (see the module docstring)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.path = ""  # made on the first body
        self.count = 0
        self.closed = False

    def create(self) -> BodyFile | None:
        """A new, empty file for a body; None (logged) when the directory refuses it."""
        if self.closed:
            return None  # a cache replaced by a new table of apps: its fetches store nothing
        try:
            if not self.path:
                os.makedirs(self.root, mode=DIR_MODE, exist_ok=True)
                remove_dead(self.root)
                prefix = DIR_PREFIX.format(pid=os.getpid())
                self.path = tempfile.mkdtemp(prefix=prefix, dir=self.root)  # mode 0700
            self.count += 1
            path = os.path.join(self.path, str(self.count))
            return BodyFile(os.open(path, FILE_FLAGS, FILE_MODE), path)
        except OSError as exc:
            log.error("cache: cannot write a body under %s: %s", self.root, exc)
            return None

    def close(self) -> None:
        """The front stops (or the cache is replaced): every file goes."""
        self.closed = True
        if self.path:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path = ""


class StoredFileSender(FileSender):
    """Sends a stored body's file, ending the response with the plain Exchange method: the
    exchange may be one whose own app response is being dropped (stale-if-error)."""

    __slots__ = ()

    def _finish(self) -> None:
        exchange = self.exchange
        self.close()
        Exchange.respond_end(exchange)
