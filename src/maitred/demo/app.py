"""A small WSGI app that shows maitred at work: run `maitred` and open http://127.0.0.1:8000/.

/            the request as the app sees it (the PEP 3333 environ)
/slow?s=2    holds a worker thread for s seconds, like a slow database query
/stream      a response streamed chunk by chunk as the app produces it
"""

from __future__ import annotations

import html
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs

StartResponse = Callable[..., Any]

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>maitred</title>
<style>body{{font:15px/1.5 system-ui,sans-serif;max-width:52em;margin:2em auto;padding:0 1em}}
td{{padding:.1em .8em;vertical-align:top;font-family:monospace}}</style></head>
<body><h1>maitred is serving</h1>
<p>Worker pid {pid}, thread {thread}. Try <a href="slow?s=2">a slow request</a> (open several
at once: each holds one worker thread, the rest wait in the front) or
<a href="stream">a streamed response</a>.</p>
<h2>This request, as the app sees it</h2><table>{rows}</table></body></html>
"""


def _seconds(environ: dict[str, Any], default: float) -> float:
    values = parse_qs(environ.get("QUERY_STRING", "")).get("s", [])
    try:
        return min(max(float(values[0]), 0.0), 30.0) if values else default
    except ValueError:
        return default


def _index(environ: dict[str, Any]) -> bytes:
    rows = "".join(
        f"<tr><td>{html.escape(key)}</td><td>{html.escape(repr(value))}</td></tr>"
        for key, value in sorted(environ.items())
    )
    page = PAGE.format(pid=os.getpid(), thread=threading.get_ident(), rows=rows)
    return page.encode("utf-8")


def _stream() -> Iterator[bytes]:
    for n in range(1, 11):
        yield f"chunk {n} of 10 at {time.strftime('%H:%M:%S')}\n".encode()
        time.sleep(0.3)


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    text = [("Content-Type", "text/plain; charset=utf-8")]
    if path == "/":
        body = _index(environ)
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [body]
    if path == "/slow":
        seconds = _seconds(environ, 1.0)
        time.sleep(seconds)
        start_response("200 OK", text)
        return [f"slept {seconds:g} s in worker {os.getpid()}\n".encode()]
    if path == "/stream":
        start_response("200 OK", text)
        return _stream()
    start_response("404 Not Found", text)
    return [b"not found\n"]
