"""Closing a TLS connection without waiting on the client's close_notify.

Theory of operation
-------------------
Closing the loop's TLS transport (asyncio's and uvloop's alike) sends what is buffered and a
close_notify alert, then waits for the client's own close_notify before it closes the socket,
for up to 30 seconds. Many clients never send one: an HTTP client holding the connection in a
pool (requests, urllib3) reads nothing until its next request. Meanwhile the connection stays
open, holds its slot, and a front that stops waits for it until the graceful timeout.

TLS does not ask the side that closes to wait for the answer (RFC 8446 section 6.1), and an
HTTP server has nothing left to read; nginx does not wait either. So :class:`SecureTransport`,
the transport the ClientConnection of a TLS connection holds, closes the loop's transport as
usual and then watches the socket's own (raw) transport: once its buffer is empty (the response
and the close_notify are out) and the client has had :data:`CLOSE_NOTIFY_WAIT` to answer, it
closes the socket. A slow client still taking the end of a response is never cut short by this:
the socket closes only once everything was sent.

Everything else goes straight to the loop's transport. Owned by the event loop thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, cast

# Seconds a client has to answer our close_notify (or to close) once all we sent is out; a
# client that answers does so within a round trip.
CLOSE_NOTIFY_WAIT = 1.0


class SecureTransport(asyncio.Transport):
    """The loop's TLS transport, but for close() (see the module docstring)."""

    def __init__(
        self,
        secure: asyncio.Transport,
        raw: asyncio.BaseTransport,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        super().__init__()
        self._secure = secure
        self._raw = raw
        self._loop = loop
        self._watching = False

    def close(self) -> None:
        self._secure.close()
        if not self._watching:
            self._watching = True
            self._loop.call_later(CLOSE_NOTIFY_WAIT, self._close_when_sent)

    def _close_when_sent(self) -> None:
        raw = self._raw
        if raw.is_closing():
            return  # the client answered, or the loop gave up on it
        if cast(asyncio.WriteTransport, raw).get_write_buffer_size():
            self._loop.call_later(CLOSE_NOTIFY_WAIT, self._close_when_sent)
        else:
            raw.close()  # nothing left to send; the TLS protocol hears connection_lost

    # --- the rest goes to the loop's transport ---

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._secure.write(data)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self._secure.writelines(list_of_data)

    def is_closing(self) -> bool:
        return self._secure.is_closing()

    def abort(self) -> None:
        self._secure.abort()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._secure.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._secure.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._secure.get_protocol()

    def pause_reading(self) -> None:
        self._secure.pause_reading()

    def resume_reading(self) -> None:
        self._secure.resume_reading()

    def is_reading(self) -> bool:
        return self._secure.is_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._secure.set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._secure.get_write_buffer_limits()

    def get_write_buffer_size(self) -> int:
        return self._secure.get_write_buffer_size()

    def can_write_eof(self) -> bool:
        return False  # a TLS stream cannot be half-closed

    def write_eof(self) -> None:
        raise NotImplementedError("a TLS stream cannot be half-closed")
