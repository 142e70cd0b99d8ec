"""The error log: one format for every process, each line naming its pid."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S %z"


def reopen() -> None:
    """USR1: reopen the error log's files (after logrotate moved them)."""
    for handler in logging.getLogger("maitred").handlers:
        if isinstance(handler, logging.FileHandler):
            handler.acquire()
            try:
                handler.close()
                handler.stream = handler._open()
                _capture_stderr(handler.stream)
            finally:
                handler.release()


def setup(level: str, path: str = "-") -> None:
    """Log to stderr, or to the file `path` (--error-logfile); children inherit it."""
    handler: logging.StreamHandler[Any]
    if path == "-":
        handler = logging.StreamHandler(sys.stderr)
    else:
        handler = logging.FileHandler(path, encoding="utf-8")
        _capture_stderr(handler.stream)
    handler.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
    logger = logging.getLogger("maitred")
    logger.handlers[:] = [handler]
    logger.propagate = False
    set_level(level)


def set_level(level: str) -> None:
    """--log-level, for this process and the ones it forks from now on (a HUP)."""
    logging.getLogger("maitred").setLevel(level.upper())


def _capture_stderr(stream: Any) -> None:
    """Point fd 2 at the log file: tracebacks and whatever the app prints to stderr (and its
    wsgi.errors) belong in the error log too."""
    sys.stderr.flush()
    os.dup2(stream.fileno(), 2)
