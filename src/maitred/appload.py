"""Import the WSGI app named by an APP spec: `module:callable`, `module`, `module:factory()`."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable
from typing import Any

DEFAULT_CALLABLE = "application"
DEMO_APP = "maitred.demo.app:application"


class AppSpecError(ValueError):
    """The APP string itself is malformed (not an import failure)."""


def split_spec(spec: str) -> tuple[str, str, bool]:
    """(module, attribute, is_factory) of an APP spec."""
    module, _, attr = (spec or DEMO_APP).partition(":")
    attr = attr or DEFAULT_CALLABLE
    factory = attr.endswith("()")
    if factory:
        attr = attr[:-2]
    names = [*module.split("."), *attr.split(".")]
    if not all(name.isidentifier() for name in names):
        raise AppSpecError(f"invalid APP {spec!r}: expected module:callable")
    return module, attr, factory


def prepare_path(chdir: str, pythonpath: Iterable[str]) -> None:
    """Apply --chdir and --pythonpath the way the app expects to be imported."""
    if chdir:
        os.chdir(chdir)
    for entry in reversed(list(pythonpath)):
        sys.path.insert(0, os.path.abspath(entry))
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


def load_app(spec: str) -> Any:
    """Import and return the app; import errors propagate with their own traceback."""
    module_name, attr, factory = split_spec(spec)
    obj: Any = importlib.import_module(module_name)
    for name in attr.split("."):
        try:
            obj = getattr(obj, name)
        except AttributeError:
            raise AppSpecError(f"module {module_name!r} has no attribute {attr!r}") from None
    if factory:
        obj = obj()
    if not callable(obj):
        raise AppSpecError(f"{spec!r} is not callable")
    return obj
