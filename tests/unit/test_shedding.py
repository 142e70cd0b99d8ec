"""The dispatcher's bounded queue (max-queue, queue-timeout), with fake workers and a fake clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from maitred.front.dispatcher import Dispatcher
from maitred.front.states import ExchangeState
from maitred.http.errors import RETRY_AFTER


class FakeLoop:
    def __init__(self) -> None:
        self.now = 0.0

    def time(self) -> float:
        return self.now


@dataclass(eq=False)
class FakeExchange:
    complete: float = 0.0
    state: ExchangeState = ExchangeState.ROUTED
    answered: list[tuple[int, bytes]] = field(default_factory=list)

    def respond_error(self, status: int, extra: bytes = b"") -> None:
        self.answered.append((status, extra))


@dataclass(eq=False)
class FakeWorker:
    threads: int
    draining: bool = False
    exchanges: dict[int, Any] = field(default_factory=dict)

    def start(self, exchange: FakeExchange) -> None:
        self.exchanges[len(self.exchanges) + 1] = exchange

    def finish_one(self) -> None:
        self.exchanges.popitem()


def dispatcher(threads: int = 1, **limits: Any) -> tuple[Dispatcher, FakeWorker, FakeLoop]:
    loop = FakeLoop()
    d = Dispatcher(cast(Any, loop), **limits)
    worker = FakeWorker(threads)
    d.workers.append(cast(Any, worker))
    return d, worker, loop


def submit(d: Dispatcher, exchange: FakeExchange) -> FakeExchange:
    d.submit(cast(Any, exchange))
    return exchange


def test_past_max_queue_requests_get_503_with_retry_after_at_once() -> None:
    d, worker, _ = dispatcher(threads=2, max_queue=10)
    running = [submit(d, FakeExchange()) for _ in range(2)]
    queued = [submit(d, FakeExchange()) for _ in range(10)]
    shed = [submit(d, FakeExchange()) for _ in range(5)]
    assert list(worker.exchanges.values()) == running
    assert list(d.queue) == queued and not any(e.answered for e in queued)
    assert all(e.answered == [(503, RETRY_AFTER)] for e in shed)
    assert d.shed == 5


def test_unbounded_queue_by_default() -> None:
    d, _, _ = dispatcher()
    for _ in range(5000):
        submit(d, FakeExchange())
    assert len(d.queue) == 4999 and d.shed == 0


def test_a_request_queued_too_long_is_answered_503_instead_of_run() -> None:
    d, worker, loop = dispatcher(queue_timeout=30.0)
    submit(d, FakeExchange())
    old = submit(d, FakeExchange(complete=0.0))
    loop.now = 31.0
    fresh = submit(d, FakeExchange(complete=30.0))
    worker.finish_one()
    d.pump()
    assert old.answered == [(503, RETRY_AFTER)]
    assert list(worker.exchanges.values()) == [fresh] and not fresh.answered


def test_the_sweep_answers_expired_requests_without_a_free_thread() -> None:
    d, _, _ = dispatcher(queue_timeout=30.0)
    submit(d, FakeExchange())
    old, young = submit(d, FakeExchange(complete=0.0)), submit(d, FakeExchange(complete=20.0))
    gone = submit(d, FakeExchange(complete=0.0, state=ExchangeState.DONE))
    d.expire_queued(now=31.0)
    assert old.answered == [(503, RETRY_AFTER)] and not gone.answered
    assert list(d.queue) == [young]
