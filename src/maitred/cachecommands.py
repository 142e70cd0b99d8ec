"""`maitred ctl cache purge ...`: the master's side of purging the fronts' response caches.

The control socket's `cache` command reads its words here: ``purge`` then one of ``--url U``
(a path and query, or a whole URL with scheme and host), ``--prefix P`` (a path prefix) or
``--tag T`` (a Cache-Tag or Surrogate-Key value), and optionally ``--app NAME`` to purge one
app only. The master sends the purge to every front with a response cache
(maitred.frontset.FrontSet.purge_cache, over maitred.frontapps) and answers how many it
reached; each front logs how many entries it dropped. Purges are not remembered: a front that
starts later starts empty anyway.

Owned by the master's loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from maitred.control import Command, CommandError, Commands
from maitred.frontapps import PURGE_KINDS, Purge

if TYPE_CHECKING:
    from maitred.arbiter import Arbiter

USAGE = "purge (--url URL | --prefix PATH | --tag TAG) [--app NAME]"
SUMMARY = "drop stored responses from the response cache of every front"


class PurgeError(ValueError):
    """The words do not make a purge; the text says why, for the client."""


def parse(args: tuple[str, ...]) -> Purge:
    """The purge `args` ask for (after the command name `cache`)."""
    if not args or args[0] != "purge":
        raise PurgeError(f"usage: cache {USAGE}")
    options: dict[str, str] = {}
    words = list(args[1:])
    while words:
        flag = words.pop(0)
        name = flag.removeprefix("--")
        if flag == name or name not in (*PURGE_KINDS, "app") or not words:
            raise PurgeError(f"usage: cache {USAGE}")
        if name in options:
            raise PurgeError(f"--{name} given twice")
        options[name] = words.pop(0)
    kinds = [kind for kind in PURGE_KINDS if kind in options]
    if len(kinds) != 1 or not options[kinds[0]]:
        raise PurgeError("give exactly one of --url, --prefix, --tag, with a value")
    return Purge(kinds[0], options[kinds[0]], options.get("app", ""))


def register(commands: Commands, arbiter: Arbiter) -> None:
    """Add `cache` to the control socket's commands."""

    def cache(args: tuple[str, ...]) -> Any:
        try:
            purge = parse(args)
            if purge.app and purge.app not in arbiter.pools:
                raise PurgeError(f"no app {purge.app!r}; apps: {', '.join(arbiter.pools)}")
        except PurgeError as exc:
            raise CommandError(str(exc)) from None
        fronts = arbiter.fronts
        reached = fronts.purge_cache(purge) if fronts is not None else 0
        return {"purge": purge.kind, "value": purge.value, "app": purge.app, "fronts": reached}

    commands.register(Command("cache", cache, USAGE, SUMMARY))
