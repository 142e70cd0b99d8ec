"""An app whose module raises while being imported: the server must stop with one clear line
and this file's frames (not maitred's or importlib's)."""

from __future__ import annotations


def configure() -> None:
    raise RuntimeError("the settings module is missing a key")


configure()
