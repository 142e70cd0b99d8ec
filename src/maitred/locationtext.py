"""Locations as text: the TOML tables `maitred check` prints, and their keys' part of the docs.

Theory of operation
-------------------
Both are read from the one declaration of a location's keys (maitred.locations.KEYS: a field
of :class:`maitred.locations.Location` each, whose metadata holds its parser and its help), so a
new key shows in `maitred check` and in docs/settings.md without a line here. What is printed
reads back the same: values are written as TOML (a JSON string is a TOML basic string), and a
location that gives no allow or deny shows the server's, as they apply to it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from maitred.locations import KEYS, Location, ordered


def render(
    locations: Sequence[Location], server: tuple[str, ...], deny: tuple[str, ...]
) -> list[str]:
    """The locations one app's requests consult, as TOML tables in the order they are
    consulted; allow and deny as they apply (the server's when the location gives none)."""
    lines: list[str] = []
    for loc in ordered(locations):
        array = f"apps.{loc.app}.locations" if loc.app else "locations"
        lines += ["", f"[[{array}]]  # {loc.origin}", f"path = {_toml(loc.shown_path)}"]
        for name, f in KEYS.items():
            value = getattr(loc, f.name)
            if name == "allow" and value is None:
                value = server
            elif name == "deny" and value is None:
                value = deny
            if value != f.default and value not in (None, ()):
                lines.append(f"{name} = {_toml(value)}")
    return lines


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, tuple) and value and isinstance(value[0], tuple):
        return "{ " + ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in value) + " }"
    if isinstance(value, tuple):
        return "[" + ", ".join(json.dumps(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a TOML basic string


def keys_markdown() -> list[str]:
    """The keys of a location, for docs/settings.md (maitred.config.settings_markdown)."""
    lines = [
        "",
        "## Keys of a location",
        "",
        "`[[locations]]` tables (the whole server's) and `[[apps.NAME.locations]]` tables (one "
        "app's) hold rules per URL path (see the README's \"From nginx location blocks\"): "
        '`path` ("/prefix/", matched on a segment boundary, or "= /exact") and the keys below. '
        "The longest matching prefix wins, an exact path beats every prefix, and on the same "
        "path an app's location replaces the server's. A HUP reads them again and replaces the "
        "fronts.",
    ]
    for name, f in KEYS.items():
        default = f.default
        shown = "not set" if default is None else "empty" if default in ((), "") else _toml(default)
        lines += [
            "",
            f"### `{name}`",
            "",
            f.metadata["help"],
            "",
            f"- type: {(f.metadata['parse'].__doc__ or 'value').strip()}",
            f"- default: {shown}",
        ]
    return lines
