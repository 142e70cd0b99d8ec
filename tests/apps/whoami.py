"""Says which app and worker answered: its WHOAMI variable, SCRIPT_NAME, PATH_INFO, pid,
directory and sys.path.

Several apps in one server (maitred.apps) each run this with their own ``WHOAMI`` in their
``env``, so a test sees which app took a request and how its path was split.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable

from apputil import Environ, StartResponse, text_headers


def application(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    body = json.dumps(
        {
            "app": os.environ.get("WHOAMI", ""),
            "script_name": environ["SCRIPT_NAME"],
            "path_info": environ["PATH_INFO"],
            "pid": os.getpid(),
            "cwd": os.getcwd(),
            "sys_path": sys.path,
        }
    ).encode()
    start_response("200 OK", text_headers(body, "application/json"))
    return [body]
