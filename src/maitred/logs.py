"""The error log: one format for every process, each line naming its pid."""

from __future__ import annotations

import logging
import sys

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
            finally:
                handler.release()


def setup(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
    logger = logging.getLogger("maitred")
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False
