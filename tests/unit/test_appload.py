"""Loading the app: what counts as a WSGI callable, and the traceback a failed import shows."""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from maitred.appload import AppLoadError, load_app, not_wsgi, prepare_path, virtualenv_site


def wsgi(environ: Any, start_response: Any) -> list[bytes]:
    return []


def with_extra(environ: Any, start_response: Any, extra: Any = None) -> list[bytes]:
    return []


class WSGIClass:  # the class itself is the app: calling it builds the response iterable
    def __init__(self, environ: Any, start_response: Any) -> None:
        pass


class WSGIObject:  # Flask, Django's WSGIHandler
    def __call__(self, environ: Any, start_response: Any) -> list[bytes]:
        return []


class Middleware:
    def __call__(self, *args: Any, **kwargs: Any) -> list[bytes]:
        return []


async def asgi(scope: Any, receive: Any, send: Any) -> None:
    pass


class ASGIObject:
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        pass


def three(scope: Any, receive: Any, send: Any) -> None:
    pass


def one(scope: Any) -> None:
    pass


@pytest.mark.parametrize(
    "app",
    [
        wsgi,
        with_extra,
        WSGIClass,
        WSGIObject(),
        Middleware(),
        WSGIObject().__call__,
        functools.partial(with_extra, extra=1),
    ],
)
def test_wsgi_callables_pass(app: Any) -> None:
    assert not_wsgi(app) == ""


@pytest.mark.parametrize("app", [asgi, ASGIObject(), functools.partial(asgi), three])
def test_asgi_apps_are_named_as_such(app: Any) -> None:
    assert not_wsgi(app).endswith("maitred runs WSGI apps, not ASGI")


def test_other_mismatches_say_what_the_callable_takes() -> None:
    assert not_wsgi(one) == "it takes (scope), not a WSGI app's (environ, start_response)"
    assert not_wsgi(42) == "int object is not callable"


@pytest.fixture
def app_dir(tmp_path: Path) -> Iterator[Path]:
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in ("chained", "viafactory"):
        sys.modules.pop(name, None)


def test_a_chained_error_keeps_both_parts_of_the_apps_traceback(app_dir: Path) -> None:
    (app_dir / "chained.py").write_text(
        "try:\n    import nosuchdependency\n"
        "except ImportError as exc:\n    raise RuntimeError('install it') from exc\n"
    )
    with pytest.raises(AppLoadError) as info:
        load_app("chained:app")
    assert info.value.message == "cannot import app 'chained:app': RuntimeError: install it"
    details = info.value.details
    assert "No module named 'nosuchdependency'" in details and "direct cause" in details
    assert details.count('chained.py", line') == 2 and "importlib" not in details


def test_a_factory_that_raises_is_named(app_dir: Path) -> None:
    (app_dir / "viafactory.py").write_text("def create():\n    raise KeyError('DATABASE_URL')\n")
    with pytest.raises(AppLoadError) as info:
        load_app("viafactory:create()")
    message = "cannot load app 'viafactory:create()': its factory raised KeyError: 'DATABASE_URL'"
    assert info.value.message == message
    assert 'viafactory.py", line 2, in create' in info.value.details


def make_virtualenv(root: Path) -> Path:
    """A virtualenv's layout for this Python, with one module and a .pth file in it."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = root / "lib" / version / "site-packages"
    (site / "extra").mkdir(parents=True)
    (site / "venvonly.py").write_text("WHERE = 'venv'\n")
    (site / "extra.pth").write_text("extra\n")
    return site


def test_a_virtualenv_site_packages_goes_in_front_of_sys_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = make_virtualenv(tmp_path / "venv")
    monkeypatch.chdir(tmp_path)  # prepare_path changes directory; this one is put back
    monkeypatch.setattr(sys, "path", list(sys.path))
    prepare_path(str(tmp_path), [], "venv")  # relative to the app's directory
    assert sys.path[:2] == [str(tmp_path), str(site)]  # the app's directory first, as always
    assert str(site / "extra") in sys.path  # its .pth files are read
    try:
        assert importlib.import_module("venvonly").WHERE == "venv"
    finally:
        sys.modules.pop("venvonly", None)


def test_a_virtualenv_without_site_packages_for_this_python_is_one_clear_error(
    tmp_path: Path,
) -> None:
    with pytest.raises(AppLoadError, match=r"virtualenv '.*nowhere' has no lib/python3\.\d+/"):
        virtualenv_site(str(tmp_path / "nowhere"))
