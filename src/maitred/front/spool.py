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

A body held in memory is a list of the pieces read, or (front/bodyread.py) ends in one buffer
that the rest of it is received into (:meth:`Body.room`). A body past the buffer is written to
a file (0600) in the front's spool directory; once it
is whole, :meth:`Body.end` opens it again read-only and removes its name: from then on the
body is that descriptor alone, which goes to the worker with the request (maitred.link.files),
so no other process, of any user, can open it by a name.

Owned by the event loop thread.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import tempfile
from typing import Any, NoReturn

from maitred.http.errors import BodyTooLarge, ProtocolError

log = logging.getLogger("maitred.error")

# Failures that mean "out of descriptors": load that passes, answered like shed load.
_SHORTAGE = frozenset({errno.EMFILE, errno.ENFILE})


class SpoolError(ProtocolError):
    """A body could not be written to its temp file: the server's fault, not the client's."""

    status = 500


class Body:
    """A request body being received: in memory up to `buffer_size`, then in a temp file."""

    __slots__ = ("buffer_size", "chunks", "fd", "file", "limit", "size", "temp_dir")

    def __init__(self, buffer_size: int, temp_dir: str, limit: int = 0) -> None:
        self.buffer_size = buffer_size
        # Most bytes it may hold, when the front counts them rather than the parser: a
        # location's max-body-size (maitred.front.rules). 0: the parser's limit holds.
        self.limit = limit
        self.temp_dir = temp_dir or None
        self.chunks: list[bytes | bytearray] = []
        self.size = 0
        self.file: Any = None  # the spool file being written
        self.fd = -1  # once whole: the spooled body, read-only, its name removed

    def add(self, data: bytes) -> None:
        self.size += len(data)
        if self.limit and self.size > self.limit:
            self.discard()
            raise BodyTooLarge("request body too large")
        try:
            if self.file is not None:
                self.file.write(data)
            elif self.size > self.buffer_size:
                self.file = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives past this call
                    prefix="maitred-body-", dir=self.temp_dir, delete=False
                )
                self.file.writelines(self.chunks)
                self.file.write(data)
                self.chunks = []
            else:
                self.chunks.append(data)
        except OSError as exc:
            self._failed(exc)

    def room(self, length: int) -> memoryview | None:
        """A buffer for the body's next `length` bytes, which the caller receives into
        (front/bodyread.py) and counts with :meth:`received`; None when they would not be
        held in memory (past the buffer or the limit: :meth:`add` takes them, and decides)."""
        size = self.size + length
        if self.file is not None or size > self.buffer_size or (self.limit and size > self.limit):
            return None
        buffer = bytearray(length)
        self.chunks.append(buffer)  # a bytearray among the bytes: the link writes either
        return memoryview(buffer)

    def received(self, size: int) -> None:
        """`size` more bytes came into the buffer :meth:`room` gave."""
        self.size += size

    def end(self) -> None:
        """The whole body is in: flush it to its file, keep it open read-only, remove its
        name (SpoolError when that fails)."""
        if self.file is not None:
            try:
                self.file.flush()
                self.fd = os.open(self.file.name, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                self._failed(exc)
            self.discard_file()

    def finish(self) -> tuple[list[bytes | bytearray], int]:
        """(in-memory body chunks, spooled body's descriptor or -1). The descriptor is the
        caller's from now on, to send and close. After end()."""
        fd, self.fd = self.fd, -1
        return ([] if fd >= 0 else self.chunks), fd

    def discard(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.discard_file()

    def discard_file(self) -> None:
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
