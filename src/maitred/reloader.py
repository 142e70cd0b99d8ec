"""--reload: watch the app's source and ask the master for a reload (SIGHUP) on a change.

A daemon thread in the master; the reload itself is the same as an operator's HUP, so a change
that breaks the import keeps the old workers serving.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import sys
import threading

from watchfiles import PythonFilter, watch

log = logging.getLogger("maitred.error")


def app_directory(module: str) -> str:
    """The directory holding the app's top-level package or module."""
    top = module.partition(".")[0]
    for entry in sys.path:
        base = os.path.join(entry or ".", top)
        if os.path.isdir(base) or os.path.isfile(base + ".py"):
            return os.path.abspath(entry or ".")
    spec = importlib.util.find_spec(top)
    origin = spec.origin if spec is not None else None
    return os.path.dirname(os.path.abspath(origin)) if origin else os.getcwd()


def start(directory: str, stop: threading.Event) -> threading.Thread:
    def run() -> None:
        for changes in watch(directory, watch_filter=PythonFilter(), stop_event=stop):
            names = sorted({os.path.relpath(path, directory) for _, path in changes})
            log.info("reload: %s changed", ", ".join(names))
            os.kill(os.getpid(), signal.SIGHUP)

    thread = threading.Thread(target=run, name="maitred-reload", daemon=True)
    thread.start()
    log.info("reload: watching %s", directory)
    return thread
