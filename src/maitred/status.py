"""Messages from a worker or a front to the master, on the child's status pipe.

Most messages are 9 bytes, a kind and a number:

    READY      the app is imported (and warmed up, --warmup) and the threads run (workers)
    HEARTBEAT  every second; from a worker, the number is the age in seconds of the oldest
               request in flight (a front sends 0)
    RECYCLE    the worker reached --max-requests: start its replacement, then stop it
    STUCK      a timed-out request did not finish: the worker takes no more work and exits

One kind carries more, a front's load report on one app pool (:class:`LoadReport`), which the
pool's scaling decides on (maitred.scaling):

    LOAD       kind, payload length (2 bytes), payload: the pool's name and its figures

and, with --stats-bind, a front's cumulative request counters of one app (maitred.front.metrics),
as JSON (:class:`MetricsReport`):

    METRICS    kind, payload length (2 bytes), payload: a JSON object

and, on the master's request (SIGUSR2, `maitred ctl stacks`), a worker's busy threads and their
stacks (maitred.worker.stacks), as JSON cut into pieces that each fit one atomic write
(:class:`StacksPart`); the last piece has its own kind:

    STACKS     kind, payload length (2 bytes), payload: a piece of the JSON
    STACKS_END the same, for the last piece

Every message is written whole in one write of at most PIPE_BUF bytes, which a pipe keeps
atomic, so messages from one child never interleave. The reader is sans-IO: bytes in (in any
chunking), messages out.
"""

from __future__ import annotations

import json
import logging
import struct
from collections.abc import Callable
from typing import Any, NamedTuple

log = logging.getLogger("maitred.error")

MESSAGE = struct.Struct("<cd")

READY = b"R"
HEARTBEAT = b"H"
RECYCLE = b"M"
STUCK = b"S"
LOAD = b"L"
METRICS = b"C"
STACKS = b"k"
STACKS_END = b"K"

# A LOAD message: its kind and payload length, then the payload: the pool's name (length,
# UTF-8), the figures, how many workers follow, and each worker's pid and requests in flight.
LOAD_HEAD = struct.Struct("<cH")
NAME_LENGTH = struct.Struct("<B")
FIGURES = struct.Struct("<IdddId")  # queued, oldest_wait, busy, most_busy, threads, window
COUNT = struct.Struct("<H")
WORKER = struct.Struct("<iH")  # pid, requests in flight
PIPE_BUF = 4096  # POSIX: a write to a pipe up to this size is atomic
# The workers a report can name and still fit one atomic write with the longest name.
MAX_WORKERS = (PIPE_BUF - LOAD_HEAD.size - 1 - 255 - FIGURES.size - COUNT.size) // WORKER.size


class LoadReport(NamedTuple):
    """What one front saw of one pool over its last window (maitred.front.load)."""

    pool: str  # the pool's name
    queued: int  # requests waiting for a thread when the window ended
    oldest_wait: float  # longest seconds a queued request had waited, at any sample
    busy: float  # threads running a request, on average over the window
    most_busy: float  # threads running a request at the busiest sample
    threads: int  # threads of the pool's workers that take requests (not draining)
    window: float  # seconds the report covers
    in_flight: tuple[tuple[int, int], ...] = ()  # (pid, requests it runs now) per worker


class MetricsReport(NamedTuple):
    """A front's counters of one app, or of its connections (maitred.front.metrics)."""

    figures: dict[str, Any]


class StacksPart(NamedTuple):
    """A piece of a worker's stacks (maitred.worker.stacks); the pieces go in order."""

    data: bytes
    last: bool


Message = tuple[bytes, float] | LoadReport | MetricsReport | StacksPart
STACKS_PIECE = PIPE_BUF - LOAD_HEAD.size  # bytes of JSON per STACKS message


def encode_stacks(data: bytes) -> list[bytes]:
    """The STACKS messages that carry `data`, each one atomic write."""
    pieces = [data[at : at + STACKS_PIECE] for at in range(0, len(data), STACKS_PIECE)] or [b""]
    kinds = [STACKS] * (len(pieces) - 1) + [STACKS_END]
    return [LOAD_HEAD.pack(k, len(p)) + p for k, p in zip(kinds, pieces, strict=True)]


def encode(kind: bytes, value: float = 0.0) -> bytes:
    return MESSAGE.pack(kind, value)


def encode_load(report: LoadReport) -> bytes:
    """A LOAD message; past MAX_WORKERS, the busiest workers are left out (the master looks
    for idle ones), and a name is cut to 255 bytes."""
    name = report.pool.encode("utf-8")[:255]
    workers = report.in_flight
    if len(workers) > MAX_WORKERS:
        workers = tuple(sorted(workers, key=lambda w: w[1])[:MAX_WORKERS])
    payload = b"".join(
        [
            NAME_LENGTH.pack(len(name)),
            name,
            FIGURES.pack(
                min(report.queued, 0xFFFFFFFF),
                report.oldest_wait,
                report.busy,
                report.most_busy,
                min(report.threads, 0xFFFFFFFF),
                report.window,
            ),
            COUNT.pack(len(workers)),
            *(WORKER.pack(pid, min(held, 0xFFFF)) for pid, held in workers),
        ]
    )
    return LOAD_HEAD.pack(LOAD, len(payload)) + payload


def decode_load(payload: bytes) -> LoadReport:
    """The report in a LOAD payload; ValueError when it is not one."""
    try:
        (size,) = NAME_LENGTH.unpack_from(payload)
        at = NAME_LENGTH.size + size
        name = payload[NAME_LENGTH.size : at].decode("utf-8")
        queued, oldest_wait, busy, most_busy, threads, window = FIGURES.unpack_from(payload, at)
        at += FIGURES.size
        (count,) = COUNT.unpack_from(payload, at)
        at += COUNT.size
        workers = tuple(WORKER.unpack_from(payload, at + i * WORKER.size) for i in range(count))
    except (struct.error, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed load report: {exc}") from None
    if at + count * WORKER.size != len(payload):
        raise ValueError("malformed load report: trailing bytes")
    return LoadReport(name, queued, oldest_wait, busy, most_busy, threads, window, workers)


def encode_metrics(figures: dict[str, Any]) -> bytes | None:
    """A METRICS message, or None when it would not fit one atomic write."""
    payload = json.dumps(figures, separators=(",", ":")).encode("utf-8")
    if LOAD_HEAD.size + len(payload) > PIPE_BUF:
        return None
    return LOAD_HEAD.pack(METRICS, len(payload)) + payload


def decode_metrics(payload: bytes) -> MetricsReport:
    """The figures in a METRICS payload; ValueError when it is not a JSON object."""
    try:
        figures = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"malformed metrics report: {exc}") from None
    if not isinstance(figures, dict):
        raise ValueError("malformed metrics report: not an object")
    return MetricsReport(figures)


# The kinds whose messages carry a payload after LOAD_HEAD, and how each is read.
DECODERS: dict[bytes, Callable[[bytes], LoadReport | MetricsReport | StacksPart]] = {
    LOAD: decode_load,
    METRICS: decode_metrics,
    STACKS: lambda payload: StacksPart(payload, last=False),
    STACKS_END: lambda payload: StacksPart(payload, last=True),
}


class StatusReader:
    """Splits what reads of a status pipe return into messages; keeps a partial tail."""

    __slots__ = ("_tail",)

    def __init__(self) -> None:
        self._tail = b""

    def feed(self, data: bytes) -> list[Message]:
        data = self._tail + data
        messages: list[Message] = []
        at = 0
        while True:
            decode = DECODERS.get(data[at : at + 1])
            if decode is not None:
                if len(data) - at < LOAD_HEAD.size:
                    break
                _, size = LOAD_HEAD.unpack_from(data, at)
                end = at + LOAD_HEAD.size + size
                if end > len(data):
                    break
                try:
                    messages.append(decode(data[at + LOAD_HEAD.size : end]))
                except ValueError as exc:  # dropped: the framing holds, the next one reads
                    log.warning("status pipe: %s", exc)
                at = end
            elif len(data) - at >= MESSAGE.size:
                messages.append(MESSAGE.unpack_from(data, at))
                at += MESSAGE.size
            else:
                break
        self._tail = data[at:]
        return messages
