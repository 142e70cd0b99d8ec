"""A bounded background load for supervisor tests: client threads sending requests to loopback.

Every request uses a fresh connection (no keep-alive), so a result is about the request alone,
never about a pooled connection that a stopping server closed. Stops at `duration` seconds or
`limit` requests sent, whichever comes first. For "these N requests", give N as `limit` and a
duration of seconds, not a fraction: a client thread on a loaded machine may start later than
a tenth of a second, and would then send nothing.
"""

from __future__ import annotations

import collections
import http.client
import threading
import time
from collections.abc import Callable

from harness import wait_until

REQUEST_TIMEOUT = 20.0


class Load:
    def __init__(
        self,
        port: int,
        path: str | Callable[[], str],
        clients: int = 4,
        duration: float = 10.0,
        limit: int = 5000,
    ) -> None:
        self.port = port
        self.path = path if callable(path) else (lambda: path)
        self.duration = duration
        self.limit = limit
        self.results: list[tuple[int | str, bytes]] = []  # (status or exception name, body)
        self._lock = threading.Lock()
        self._running = 0  # requests sent whose answer (or failure) is not in yet
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def __enter__(self) -> Load:
        self._deadline = time.monotonic() + self.duration
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def finish(self) -> Load:
        """Wait for the load to end by itself (its duration or its limit)."""
        for thread in self._threads:
            thread.join(self.duration + REQUEST_TIMEOUT + 5)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(REQUEST_TIMEOUT + 5)

    def _run(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            with self._lock:
                if len(self.results) + self._running >= self.limit:
                    return  # `limit` requests sent: a load of N clients and limit N sends N
                self._running += 1
            result = self._one()
            with self._lock:
                self.results.append(result)
                self._running -= 1

    def _one(self) -> tuple[int | str, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT)
        try:
            conn.request("GET", self.path(), headers={"Connection": "close"})
            response = conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            return type(exc).__name__, b""
        finally:
            conn.close()

    def wait_for(self, count: int, timeout: float = 15.0) -> None:
        """Until at least `count` results are in."""
        wait_until(lambda: len(self.results) >= count, timeout, f"{count} answers")

    def in_flight(self) -> int:
        """Requests sent (or about to be) and not yet answered, at this moment."""
        with self._lock:
            return self._running

    @property
    def outcomes(self) -> collections.Counter[int | str]:
        with self._lock:
            return collections.Counter(status for status, _ in self.results)

    def failures(self) -> list[int | str]:
        with self._lock:
            return [status for status, _ in self.results if status != 200]
