"""Open files that travel with the link's frames: a spooled request body, front -> worker.

Theory of operation
-------------------
A request body past --body-buffer-size is spooled by the front to a file of its own (0600, in
a directory only the front's user may enter). Once the body is whole the front opens the file
again read-only, removes its name, and hands the worker that runs the request that read-only
descriptor with the REQUEST frame (SCM_RIGHTS on the unix link socket); the frame says only
that a file comes with it (``Request.spooled``). Why a descriptor and not a path: the body is
spooled before the front knows which app takes the request (routing waits for the request's
turn on its connection), and the apps may run as different users; a descriptor reaches
exactly the worker that needs it, no other app's user can open the file by any name, and a
front that dies leaves no named file behind.

The front writes frames in batches (one write per event-loop turn); the descriptors of a batch
go with the sendmsg that writes its first bytes. The kernel delivers them with the first read
that takes any of those bytes, so a worker has a file in hand no later than the REQUEST frame
it belongs to, and in the order the frames were sent: the worker keeps the files in a FIFO
(:class:`Receiver`) and each spooled REQUEST takes the oldest. One read returns the files of
one sendmsg at most: a batch carries at most one file per request its worker holds, so at most
--threads of them, which :data:`MAX_FILES` bounds (a worker of more threads than that would
see its reads cut short, and stop).
"""

from __future__ import annotations

import array
import contextlib
import os
import socket
from collections import deque
from collections.abc import Sequence

from maitred.link.messages import ProtocolViolation

MAX_FILES = 253  # SCM_MAX_FD: the most descriptors one sendmsg carries on Linux
_INT = array.array("i").itemsize
ANCILLARY_SIZE = socket.CMSG_SPACE(MAX_FILES * _INT)
# A plain int: socket.MSG_CTRUNC is an IntFlag, and `flags & IntFlag` runs enum code in Python,
# about 7,000 instructions on every read of the link (a tenth of a hello request's worker).
_CTRUNC = int(socket.MSG_CTRUNC)


def send_with_files(fileno: int, buffers: Sequence[bytes | bytearray], files: Sequence[int]) -> int:
    """sendmsg the buffers on the (non-blocking) link socket `fileno`, with `files` attached;
    the number of bytes sent (BlockingIOError: none, nor the files)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fileno)
    try:
        # Never wait: a socket made under socket.setdefaulttimeout() would wait for room.
        sock.setblocking(False)
        rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", files))]
        return sock.sendmsg(buffers, rights)
    finally:
        sock.detach()  # the transport's socket: not ours to close


class Receiver:
    """The worker's reads of its link: bytes into a buffer, the files that came with them into
    a FIFO for the spooled REQUESTs (see above). Owned by the worker's reader thread."""

    __slots__ = ("files", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.files: deque[int] = deque()

    def recv_into(self, buffer: memoryview) -> int:
        size, ancillary, flags, _ = self.sock.recvmsg_into([buffer], ANCILLARY_SIZE)
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(data[: len(data) - len(data) % _INT])
                self.files.extend(fds)
        if flags & _CTRUNC:
            raise ProtocolViolation(f"more than {MAX_FILES} files with one write")
        return size

    def take(self) -> int:
        """The file of a spooled REQUEST: the oldest that came."""
        if not self.files:
            raise ProtocolViolation("a spooled REQUEST came without its file")
        return self.files.popleft()

    def close(self) -> None:
        """The link is over: files whose REQUEST never came are closed."""
        while self.files:
            with contextlib.suppress(OSError):
                os.close(self.files.popleft())
