"""Import the WSGI app named by an APP spec: `module:callable`, `module`, `module:factory()`.

Theory of operation
-------------------
Whatever stops the app from loading (its module is missing, it has no such attribute, its code
raises while being imported, its factory raises, or what it names is not a WSGI callable) comes
out as one :class:`AppLoadError`: a one-line message that names the app and the cause, and the
app's own traceback. The frames of maitred and of importlib are cut from that traceback: they
are the same for every app and only bury the line of the user's code that failed.

An ASGI app (``async def app(scope, receive, send)``) is refused here, at start, rather than
answered with a 500 on every request: maitred calls ``app(environ, start_response)``.
"""

from __future__ import annotations

import importlib
import inspect
import os
import site
import sys
import traceback
from collections.abc import Iterable
from typing import Any

DEFAULT_CALLABLE = "application"
DEMO_APP = "maitred.demo.app:application"
# Frames from these files are maitred's or the import machinery's, never the app's.
_OWN_DIRS = tuple(
    os.path.dirname(os.path.abspath(path)) + os.sep for path in (__file__, importlib.__file__)
)
_FROZEN_IMPORTLIB = "<frozen importlib."
WSGI_ARGS = ("environ", "start_response")
ASGI_ARITY = 3  # scope, receive, send


class AppSpecError(ValueError):
    """The APP string itself is malformed (not an import failure)."""


class AppLoadError(Exception):
    """The app cannot be served: `message` says why in one line, `details` is the app's own
    part of the traceback (may be empty)."""

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def report(self) -> str:
        """What to print: the line, then the app's frames."""
        return f"maitred: {self.message}\n{self.details}"


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


def prepare_path(chdir: str, pythonpath: Iterable[str], virtualenv: str = "") -> None:
    """Apply --chdir, --pythonpath and --virtualenv the way the app expects to be imported.

    AppLoadError when the directory cannot be entered or the virtualenv has no
    site-packages."""
    if chdir:
        try:
            os.chdir(chdir)
        except OSError as exc:
            raise AppLoadError(f"cannot change to directory {chdir!r}: {exc.strerror}") from None
    if virtualenv:
        site_packages = virtualenv_site(virtualenv)
        sys.path.insert(0, site_packages)
        site.addsitedir(site_packages)  # its .pth files (editable installs), at its place
    for entry in reversed(list(pythonpath)):
        sys.path.insert(0, os.path.abspath(entry))
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


def virtualenv_site(virtualenv: str) -> str:
    """The site-packages of a virtual environment for this Python's version; AppLoadError
    when it has none (made by another Python, or no virtualenv at all)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    path = os.path.join(os.path.abspath(virtualenv), "lib", version, "site-packages")
    if not os.path.isdir(path):
        raise AppLoadError(
            f"virtualenv {virtualenv!r} has no lib/{version}/site-packages: make it with the "
            f"Python that runs maitred ({sys.executable})"
        )
    return path


def load_app(spec: str) -> Any:
    """Import and return the app, checked to be a WSGI callable; AppLoadError if it cannot be."""
    module_name, attr, factory = split_spec(spec)
    shown = repr(spec or DEMO_APP)
    try:
        obj: Any = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:  # whatever the app's code raised
        raise AppLoadError(f"cannot import app {shown}: {_cause(exc)}", app_traceback(exc)) from exc
    for name in attr.split("."):
        try:
            obj = getattr(obj, name)
        except AttributeError:
            cause = f"module {module_name!r} has no attribute {attr!r}"
            raise AppLoadError(f"cannot import app {shown}: {cause}") from None
    if factory:
        try:
            obj = obj()
        except (Exception, SystemExit) as exc:
            cause = f"its factory raised {_cause(exc, with_type=True)}"
            raise AppLoadError(f"cannot load app {shown}: {cause}", app_traceback(exc)) from exc
    problem = not_wsgi(obj)
    if problem:
        raise AppLoadError(f"cannot serve app {shown}: {problem}")
    return obj


def not_wsgi(obj: Any) -> str:
    """Why `obj` cannot be called as app(environ, start_response); empty if it can."""
    if not callable(obj):
        return f"{type(obj).__name__} object is not callable"
    call = None if isinstance(obj, type) or inspect.isroutine(obj) else type(obj).__call__
    if inspect.iscoroutinefunction(obj) or inspect.iscoroutinefunction(call):
        return "it is an ASGI app (async def); maitred runs WSGI apps, not ASGI"
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):  # a builtin or extension callable: nothing to read
        return ""
    try:
        signature.bind(*WSGI_ARGS)
    except TypeError:
        takes = _parameters(signature)
        if _binds(signature, ASGI_ARITY):
            return (
                f"it takes {takes}, as an ASGI app takes (scope, receive, send); "
                "maitred runs WSGI apps, not ASGI"
            )
        return f"it takes {takes}, not a WSGI app's (environ, start_response)"
    return ""


def _parameters(signature: inspect.Signature) -> str:
    """(a, b, *args): the names only, which say more than annotations here."""
    stars: dict[inspect._ParameterKind, str] = {
        inspect.Parameter.VAR_POSITIONAL: "*",
        inspect.Parameter.VAR_KEYWORD: "**",
    }
    names = (stars.get(p.kind, "") + p.name for p in signature.parameters.values())
    return "(" + ", ".join(names) + ")"


def _binds(signature: inspect.Signature, count: int) -> bool:
    try:
        signature.bind(*range(count))
    except TypeError:
        return False
    return True


def _cause(exc: BaseException, with_type: bool = False) -> str:
    """The exception in one line: an ImportError's message says it all, others need their
    type to make sense (`ZeroDivisionError: division by zero`)."""
    text = str(exc)
    if isinstance(exc, ImportError) and text and not with_type:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def app_traceback(exc: BaseException) -> str:
    """The traceback of `exc` without maitred's and importlib's frames; empty when nothing
    of the app's is left but the message already printed."""
    te = traceback.TracebackException.from_exception(exc)
    frames = 0
    seen: set[int] = set()
    chain: list[traceback.TracebackException | None] = [te]
    while chain:
        current = chain.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        kept = [f for f in current.stack if _is_apps(f.filename)]
        current.stack = traceback.StackSummary.from_list(kept)
        frames += len(kept)
        chain += [current.__cause__, current.__context__]
    if not frames and not isinstance(exc, SyntaxError):  # a SyntaxError shows its own line
        return ""
    return "".join(te.format())


def _is_apps(filename: str) -> bool:
    if filename.startswith(_FROZEN_IMPORTLIB):
        return False
    return not os.path.abspath(filename).startswith(_OWN_DIRS)
