"""Readiness (maitred.readiness) and the front's --health-path answers (maitred.front.health)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from maitred.front.exchange import APP
from maitred.front.health import HealthCheck
from maitred.http.response import DateCache
from maitred.readiness import Readiness, ReadinessState, answer


class Answers:
    """Stands in for an exchange: what the front answered it."""

    def __init__(self, method: bytes, target: bytes) -> None:
        self.source = APP
        self.head = SimpleNamespace(method=method, target=target)
        self.extra_head = b"X-Request-ID: abc\r\n"
        self.answers: list[tuple[int, int, bytes, bytes]] = []

    def respond_full(self, status: int, length: int, head: bytes, body: bytes) -> None:
        self.answers.append((status, length, head, body))


def check(workers: list[bool], logged: bool = False) -> tuple[HealthCheck, ReadinessState]:
    readiness = ReadinessState(lambda: bool(workers))
    return HealthCheck("/readyz", readiness, DateCache(), logged), readiness


def ask(health: HealthCheck, method: bytes = b"GET", target: bytes = b"/readyz") -> Any:
    exchange = Answers(method, target)
    health.serve(exchange)  # type: ignore[arg-type]
    [(status, length, head, body)] = exchange.answers
    assert length == len(body)
    return status, head, body


def test_starting_until_a_worker_is_ready_then_ready_then_draining_for_good() -> None:
    workers: list[bool] = []
    readiness = ReadinessState(lambda: bool(workers))
    assert readiness.state is Readiness.STARTING
    workers.append(True)
    assert readiness.state is Readiness.READY
    readiness.drain()
    assert readiness.state is Readiness.DRAINING
    workers.append(True)
    assert readiness.state is Readiness.DRAINING
    assert answer(Readiness.READY) == (200, b"ready\n")
    assert answer(Readiness.STARTING)[0] == answer(Readiness.DRAINING)[0] == 503


def test_the_check_answers_the_state_uncached_with_the_request_id() -> None:
    workers: list[bool] = []
    health, readiness = check(workers)
    status, head, body = ask(health)
    assert (status, body) == (503, b"starting\n")
    workers.append(True)
    status, head, body = ask(health, target=b"/readyz?probe=1")
    assert (status, body) == (200, b"ready\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Cache-Control: no-store\r\n" in head and b"X-Request-ID: abc\r\n" in head
    assert b"Content-Length: 6\r\n" in head
    readiness.drain()
    assert ask(health, b"HEAD")[0] == 503


def test_other_methods_get_405_and_other_paths_are_not_the_check() -> None:
    health, _ = check([True])
    status, head, _ = ask(health, b"POST")
    assert status == 405 and b"Allow: GET, HEAD\r\n" in head
    assert health.matches(b"/readyz?x") and health.matches(b"/readyz")
    assert not health.matches(b"/readyz/") and not health.matches(b"/readyzz")


def test_checks_stay_out_of_the_access_log_unless_asked() -> None:
    quiet, _ = check([True])
    assert quiet.quiet(answered(quiet, b"/readyz?x"))
    assert not quiet.quiet(Answers(b"GET", b"/other"))  # type: ignore[arg-type]
    logged, _ = check([True], logged=True)
    assert not logged.quiet(answered(logged, b"/readyz"))


def answered(health: HealthCheck, target: bytes) -> Any:
    """An exchange the check has answered."""
    exchange = Answers(b"GET", target)
    health.serve(exchange)  # type: ignore[arg-type]
    return exchange
