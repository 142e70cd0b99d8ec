"""An app for the response cache: counts its calls, says what the query asks of its headers.

Each call appends its target to ``calls`` in the directory named by CACHE_APP_DIR, so a test
counts the requests that reached the app. The query sets the response: ``cc`` its
Cache-Control, ``cdn`` its CDN-Cache-Control, ``tag`` its Cache-Tag, ``vary`` its Vary,
``etag`` and ``lm`` its ETag and Last-Modified, ``cookie`` a Set-Cookie, ``sleep`` seconds
to take first, ``pad`` random bytes added to the body. While a file ``fail`` exists in that
directory the app answers 500 (streamed in pieces with ``stream``); while ``die`` exists
its worker exits, while ``hang`` exists it takes HANG seconds. The body names the call,
so a test tells answers apart. A request whose If-None-Match is the ``etag`` asked for, or
whose If-Modified-Since is the ``lm``, is answered 304 (its conditions recorded in
``conditions``), unless a file ``changed`` exists: then the page is new each time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

from apputil import Environ, StartResponse, query, record, text_headers

HANG = 5.0  # seconds a call takes while a file ``hang`` exists
HEADERS = {
    "cc": "Cache-Control",
    "cdn": "CDN-Cache-Control",
    "tag": "Cache-Tag",
    "vary": "Vary",
    "etag": "ETag",
    "lm": "Last-Modified",
}


def calls(directory: Path) -> list[str]:
    path = directory / "calls"
    return path.read_text().splitlines() if path.exists() else []


def application(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    directory = Path(os.environ["CACHE_APP_DIR"])
    asked = query(environ)
    target = environ["PATH_INFO"] + "?" + environ["QUERY_STRING"]
    record(str(directory / "calls"), target)
    if "sleep" in asked:
        time.sleep(float(asked["sleep"]))
    if (directory / "die").exists():
        os._exit(1)  # the worker dies mid-request: the front answers 502
    if (directory / "hang").exists():
        time.sleep(HANG)  # past the server's --timeout: the front answers 504
    if (directory / "fail").exists():
        if "stream" in asked:  # no length: the head, then the body in pieces
            start_response("500 Internal Server Error", text_headers())
            return (b"failed %d\n" % i for i in range(1000))
        body = b"failed\n"
        start_response("500 Internal Server Error", text_headers(body))
        return [body]
    if not_modified(environ, asked) and not (directory / "changed").exists():
        record(str(directory / "conditions"), conditions(environ))
        validators = [(name, asked[key]) for key, name in HEADERS.items() if key in asked]
        start_response("304 Not Modified", validators)
        return [b""]
    body = f"call {len(calls(directory))} {target} {environ.get('HTTP_COOKIE', '')}\n".encode()
    body += os.urandom(int(asked.get("pad", "0")))
    headers = text_headers(body)
    headers += [(name, asked[key]) for key, name in HEADERS.items() if key in asked]
    if "cookie" in asked:
        headers.append(("Set-Cookie", asked["cookie"]))
    start_response("200 OK", headers)
    return [body]


def conditions(environ: Environ) -> str:
    return f"{environ.get('HTTP_IF_NONE_MATCH', '')}|{environ.get('HTTP_IF_MODIFIED_SINCE', '')}"


def not_modified(environ: Environ, asked: dict[str, str]) -> bool:
    etag, modified = asked.get("etag"), asked.get("lm")
    return bool(
        (etag and environ.get("HTTP_IF_NONE_MATCH") == etag)
        or (modified and environ.get("HTTP_IF_MODIFIED_SINCE") == modified)
    )
