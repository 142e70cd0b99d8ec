"""--health-path: the readiness check the front answers itself.

A load balancer or Kubernetes asks the path every second or so; the answer must say whether to
send this server new clients (maitred.readiness), even when every app thread is busy, so the
front answers it at once, in the event loop, and it never reaches the dispatcher. GET and HEAD
get 200 or 503 with a one-word body (the state) and `Cache-Control: no-store`; other methods
get 405. The query string is ignored (probes add cache busters).

Checks are left out of the access log unless --log-health-checks: at a check a second per
balancer they would bury the lines of real requests.

Owned by the event loop thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from maitred.front.exchange import HEALTH
from maitred.http.framing import CONTENT_LENGTH, CRLF
from maitred.http.response import HEAD_STARTS, DateCache
from maitred.readiness import ReadinessState, answer

if TYPE_CHECKING:
    from maitred.front.exchange import Exchange

ALLOW = b"Allow: GET, HEAD\r\n"
FIELDS = b"Content-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\n"
NOT_ALLOWED = (405, b"method not allowed\n")


class HealthCheck:
    """Answers requests for one path from a process's readiness state."""

    def __init__(self, path: str, readiness: ReadinessState, date: DateCache, logged: bool) -> None:
        self.path = path.encode("latin-1")
        self.readiness = readiness
        self.date = date
        self.logged = logged  # --log-health-checks

    def matches(self, target: bytes) -> bool:
        path, _, _ = target.partition(b"?")
        return path == self.path

    def serve(self, exchange: Exchange) -> None:
        exchange.source = HEALTH
        method = exchange.head.method
        extra = b""
        if method == b"GET" or method == b"HEAD":
            status, body = answer(self.readiness.state)
        else:
            (status, body), extra = NOT_ALLOWED, ALLOW
        head = b"".join(
            (
                HEAD_STARTS[status],
                self.date.get(),
                CRLF,
                FIELDS,
                CONTENT_LENGTH % len(body),
                extra,
                exchange.extra_head,
            )
        )
        exchange.respond_full(status, len(body), head, body)

    def quiet(self, exchange: Exchange) -> bool:
        """Whether the access log leaves this exchange out (a check, unless they are logged)."""
        return not self.logged and exchange.source == HEALTH
