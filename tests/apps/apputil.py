"""Small helpers shared by the fixture apps (not an app itself)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

Environ = dict[str, Any]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

# Apps that wait for something the test does (a gate file) give up after this long, so a broken
# server or test never leaves a worker thread blocked for the rest of the suite.
WAIT_LIMIT = 20.0
POLL_INTERVAL = 0.01


def query(environ: Environ) -> dict[str, str]:
    return dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))


def text_headers(
    body: bytes | None = None, content_type: str = "text/plain"
) -> list[tuple[str, str]]:
    """Content-Type, and Content-Length when the body is known up front."""
    headers = [("Content-Type", f"{content_type}; charset=utf-8")]
    if body is not None:
        headers.append(("Content-Length", str(len(body))))
    return headers


def record(path: str, event: str) -> None:
    """Append one line to a file the test reads (the app runs in another process)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(event + "\n")


def wait_for_file(path: str, limit: float = WAIT_LIMIT) -> bool:
    deadline = time.monotonic() + limit
    while not Path(path).exists():
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_INTERVAL)
    return True
