"""--warmup: a new worker serves GET PATH to itself before it takes a client's request.

Theory of operation
-------------------
Frameworks import lazily: Django resolves its URLconf, loads templates and opens its database
on the first request, so the first client of every new worker waits for what the import did
not do. A worker started with --warmup PATH calls the app with a synthetic GET PATH first, in
its main thread, before its link to the front exists: no client can be sent to it until this
is over, and READY (which makes it count in its pool, maitred.pool) follows it.

The request is what a client on this machine would send: GET, HTTP/1.1, `Host` the app's first
host name that is no wildcard (maitred.apps; localhost if none), from 127.0.0.1, with
`maitred.warmup` set in the environ for an app that wants to tell it apart. The response is
read whole and dropped. A warm-up that fails (an error status, an exception) is logged with
its status and the worker joins all the same: a warm-up must never take a site down.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from maitred import link
from maitred.worker.environ import EnvironBuilder
from maitred.worker.wsgi import WSGIApp

log = logging.getLogger("maitred.error")

HOST = "localhost"  # the Host of a warm-up request while a pool has no host names of its own
FAILED = 500  # the status logged for a warm-up whose app raised


def warm_up(
    app: WSGIApp, builder: EnvironBuilder, paths: Iterable[str], who: str, host: str = HOST
) -> None:
    """Serve each of `paths` to the app once, as `host`; `who` names the worker in the log."""
    for path in paths:
        started = time.monotonic()
        status = _serve(app, builder.build(_request(path, host)))
        took = (time.monotonic() - started) * 1000
        if 200 <= status < 400:
            log.info("%s: warm-up GET %s: %d in %.0f ms", who, path, status, took)
        else:
            log.warning(
                "%s: warm-up GET %s failed: %d in %.0f ms; serving all the same",
                who,
                path,
                status,
                took,
            )


def _request(path: str, host: str) -> link.Request:
    return link.Request(
        method=b"GET",
        target=path.encode("latin-1"),
        version="1.1",
        headers=[(b"Host", host.encode("idna")), (b"User-Agent", b"maitred-warmup")],
        body=b"",
        spooled=False,
        remote_addr="127.0.0.1",
        remote_port="0",
        server_name=host,
        server_port="80",
        url_scheme="http",
        queue_time=0.0,
        request_id="warmup",
        script_name="",  # the app's --root-path and prefix
    )


def _serve(app: WSGIApp, environ: dict[str, Any]) -> int:
    """Call the app as a server would, drop the body; the status (FAILED if it raised)."""
    environ["maitred.warmup"] = True
    status = [FAILED]

    def start_response(line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        status[0] = int(line[:3])
        return lambda data: None

    try:
        result = app(environ, start_response)
        try:
            for _ in result:
                pass
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
    except Exception:
        log.warning("warm-up GET %s raised:", environ["RAW_URI"], exc_info=True)
        return FAILED
    finally:
        environ["wsgi.input"].close()
    return status[0]
