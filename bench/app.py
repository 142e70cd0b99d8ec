"""The one WSGI app every server in the benchmark runs.

Routes (all answers carry Content-Length, so every server can keep the connection alive):

  /hello            a few bytes: the cost of the server itself
  /slow?ms=N        sleeps N ms, like waiting on a database
  /cpu?ms=N         a pure-Python loop of fixed work, calibrated once by the harness to take about
                    N ms, so every server gets the same work (not the same wall time)
  /echo             reads the whole POST body and answers with its length
  /big?kb=N         N KiB of body
  /file/NAME        a file from the files directory, sent with wsgi.file_wrapper
  /django/...       a real Django view (template + sqlite query), see bench/djangoapp

The harness configures the app through the environment (read on the first request, never at
import): BENCH_FILES_DIR, BENCH_CPU_LOOPS_PER_MS, BENCH_DJANGO_DB.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

# The loop count per millisecond when the harness did not calibrate one (roughly right for a
# 2020s x86 core running CPython 3.11); the harness always passes its own measurement.
DEFAULT_LOOPS_PER_MS = 20_000
# Caps on query parameters, so a typo cannot make one request run for minutes or fill memory.
MAX_SLEEP_MS = 10_000
MAX_CPU_MS = 1_000
MAX_BIG_KB = 64 * 1024
# Read the request body in pieces of this size (what a real app's form parser would do).
READ_CHUNK = 64 * 1024
# Send files in blocks of this size when the server offers no wsgi.file_wrapper.
FILE_BLOCK = 64 * 1024
TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class AppSettings:
    files_dir: str
    loops_per_ms: int


@functools.cache
def settings() -> AppSettings:
    return AppSettings(
        files_dir=os.environ.get("BENCH_FILES_DIR", "."),
        loops_per_ms=int(os.environ.get("BENCH_CPU_LOOPS_PER_MS", DEFAULT_LOOPS_PER_MS)),
    )


def spin(loops: int) -> int:
    """Fixed pure-Python work; the harness times this same function to calibrate /cpu."""
    acc = 0
    for i in range(loops):
        acc = (acc + i * i) % 1_000_003
    return acc


def _int_arg(environ: Environ, name: str, default: int, cap: int) -> int:
    values = parse_qs(environ.get("QUERY_STRING", "")).get(name)
    try:
        value = int(values[0]) if values else default
    except ValueError:
        value = default
    return max(0, min(value, cap))


def _reply(start_response: StartResponse, body: bytes, status: str = "200 OK") -> list[bytes]:
    start_response(status, [("Content-Type", TEXT), ("Content-Length", str(len(body)))])
    return [body]


def hello(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    return _reply(start_response, b"Hello, world!\n")


def slow(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    ms = _int_arg(environ, "ms", 100, MAX_SLEEP_MS)
    time.sleep(ms / 1000)
    return _reply(start_response, b"slept %d ms\n" % ms)


def cpu(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    ms = _int_arg(environ, "ms", 5, MAX_CPU_MS)
    result = spin(ms * settings().loops_per_ms)
    return _reply(start_response, b"%d\n" % result)


def echo(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    stream = environ["wsgi.input"]
    remaining = int(environ.get("CONTENT_LENGTH") or 0)
    received = 0
    while remaining > 0:
        chunk = stream.read(min(READ_CHUNK, remaining))
        if not chunk:
            break
        received += len(chunk)
        remaining -= len(chunk)
    return _reply(start_response, b"%d\n" % received)


def big(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    kb = _int_arg(environ, "kb", 64, MAX_BIG_KB)
    return _reply(start_response, b"x" * (kb * 1024))


def file(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    # Only a bare name inside the files directory: never a path the client chose.
    name = os.path.basename(environ.get("PATH_INFO", ""))
    path = os.path.join(settings().files_dir, name)
    try:
        handle = open(path, "rb")  # noqa: SIM115 - the server closes it through the wrapper
    except OSError:
        return _reply(start_response, b"not found\n", "404 Not Found")
    size = os.fstat(handle.fileno()).st_size
    start_response(
        "200 OK",
        [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))],
    )
    wrapper = environ.get("wsgi.file_wrapper")
    if wrapper is not None:
        return wrapper(handle, FILE_BLOCK)  # type: ignore[no-any-return]
    return _iter_file(handle)


def _iter_file(handle: Any) -> Iterable[bytes]:
    with handle:
        while block := handle.read(FILE_BLOCK):
            yield block


class _LazyDjango:
    """Builds the Django handler on first use: Django is imported only if a test asks for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._app: WSGIApp | None = None

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    from bench.djangoapp.wsgi import make_application

                    self._app = make_application()
        return self._app(environ, start_response)


ROUTES: dict[str, WSGIApp] = {
    "/hello": hello,
    "/slow": slow,
    "/cpu": cpu,
    "/echo": echo,
    "/big": big,
}
PREFIX_ROUTES: dict[str, WSGIApp] = {
    "/file/": file,
    "/django/": _LazyDjango(),
}


def application(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    route = ROUTES.get(path)
    if route is not None:
        return route(environ, start_response)
    for prefix, prefixed in PREFIX_ROUTES.items():
        if path.startswith(prefix):
            return prefixed(environ, start_response)
    return _reply(start_response, b"not found\n", "404 Not Found")
