"""Messages from a worker or a front to the master, on the child's status pipe.

Each message is 9 bytes, a kind and a number, written whole (pipe writes this small are atomic):

    READY      the app is imported and the threads run (workers)
    HEARTBEAT  every second; from a worker, the number is the age in seconds of the oldest
               request in flight (a front sends 0)
    RECYCLE    the worker reached --max-requests: start its replacement, then stop it
    STUCK      a timed-out request did not finish: the worker takes no more work and exits
"""

from __future__ import annotations

import struct

MESSAGE = struct.Struct("<cd")

READY = b"R"
HEARTBEAT = b"H"
RECYCLE = b"M"
STUCK = b"S"


def encode(kind: bytes, value: float = 0.0) -> bytes:
    return MESSAGE.pack(kind, value)


class StatusReader:
    """Splits what one read of a status pipe returned into messages; keeps a partial tail."""

    __slots__ = ("_tail",)

    def __init__(self) -> None:
        self._tail = b""

    def feed(self, data: bytes) -> list[tuple[bytes, float]]:
        data = self._tail + data
        whole = len(data) - len(data) % MESSAGE.size
        self._tail = data[whole:]
        return [MESSAGE.unpack_from(data, offset) for offset in range(0, whole, MESSAGE.size)]
