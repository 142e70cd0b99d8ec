"""Flow control of one client connection: when the front stops reading, and when it must wait
before writing more.

Theory of operation
-------------------
Two independent facts, each set where it happens:

* **reading paused**: the front stopped reading from the client because it holds
  :data:`MAX_PIPELINED` complete requests behind the one being served (pipelining is for
  latency, not for queueing work in the front). It reads again once half of them are answered,
  and when it lingers (it must read what the client still sends). A timeout does not count
  the time a client spends waiting for the front to read (front/timeouts.py).
* **writing paused**: the transport's buffer is past --response-buffer-size (asyncio's
  ``pause_writing``). Body bytes then go to a response spool or have their credit withheld
  (front/exchange.py), and a file being sent waits (front/sendfile.py), until
  ``resume_writing``.

Owned by the event loop thread.
"""

from __future__ import annotations

import asyncio

# Complete requests one connection may have waiting behind its active one before the front
# stops reading from it.
MAX_PIPELINED = 16
# Reading resumes once the pipeline is down to this: not at once, so a client that pipelines
# steadily does not pause and resume the transport on every response.
RESUME_PIPELINED = MAX_PIPELINED // 2


class FlowControl:
    """Reading and writing pause state of one client transport."""

    __slots__ = ("read_paused", "transport", "write_paused")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.read_paused = False
        self.write_paused = False

    def pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()

    def pipeline_grew(self, waiting: int) -> None:
        if waiting >= MAX_PIPELINED:
            self.pause_reading()

    def pipeline_shrank(self, waiting: int) -> None:
        if waiting < RESUME_PIPELINED:
            self.resume_reading()
