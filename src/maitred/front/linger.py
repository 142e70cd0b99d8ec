"""Lingering close: a client still sending its request gets to read the early answer.

When the front answers before it has read the whole request (413 for a body past
--limit-request-body, 400 for a malformed one, 408, or a 5xx when a body cannot be spooled) and
then simply closes, the kernel finds unread bytes on the socket and sends RST instead of FIN. A
client still writing its body gets ECONNRESET from its next send, so the many clients that send
the whole request before reading (urllib3, http.client) never see the answer; and what the
kernel had not yet sent of the response is dropped with the connection. nginx's
``lingering_close`` avoids both, and so does the front:

1. the response is written, then the write side is shut down: FIN follows the response;
2. whatever the client still sends is read and thrown away;
3. the connection closes when the client closes its side, or after :data:`LINGER_TIME`
   seconds, or after :data:`LINGER_BYTES` bytes, whichever comes first.

Both bounds are constants, not settings: they only decide how long a client that ignores an
error may keep pushing bytes, which no deployment needs to tune.

Owned by the event loop thread.
"""

from __future__ import annotations

import asyncio

# Seconds a client has, after an early answer, to stop sending and close. A client sees the
# answer one round trip after it was sent (well under a second, even across the world); nginx
# waits up to 5 s (lingering_timeout) for each read. Past this the connection is just closed.
LINGER_TIME = 5.0
# Bytes read and discarded at most: 64 MiB is about 5 s of a 100 Mbit/s upload, so over real
# networks the time bound comes first; on a LAN or loopback a client that keeps sending at
# gigabytes per second stops costing the front's loop after a few tens of milliseconds.
LINGER_BYTES = 64 << 20


class Linger:
    """Reads and discards what a client still sends after its connection's last answer."""

    __slots__ = ("left", "timer", "transport")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        transport: asyncio.Transport,
        seconds: float = LINGER_TIME,
        budget: int = LINGER_BYTES,
    ) -> None:
        self.transport = transport
        self.left = budget
        transport.write_eof()  # shutdown(SHUT_WR) once the buffered response is out
        self.timer = loop.call_later(seconds, self.close)

    def discard(self, size: int) -> None:
        self.left -= size
        if self.left < 0:
            self.close()

    def close(self) -> None:
        self.timer.cancel()
        self.transport.close()

    def stop(self) -> None:
        """The connection is gone: nothing left to wait for."""
        self.timer.cancel()
