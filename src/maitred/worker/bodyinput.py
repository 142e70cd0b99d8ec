"""wsgi.input for a large body that came in the link's frame: read where it was received.

A REQUEST frame too large for the link's reused read buffer is received into a buffer of its
own (maitred.link.codec.FrameReader), and its body reaches the environ as a view of that
buffer. io.BytesIO would copy it whole before the app reads a byte (it shares only a bytes
object): a megabyte copied, on the app's thread, per megabyte uploaded. :class:`BodyView` is a
raw stream over the view instead; the io.BufferedReader around it gives wsgi.input everything
PEP 3333 asks (read, readline, readlines, iteration), and a large read goes straight from the
view into the bytes the app gets: the one copy that reading needs.

Owned by the thread that runs the request.
"""

from __future__ import annotations

import io
import os
from typing import IO

# The BufferedReader's own buffer, for readline and small reads; larger reads bypass it.
LINE_BUFFER = 8 * 1024


class BodyView(io.RawIOBase):
    """A seekable, read-only raw stream over a memoryview."""

    def __init__(self, view: memoryview) -> None:
        super().__init__()
        self._view = view
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        view, pos = self._view, self._pos
        size = min(len(buffer), len(view) - pos)
        if size <= 0:
            return 0
        memoryview(buffer).cast("B")[:size] = view[pos : pos + size]
        self._pos = pos + size
        return size

    def readall(self) -> bytes:
        data = bytes(self._view[self._pos :])
        self._pos = len(self._view)
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: len(self._view)}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos


def body_input(view: memoryview) -> IO[bytes]:
    """wsgi.input reading `view`, uncopied."""
    return io.BufferedReader(BodyView(view), LINE_BUFFER)
