"""Static files, served by the front itself: no worker, no app thread.

Theory of operation
-------------------
``--static /static=./staticfiles`` mounts a directory at a URL prefix. A complete request whose
path starts with a mount's prefix is answered here (:meth:`StaticFiles.serve`), in the order of
the connection's responses like any other. The steps:

1. Only GET and HEAD (405 with Allow otherwise).
2. The path is resolved to a regular file under the mount's root, safely
   (:mod:`maitred.front.staticpath`): a path that would need normalising, a dotfile or a symlink
   out of the root is refused; a directory is a 404 unless --static-index names a file for it.
3. If the client accepts br or gzip and ``NAME.br`` / ``NAME.gz`` exists next to the file, that
   is the representation sent, with Content-Encoding and ``Vary: Accept-Encoding``. Validators,
   ranges and lengths all refer to the chosen representation.
4. Preconditions (412, 304), then Range (206, 416, or the whole file):
   :mod:`maitred.front.conditional`.
5. Files up to 64 KiB are sent from memory with the head in one write, from a cache checked
   against each request's stat (:class:`~maitred.front.filecache.FileCache`). Larger files go
   through sendfile (:class:`~maitred.front.sendfile.FileSender`), with the head written first.
   What is opened must be the file that was stat-ed, else the request starts over
   (:func:`~maitred.front.filecache.open_checked`), a few times, then 503.

Most requests are plain (no validators, ranges or codings asked for) and for a small file asked
for before under the same target: those are answered after one lstat that shows the file is
still the one answered then, with its bytes from memory (:meth:`StaticFiles._answer_known`),
without the walk and the negotiation.

Headers: Content-Type from the name (charset utf-8 for text), Content-Length, Last-Modified, a
strong ETag from mtime and size, Accept-Ranges, and Cache-Control: ``public, max-age`` from
--static-max-age, or a year and ``immutable`` for names carrying a content hash.

Owned by the event loop thread.
"""

from __future__ import annotations

import email.utils
import logging
import mimetypes
import os
import re
from typing import TYPE_CHECKING, NamedTuple

from maitred.front.conditional import UNSATISFIABLE, if_range_matches, parse_range, preconditions
from maitred.front.filecache import Changed, FileCache, Identity, identity, open_checked
from maitred.front.sendfile import FileSender
from maitred.front.staticpath import Mount, Refused, Resolver, variant
from maitred.http.errors import error_for
from maitred.http.framing import CONTENT_LENGTH, CRLF
from maitred.http.response import HEAD_STARTS

if TYPE_CHECKING:
    from maitred.config import Config
    from maitred.front.exchange import Exchange
    from maitred.http.response import DateCache

log = logging.getLogger("maitred.error")

# Bodies up to this size are read and sent with the head in one write; above it sendfile pays
# for its extra system calls.
SMALL_FILE = 64 * 1024
# A name with a content hash never changes content: cache it for a year (the longest max-age
# RFC 9111 caches are expected to honour) and say it is immutable.
HASHED_MAX_AGE = 365 * 24 * 3600
# Django's ManifestStaticFilesStorage: `name.` + the first 12 hex digits of the MD5 + `.ext`.
HASHED_NAME = re.compile(rb"\.[0-9a-f]{12}\.[A-Za-z0-9]+$")
ALLOW = b"Allow: GET, HEAD\r\n"

_TEXT_TYPES = ("text/", "application/javascript")
_WANTED = frozenset(
    {
        b"accept-encoding",
        b"range",
        b"if-range",
        b"if-match",
        b"if-none-match",
        b"if-modified-since",
        b"if-unmodified-since",
    }
)
# Content types and representations remembered; bounded, as names come from clients.
_CACHE_LIMIT = 4096
# Tries at a request whose file is replaced while it is looked at (a deploy), then 503.
RETRIES = 3


class Representation(NamedTuple):
    """What the headers say about one file (or one precompressed sibling) as it is now."""

    identity: Identity  # whether the file changed since
    etag: bytes
    last_modified: bytes
    validators: bytes  # ETag, Last-Modified, Cache-Control: what a 304 repeats
    lines: bytes  # Content-Type, the validators, Content-Encoding, Accept-Ranges
    whole: bytes  # the lines and the Content-Length of the whole file: a 200's fields


class Known(NamedTuple):
    """What a plain request for one target was last answered with: a small file, as it was."""

    path: bytes
    identity: Identity
    fields: bytes  # its 200's fields (Representation.whole)


class StaticFiles:
    """The static mounts of one front."""

    def __init__(self, cfg: Config, date: DateCache) -> None:
        self.cfg = cfg  # what it was made from: the router keeps it while this stays the same
        self.date = date
        self.resolver = Resolver(cfg.static_follow_symlinks, os.fsencode(cfg.static_index))
        mounts = [Mount(prefix, root) for prefix, root in cfg.static]
        self.mounts = sorted(mounts, key=lambda m: len(m.prefix), reverse=True)
        for mount in self.mounts:
            if not os.path.isdir(mount.root):
                log.warning("static directory %s does not exist", os.fsdecode(mount.root))
        self.cache_control = b"Cache-Control: public, max-age=%d\r\n" % cfg.static_max_age
        self.cache_hashed = b"Cache-Control: public, max-age=%d, immutable\r\n" % HASHED_MAX_AGE
        self.contents = FileCache(cfg.static_cache_size)
        self._types: dict[bytes, bytes] = {}
        self._reps: dict[bytes, Representation] = {}
        self._known: dict[bytes, Known] = {}  # by request target: see _answer_known

    def match(self, target: bytes) -> Mount | None:
        """The mount serving this request target, if any."""
        for mount in self.mounts:
            prefix = mount.prefix
            if target.startswith(prefix) and target[len(prefix) : len(prefix) + 1] in (
                b"",
                b"/",
                b"?",
            ):
                return mount
        return None

    # --- serving ---

    def serve(self, exchange: Exchange, mount: Mount) -> None:
        head = exchange.head
        method = head.method
        if method != b"GET" and method != b"HEAD":
            self._simple(exchange, 405, ALLOW)
            return
        if _WANTED.isdisjoint(head.fields) and self._answer_known(exchange):
            return
        for _ in range(RETRIES):
            try:
                path, st, linked = self.resolver.resolve(mount, exchange.head.target)
                self._answer(exchange, path, st, linked)
                return
            except Changed:
                continue  # replaced while we looked at it (a deploy): look again
            except Refused as refused:
                self._simple(exchange, refused.status, refused.extra)
                return
            except OSError as exc:  # an I/O error on a file that was there: ours
                log.error("static file %s: %s", exchange.head.target.decode("latin-1"), exc)
                break
        self._simple(exchange, 503, b"")

    def _answer(self, exchange: Exchange, path: bytes, st: os.stat_result, linked: bool) -> None:
        asked = exchange.head.fields
        # Most requests carry none of the fields static files look at: a set operation then,
        # no call.
        headers = {} if _WANTED.isdisjoint(asked) else _wanted_headers(asked)
        requested = path  # its name gives the type, when a precompressed sibling is sent too
        vary = b""
        coding = b""
        accepted = headers.get(b"accept-encoding")
        if accepted is not None:
            sibling, negotiated = variant(path, accepted)
            if negotiated:
                vary = b"Vary: Accept-Encoding\r\n"
            if sibling is not None:
                coding, path, st = sibling
                linked = False
        rep = self._representation(path, st, requested, coding)
        size = st.st_size
        start, count, status, fields = 0, size, 200, rep.whole
        if headers:
            failed = preconditions(headers, rep.etag, rep.last_modified, int(st.st_mtime))
            if failed == 304:
                self._simple(exchange, 304, vary + rep.validators, body=b"")
                return
            if failed:
                raise Refused(failed)
            chosen = _chosen_range(headers, exchange.head.method, rep, size)
            if chosen is not None:
                start, end = chosen
                count, status = end - start + 1, 206
                fields = b"%sContent-Range: bytes %d-%d/%d\r\n%s" % (
                    rep.lines,
                    start,
                    end,
                    size,
                    CONTENT_LENGTH % count,
                )
        head = self._head(exchange, status, vary + fields)
        if exchange.suppress_body:
            exchange.respond_full(status, count, head, b"")
        elif size <= SMALL_FILE:
            body = self.contents.read(path, st, rep.identity, linked)  # rep matched st
            if count != size:
                body = body[start : start + count]
            elif not headers and not linked and path == requested:
                self._remember(exchange.head.target, Known(path, rep.identity, rep.whole))
            exchange.respond_full(status, count, head, body)
        else:
            fd = open_checked(path, st, linked)
            if count <= SMALL_FILE:  # a small range of a large file
                try:
                    body = os.pread(fd, count, start)
                finally:
                    os.close(fd)
                if len(body) != count:
                    raise Changed
                exchange.respond_full(status, count, head, body)
                return
            exchange.respond_head(status, count, head)
            FileSender(exchange, fd, start, count).start()  # closes fd

    def _answer_known(self, exchange: Exchange) -> bool:
        """Answer a plain request (no validators, ranges or codings asked for) for a small
        file served before under the same target, when one lstat shows it is still that file
        and its bytes are in memory; False: take the whole way.

        The lstat of the whole path follows the same directories as the component-by-component
        walk of :meth:`Resolver.resolve` did (a swapped directory or root symlink leads to
        another file, another identity), so the same identity is the same file, already
        checked. Most requests for static files are these: this spares them the walk and the
        negotiation, about a third of the static files' own instructions.
        """
        known = self._known.get(exchange.head.target)
        if known is None:
            return False
        try:
            st = os.lstat(known.path)
        except OSError:
            return False
        entry = self.contents.entries.get(known.path)
        if entry is None or entry[0] != known.identity or identity(st) != known.identity:
            return False
        body = entry[1]
        head = self._head(exchange, 200, known.fields)
        exchange.respond_full(200, len(body), head, b"" if exchange.suppress_body else body)
        return True

    def _representation(
        self, path: bytes, st: os.stat_result, requested: bytes, coding: bytes
    ) -> Representation:
        """The headers of one file as it is now, made once per change of the file.

        `path` is the file sent: `requested`, or its precompressed sibling, whose name does not
        give the type.
        """
        current = identity(st)
        known = self._reps.get(path)
        if known is not None and known.identity == current:
            return known
        name = requested.rpartition(b"/")[2]
        etag = b'"%x-%x%s"' % (st.st_mtime_ns, st.st_size, b"-" + coding if coding else b"")
        last_modified = email.utils.formatdate(int(st.st_mtime), usegmt=True).encode("ascii")
        validators = b"ETag: %s\r\nLast-Modified: %s\r\n%s" % (
            etag,
            last_modified,
            self.cache_hashed if HASHED_NAME.search(name) else self.cache_control,
        )
        lines = b"Content-Type: %s\r\n%s%sAccept-Ranges: bytes\r\n" % (
            self._content_type(name),
            validators,
            b"Content-Encoding: %s\r\n" % coding if coding else b"",
        )
        whole = lines + CONTENT_LENGTH % st.st_size
        rep = Representation(current, etag, last_modified, validators, lines, whole)
        if len(self._reps) >= _CACHE_LIMIT:
            self._reps.clear()
        self._reps[path] = rep
        return rep

    def _remember(self, target: bytes, known: Known) -> None:
        if len(self._known) >= _CACHE_LIMIT:
            self._known.clear()
        self._known[target] = known

    # --- building responses ---

    def _head(self, exchange: Exchange, status: int, fields: bytes) -> bytes:
        """The head up to its framing, which the exchange adds (maitred.http.framing)."""
        return b"".join((HEAD_STARTS[status], self.date.get(), CRLF, fields, exchange.extra_head))

    def _simple(
        self, exchange: Exchange, status: int, extra: bytes, body: bytes | None = None
    ) -> None:
        """A response without a file body: an error (its page as the front's errors have it,
        but the connection stays open), a 304, or a 416."""
        if body is None:
            error = error_for(status)
            body, extra = error.body, extra + error.fields()
        exchange.respond_full(status, len(body), self._head(exchange, status, extra), body)

    def _content_type(self, name: bytes) -> bytes:
        ext = os.path.splitext(name)[1].lower()
        known = self._types.get(ext)
        if known is None:
            guessed, _ = mimetypes.guess_type("x" + ext.decode("latin-1"), strict=False)
            text = guessed or "application/octet-stream"
            if text.startswith(_TEXT_TYPES):
                text += "; charset=utf-8"
            known = text.encode("latin-1")
            if len(self._types) < _CACHE_LIMIT:
                self._types[ext] = known
        return known


# --- request headers ---


def _chosen_range(
    headers: dict[bytes, bytes], method: bytes, rep: Representation, size: int
) -> tuple[int, int] | None:
    """(first, last) byte of the one range to send, or None for the whole file; 416 when no
    byte of the file is in the range asked for."""
    if b"range" not in headers or method != b"GET":
        return None
    if_range = headers.get(b"if-range")
    if if_range is not None and not if_range_matches(if_range, rep.etag, rep.last_modified):
        return None
    chosen = parse_range(headers[b"range"], size)
    if chosen is UNSATISFIABLE:
        raise Refused(416, b"Content-Range: bytes */%d\r\n" % size)
    return chosen


def _wanted_headers(fields: dict[bytes, list[bytes]]) -> dict[bytes, bytes]:
    """The fields static files look at, each one's lines joined (RFC 9110 section 5.3)."""
    return {name: b",".join(values) for name, values in fields.items() if name in _WANTED}
