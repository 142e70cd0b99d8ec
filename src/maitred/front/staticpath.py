"""Which file answers a static request: the request path resolved safely under a mount's root.

Theory of operation
-------------------
1. The path after the mount's prefix is percent-decoded once. A malformed escape or a NUL is a
   400; an encoded slash or backslash, a ``..`` segment, or any segment starting with a dot
   (dotfiles, ``.git``) is a 404. Nothing is normalised away: a path that needs normalising is
   refused. The segments depend on the target alone, so a mount remembers them for recent
   targets (:meth:`Mount.segments`); what follows looks at the files on every request.
2. Each component of the path is ``lstat``-ed; a symlink must resolve inside the mount's root
   (unless --static-follow-symlinks). The caller learns whether the file's own name is such a
   checked symlink, so that it opens it with O_NOFOLLOW otherwise (see
   :func:`maitred.front.filecache.open_checked`).
3. A directory is a 404, unless --static-index names a file to serve for it (a request without
   the trailing slash is redirected to it, so relative links work).
4. A precompressed sibling (``NAME.br``, ``NAME.gz``) is chosen by the client's Accept-Encoding;
   only a regular file counts, a symlink with such a name is not followed.

Owned by the event loop thread.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from typing import TypeAlias
from urllib.parse import unquote_to_bytes

# (path, stat, whether the last component is a checked symlink) of a file found under a mount.
Found: TypeAlias = tuple[bytes, os.stat_result, bool]
# (the path segments below a mount, whether the path ended with a slash) of a request target.
Segments: TypeAlias = tuple[tuple[bytes, ...], bool]

# Targets whose segments a mount remembers: clients ask for the same few files again and again,
# and splitting and checking a path costs as much as the lstat that follows it. Bounded in number
# and in length (at most 256 KiB of targets), as targets come from clients; a longer target is
# checked on every request.
KNOWN_TARGETS = 1024
KNOWN_TARGET_SIZE = 256

# Precompressed siblings, in order of preference when the client accepts both equally.
ENCODINGS = ((b"br", b".br"), (b"gzip", b".gz"))
_SUFFIXES = dict(ENCODINGS)

_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_ENCODED_SEPARATOR = re.compile(rb"%(?:2[fF]|5[cC])")


class Refused(Exception):
    """The request cannot be served: answer with this status."""

    def __init__(self, status: int, extra: bytes = b"") -> None:
        super().__init__(status)
        self.status = status
        self.extra = extra


class Mount:
    __slots__ = ("known", "prefix", "root")

    def __init__(self, prefix: str, root: str) -> None:
        self.prefix = prefix.encode("latin-1")
        # Not resolved: a root that is itself a symlink (`current -> releases/42`) is followed
        # afresh on every request, so a deploy that swaps it is served at once.
        self.root = os.fsencode(os.path.abspath(root))
        self.known: dict[bytes, Segments] = {}  # see KNOWN_TARGETS

    def segments(self, target: bytes) -> Segments:
        """The segments of a request target under this mount; Refused for a path not served.

        Only the path is checked here, not the files: the result is remembered for the target.
        """
        known = self.known.get(target)
        if known is None:
            known = _segments(target.partition(b"?")[0][len(self.prefix) :])
            if len(target) <= KNOWN_TARGET_SIZE:
                if len(self.known) >= KNOWN_TARGETS:
                    self.known.clear()
                self.known[target] = known
        return known


class Resolver:
    """Finds the regular file a request target names under a mount, or refuses the request."""

    def __init__(self, follow: bool, index: bytes) -> None:
        self.follow = follow  # --static-follow-symlinks
        self.index = index  # --static-index; empty: a directory is a 404

    def resolve(self, mount: Mount, target: bytes) -> Found:
        segments, trailing = mount.segments(target)
        path, st, linked = self._find(mount, segments)
        if stat.S_ISREG(st.st_mode) and not trailing:
            return path, st, linked
        if stat.S_ISDIR(st.st_mode):
            return self._index(target, mount, segments, trailing)
        raise Refused(404)

    def _find(self, mount: Mount, segments: Sequence[bytes]) -> Found:
        """What the segments name. Every component is lstat-ed; a symlink must resolve inside
        the root.
        """
        root = current = mount.root
        linked = False
        try:
            if not segments:
                return root, os.stat(root), False
            for segment in segments:
                current += b"/" + segment  # under a file: lstat fails (ENOTDIR)
                st = os.lstat(current)
                linked = stat.S_ISLNK(st.st_mode)
                if linked:
                    self._check_link(root, current)
                    st = os.stat(current)
        except OSError:
            raise Refused(404) from None
        return current, st, linked

    def _check_link(self, root: bytes, path: bytes) -> None:
        if self.follow:
            return
        real, real_root = os.path.realpath(path), os.path.realpath(root)
        if real != real_root and not real.startswith(real_root.rstrip(b"/") + b"/"):
            raise Refused(404)

    def _index(
        self, target: bytes, mount: Mount, segments: Sequence[bytes], trailing: bool
    ) -> Found:
        if not self.index:
            raise Refused(404)
        if not trailing:
            path, sep, query = target.partition(b"?")
            raise Refused(301, b"Location: %s/%s%s\r\n" % (path, sep, query))
        path, st, linked = self._find(mount, [*segments, self.index])
        if not stat.S_ISREG(st.st_mode):
            raise Refused(404)
        return path, st, linked


def _segments(rest: bytes) -> Segments:
    """The path segments below the mount, and whether the path ended with a slash."""
    if rest.find(b"%") != -1:  # find, not `in`: see maitred.http.parser._check_target
        if _BAD_ESCAPE.search(rest):
            raise Refused(400)
        if _ENCODED_SEPARATOR.search(rest):
            raise Refused(404)
        rest = unquote_to_bytes(rest)
    if rest.find(b"\x00") != -1:
        raise Refused(400)
    segments = []
    for segment in rest.split(b"/"):
        if not segment or segment == b".":
            continue
        if segment[:1] == b".":
            raise Refused(404)  # "..", and dotfiles
        segments.append(segment)
    return tuple(segments), rest.endswith(b"/")


def variant(
    path: bytes, accepted: bytes
) -> tuple[tuple[bytes, bytes, os.stat_result] | None, bool]:
    """((coding, path, stat) of a precompressed sibling the client accepts, or None; vary).

    Only a regular file counts as a sibling: a symlink named app.css.gz is not followed.
    """
    vary = False
    for coding in _accepted_codings(accepted):
        sibling = path + _SUFFIXES[coding]
        try:
            st = os.lstat(sibling)
        except OSError:
            continue
        vary = True
        if stat.S_ISREG(st.st_mode):
            return (coding, sibling, st), vary
    return None, vary


def _accepted_codings(value: bytes) -> list[bytes]:
    """br and/or gzip, best first, as Accept-Encoding allows them (q > 0)."""
    weights: dict[bytes, float] = {}
    for item in value.split(b","):
        coding, _, params = item.partition(b";")
        weight = 1.0
        for param in params.split(b";"):
            key, _, number = param.partition(b"=")
            if key.strip().lower() == b"q":
                try:
                    weight = float(number)
                except ValueError:
                    weight = 0.0
        weights[coding.strip().lower()] = weight
    star = weights.get(b"*", 0.0)
    weights.setdefault(b"gzip", weights.get(b"x-gzip", star))
    weights.setdefault(b"br", star)
    ranked = [(weights[coding], -i, coding) for i, (coding, _) in enumerate(ENCODINGS)]
    return [coding for weight, _, coding in sorted(ranked, reverse=True) if weight > 0]
