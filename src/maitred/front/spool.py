"""Request bodies as they arrive: in memory up to --body-buffer-size, then in a temp file.

A body that cannot be written (disk full, quota, read-only or vanished --body-temp-dir, no
descriptor left) ends its request with one error-log line and an answer of the front's own,
never a traceback: the partial file is removed and :class:`SpoolError` carries the status.
Which status depends on what ran out:

* descriptors (EMFILE, ENFILE): 503. Like the front's other shedding, it passes as connections
  close, so "try again later" is the truth;
* anything else (ENOSPC, EDQUOT, EIO, EROFS, EACCES, ENOENT): 500, as nginx answers when it
  cannot write a client body to a temp file: storage needs an operator, retrying will not help.

Writes go through a buffered file, so a full disk may only show when the last bytes are flushed:
:meth:`Body.end` flushes when the request is complete, before it is dispatched, so the failure
is still the request's and never the dispatcher's.

Owned by the event loop thread.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import tempfile
from typing import Any, NoReturn

from maitred import privileges
from maitred.http.errors import ProtocolError

log = logging.getLogger("maitred.error")

# Failures that mean "out of descriptors": load that passes, answered like shed load.
_SHORTAGE = frozenset({errno.EMFILE, errno.ENFILE})


class SpoolError(ProtocolError):
    """A body could not be written to its temp file: the server's fault, not the client's."""

    status = 500


class Body:
    """A request body being received: in memory up to `buffer_size`, then in a temp file."""

    __slots__ = ("buffer_size", "chunks", "file", "size", "temp_dir")

    def __init__(self, buffer_size: int, temp_dir: str) -> None:
        self.buffer_size = buffer_size
        self.temp_dir = temp_dir or None
        self.chunks: list[bytes] = []
        self.size = 0
        self.file: Any = None

    def add(self, data: bytes) -> None:
        self.size += len(data)
        try:
            if self.file is not None:
                self.file.write(data)
            elif self.size > self.buffer_size:
                self.file = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives past this call
                    prefix="maitred-body-", dir=self.temp_dir, delete=False
                )
                # The worker opens it by its path, maybe as another user of the same group.
                privileges.share_spooled(self.file.fileno(), os.path.dirname(self.file.name))
                self.file.writelines(self.chunks)
                self.file.write(data)
                self.chunks = []
            else:
                self.chunks.append(data)
        except OSError as exc:
            self._failed(exc)

    def end(self) -> None:
        """The whole body is in: flush it to its file (SpoolError when that fails)."""
        if self.file is not None:
            try:
                self.file.close()
            except OSError as exc:
                self._failed(exc)

    def finish(self) -> tuple[list[bytes], str]:
        """(in-memory body chunks, spool path): one of the two is empty. After end()."""
        if self.file is not None:
            return [], str(self.file.name)
        return self.chunks, ""

    def discard(self) -> None:
        if self.file is not None:
            # Closing flushes what is buffered, which fails the same way on a full disk: the
            # file goes either way.
            with contextlib.suppress(OSError):
                self.file.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.file.name)
            self.file = None

    def _failed(self, exc: OSError) -> NoReturn:
        where = self.temp_dir or tempfile.gettempdir()
        log.error("cannot spool a request body in %s: %s", where, exc)
        self.discard()
        status = 503 if exc.errno in _SHORTAGE else 500
        raise SpoolError("cannot spool the request body", status) from None
