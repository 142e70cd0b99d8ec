"""What the master tells its fronts at run time: for now, purges of the response cache.

Theory of operation
-------------------
A front whose apps have a response cache (--cache-size) gets a pipe from the master, the other
way from its status pipe (maitred.frontset makes both). The master writes one message per
line: a JSON object, at most PIPE_BUF bytes, so each write arrives whole or not at all (a full
pipe, a front that does not read: the master says so, and that front's entries stay until they
go stale). The front reads it on its event loop (:class:`CommandReader`) and acts at once.

The one message today is a purge: ``{"purge": "url" | "prefix" | "tag", "value": ..., "app":
NAME or ""}``; each matching app's cache drops its matching entries (maitred.front.cache
.ResponseCache.purge), and the front logs how many went. A line that does not decode is
logged and skipped: the master wrote it, so it is a bug, not a reason to stop serving.

Owned by the event loop thread (the front); :func:`encode_purge` is the master's.
"""

from __future__ import annotations

import json
import logging
import os
import select
from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import asyncio  # the front's; the master, which only writes purges, does without

    from maitred.front.cache import ResponseCache

log = logging.getLogger("maitred.error")

PURGE_KINDS = ("url", "prefix", "tag")
READ_SIZE = 65536
# The longest purge the master sends: one message must be one atomic pipe write.
MAX_MESSAGE = select.PIPE_BUF


class Purge(NamedTuple):
    kind: str  # one of PURGE_KINDS
    value: str
    app: str = ""  # the pool name of one app; "": every app


def encode_purge(purge: Purge) -> bytes:
    """One line for the command pipe; ValueError when it is malformed or too long."""
    if purge.kind not in PURGE_KINDS or not purge.value:
        raise ValueError(f"a purge needs one of {', '.join(PURGE_KINDS)} and a value")
    line = json.dumps({"purge": purge.kind, "value": purge.value, "app": purge.app}) + "\n"
    data = line.encode("utf-8")
    if len(data) > MAX_MESSAGE:
        raise ValueError(f"a purge of {len(data)} bytes is longer than {MAX_MESSAGE}")
    return data


def decode(line: bytes) -> Purge:
    """A line as the master wrote it; ValueError when it is not one."""
    try:
        message = json.loads(line)
        purge = Purge(str(message["purge"]), str(message["value"]), str(message.get("app", "")))
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"malformed command from the master: {line[:80]!r} ({exc})") from None
    if purge.kind not in PURGE_KINDS:
        raise ValueError(f"unknown purge {purge.kind!r}")
    return purge


def apply(purge: Purge, caches: Mapping[str, ResponseCache]) -> int:
    """Purge the matching entries of the apps' caches; how many went."""
    gone = 0
    for name, cache in caches.items():
        if not purge.app or purge.app == name:
            gone += cache.purge(**{purge.kind: purge.value})
    return gone


class CommandReader:
    """Reads the master's lines from the command pipe and applies them."""

    @classmethod
    def start(
        cls, loop: asyncio.AbstractEventLoop, fd: int, caches: Mapping[str, ResponseCache]
    ) -> CommandReader:
        os.set_blocking(fd, False)
        reader = cls(loop, fd, caches)
        loop.add_reader(fd, reader.readable)
        return reader

    def __init__(
        self, loop: asyncio.AbstractEventLoop, fd: int, caches: Mapping[str, ResponseCache]
    ) -> None:
        self.loop = loop
        self.fd = fd
        self.caches = caches
        self.pending = b""  # a line not yet whole (never, with whole writes; kept for safety)

    def readable(self) -> None:
        try:
            data = os.read(self.fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the master is gone: the front notices it by its own means
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            return
        *lines, self.pending = (self.pending + data).split(b"\n")
        for line in lines:
            try:
                purge = decode(line)
            except ValueError as exc:
                log.error("%s", exc)
                continue
            gone = apply(purge, self.caches)
            log.info("cache purge by %s %s: %d entries dropped", purge.kind, purge.value, gone)
