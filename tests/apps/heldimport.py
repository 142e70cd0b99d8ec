"""An app whose import waits while the file named by $HOLD_FILE exists (at most 20 s), so a test
decides when a worker has imported it; it answers with the NOTIFY_SOCKET it sees (`none`)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

from apputil import WAIT_LIMIT, Environ, StartResponse, text_headers

_deadline = time.monotonic() + WAIT_LIMIT
while os.path.exists(os.environ.get("HOLD_FILE", "")) and time.monotonic() < _deadline:
    time.sleep(0.05)


def application(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    body = os.environ.get("NOTIFY_SOCKET", "none").encode()
    start_response("200 OK", text_headers(body))
    return [body]
