"""Static files, served by the front itself: no worker, no app thread.

Theory of operation
-------------------
``--static /static=./staticfiles`` mounts a directory at a URL prefix. A complete request whose
path starts with a mount's prefix is answered here (:meth:`StaticFiles.serve`), in the order of
the connection's responses like any other. The steps:

1. Only GET and HEAD (405 with Allow otherwise).
2. The path after the prefix is percent-decoded once. A malformed escape or a NUL is a 400; an
   encoded slash or backslash, a ``..`` segment, or any segment starting with a dot (dotfiles,
   ``.git``) is a 404. Nothing is normalised away: a path that needs normalising is refused.
3. Each component of the path is ``lstat``-ed; a symlink must resolve inside the mount's root
   (unless --static-follow-symlinks). The headers come from that stat; when the file is opened
   (O_NOFOLLOW unless its own name is a checked symlink), ``fstat`` must show the same file
   (device, inode, size, mtime, ctime), else the request starts over: a deploy that replaces
   files never gets a length that disagrees with the bytes. (Someone who can write to the static
   tree could still race a symlink into a directory between the check and the open; that user
   can publish files anyway.)
4. A directory is a 404, unless --static-index names a file to serve for it (a request without
   the trailing slash is redirected to it, so relative links work).
5. If the client accepts br or gzip and ``NAME.br`` / ``NAME.gz`` exists next to the file, that
   is the representation sent, with Content-Encoding and ``Vary: Accept-Encoding``. Validators,
   ranges and lengths all refer to the chosen representation.
6. Preconditions (RFC 9110 section 13.2.2): If-Match / If-Unmodified-Since (412), then
   If-None-Match / If-Modified-Since (304). Then Range: one satisfiable range is a 206, an
   unsatisfiable one a 416; several ranges are answered with the whole file (allowed, and it
   spares a multipart body). If-Range that does not match also means the whole file.
7. Files up to 64 KiB are sent from memory with the head in one write, from a cache checked
   against each request's stat (:class:`FileCache`): a hit costs one lstat and one send, where
   sendfile would cost open, fstat, write, sendfile and close. Larger files go through sendfile
   (:class:`~maitred.front.sendfile.FileSender`), with the head written first.

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
import stat
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import unquote_to_bytes

from maitred.front.sendfile import FileSender
from maitred.http.response import REASONS, SERVER

if TYPE_CHECKING:
    from maitred.config import Config
    from maitred.front.client import Exchange
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
# Precompressed siblings, in order of preference when the client accepts both equally.
ENCODINGS = ((b"br", b".br"), (b"gzip", b".gz"))
_SUFFIXES = dict(ENCODINGS)
ALLOW = b"Allow: GET, HEAD\r\n"

_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_ENCODED_SEPARATOR = re.compile(rb"%(?:2[fF]|5[cC])")
_TEXT_TYPES = ("text/", "application/javascript")
_OPEN = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK  # NONBLOCK: opening a FIFO must not hang
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


class Refused(Exception):
    """The request cannot be served: answer with this status."""

    def __init__(self, status: int, extra: bytes = b"") -> None:
        super().__init__(status)
        self.status = status
        self.extra = extra


class Mount:
    __slots__ = ("prefix", "root")

    def __init__(self, prefix: str, root: str) -> None:
        self.prefix = prefix.encode("latin-1")
        # Not resolved: a root that is itself a symlink (`current -> releases/42`) is followed
        # afresh on every request, so a deploy that swaps it is served at once.
        self.root = os.fsencode(os.path.abspath(root))


class Representation(NamedTuple):
    """What the headers say about one file (or one precompressed sibling) as it is now."""

    identity: tuple[int, int, int, int, int]  # see _identity: whether the file changed since
    etag: bytes
    last_modified: bytes
    validators: bytes  # ETag, Last-Modified, Cache-Control: what a 304 repeats
    lines: bytes  # Content-Type, the validators, Content-Encoding, Accept-Ranges


class Changed(Exception):
    """The file changed between its stat and its open: start the request over."""


class StaticFiles:
    """The static mounts of one front."""

    def __init__(self, cfg: Config, date: DateCache) -> None:
        self.date = date
        self.follow = cfg.static_follow_symlinks
        self.index = os.fsencode(cfg.static_index)
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
        for _ in range(RETRIES):
            try:
                self._serve(exchange, mount)
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

    def _serve(self, exchange: Exchange, mount: Mount) -> None:
        head = exchange.head
        if head.method != b"GET" and head.method != b"HEAD":
            raise Refused(405, ALLOW)
        target = head.target.partition(b"?")[0]
        segments, trailing = _segments(target[len(mount.prefix) :])
        path, st, linked = self._find(mount, segments)
        if stat.S_ISDIR(st.st_mode):
            path, st, linked = self._index(exchange, mount, segments, trailing)
        elif not stat.S_ISREG(st.st_mode) or trailing:
            raise Refused(404)
        self._answer(exchange, path, st, linked)

    def _find(self, mount: Mount, segments: list[bytes]) -> tuple[bytes, os.stat_result, bool]:
        """(path, stat, whether the last component is a symlink) of what the segments name.

        Every component is lstat-ed; a symlink must resolve inside the root.
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
        self, exchange: Exchange, mount: Mount, segments: list[bytes], trailing: bool
    ) -> tuple[bytes, os.stat_result, bool]:
        if not self.index:
            raise Refused(404)
        if not trailing:
            path, sep, query = exchange.head.target.partition(b"?")
            raise Refused(301, b"Location: %s/%s%s\r\n" % (path, sep, query))
        path, st, linked = self._find(mount, [*segments, self.index])
        if not stat.S_ISREG(st.st_mode):
            raise Refused(404)
        return path, st, linked

    def _answer(self, exchange: Exchange, path: bytes, st: os.stat_result, linked: bool) -> None:
        headers = _wanted_headers(exchange.head.headers)
        name = path.rpartition(b"/")[2]
        vary = b""
        coding = b""
        accepted = headers.get(b"accept-encoding")
        if accepted is not None:
            variant, negotiated = _variant(path, accepted)
            if negotiated:
                vary = b"Vary: Accept-Encoding\r\n"
            if variant is not None:
                coding, path, st = variant
                linked = False
        rep = self._representation(path, st, name, coding)
        if headers:
            status = _preconditions(headers, rep.etag, rep.last_modified, int(st.st_mtime))
            if status == 304:
                self._simple(exchange, 304, vary + rep.validators, body=b"")
                return
            if status:
                raise Refused(status)
        lines = [vary, rep.lines]
        size = st.st_size
        start, count, status = 0, size, 200
        if b"range" in headers and exchange.head.method == b"GET":
            if_range = headers.get(b"if-range")
            if if_range is None or _if_range_matches(if_range, rep.etag, rep.last_modified):
                chosen = _parse_range(headers[b"range"], size)
                if chosen is UNSATISFIABLE:
                    raise Refused(416, b"Content-Range: bytes */%d\r\n" % size)
                if chosen is not None:
                    start, end = chosen
                    count, status = end - start + 1, 206
                    lines.append(b"Content-Range: bytes %d-%d/%d\r\n" % (start, end, size))
        lines.append(b"Content-Length: %d\r\n" % count)
        if exchange.suppress_body:
            exchange.respond_full(status, count, self._head(exchange, status, lines), b"")
        elif size <= SMALL_FILE:
            body = self.contents.read(path, st, linked)
            if count != size:
                body = body[start : start + count]
            exchange.respond_full(status, count, self._head(exchange, status, lines), body)
        else:
            fd = open_checked(path, st, linked)
            if count <= SMALL_FILE:  # a small range of a large file
                try:
                    body = os.pread(fd, count, start)
                finally:
                    os.close(fd)
                if len(body) != count:
                    raise Changed
                exchange.respond_full(status, count, self._head(exchange, status, lines), body)
                return
            exchange.respond_head(status, count, self._head(exchange, status, lines))
            FileSender(exchange, fd, start, count).start()  # closes fd

    def _representation(
        self, path: bytes, st: os.stat_result, name: bytes, coding: bytes
    ) -> Representation:
        """The headers of one file as it is now, made once per change of the file."""
        identity = _identity(st)
        known = self._reps.get(path)
        if known is not None and known.identity == identity:
            return known
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
        rep = Representation(identity, etag, last_modified, validators, lines)
        if len(self._reps) >= _CACHE_LIMIT:
            self._reps.clear()
        self._reps[path] = rep
        return rep

    # --- building responses ---

    def _head(self, exchange: Exchange, status: int, lines: list[bytes]) -> bytes:
        return b"HTTP/1.1 %d %s\r\nServer: %s\r\nDate: %s\r\n%s%s" % (
            status,
            REASONS.get(status, b""),
            SERVER,
            self.date.get(),
            b"".join(lines),
            exchange.extra_head,
        )

    def _simple(
        self, exchange: Exchange, status: int, extra: bytes, body: bytes | None = None
    ) -> None:
        """A response without a file body: an error, a 304, a redirect or a 416."""
        if body is None:
            body = b"%d %s\n" % (status, REASONS.get(status, b""))
            extra += b"Content-Type: text/plain; charset=utf-8\r\n"
        if status != 304:
            extra += b"Content-Length: %d\r\n" % len(body)
        exchange.respond_full(status, len(body), self._head(exchange, status, [extra]), body)

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


# --- request parsing helpers (pure functions) ---


def _variant(
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


def open_checked(path: bytes, st: os.stat_result, linked: bool) -> int:
    """Open the file that `st` describes; Changed if what opens is not that file any more."""
    try:
        fd = os.open(path, _OPEN if linked else _OPEN | os.O_NOFOLLOW)
    except OSError:
        raise Changed from None
    opened = os.fstat(fd)
    if _identity(opened) != _identity(st):
        os.close(fd)
        raise Changed
    return fd


def _identity(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class FileCache:
    """The contents of small static files, keyed by path and checked against each request's
    stat: device, inode, size, mtime and ctime all equal, or the file is read again.

    A hit costs the one lstat the request makes anyway, instead of open, fstat, read and close.
    A file rewritten in place within one timestamp tick with the same size would be served
    stale until its next change; deploys write new files (or new names), which is always seen.
    Bounded by bytes; the oldest entries go first.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.entries: dict[bytes, tuple[tuple[int, int, int, int, int], bytes]] = {}

    def read(self, path: bytes, st: os.stat_result, linked: bool) -> bytes:
        identity = _identity(st)
        entry = self.entries.get(path)
        if entry is not None and entry[0] == identity:
            return entry[1]
        fd = open_checked(path, st, linked)
        try:
            data = os.pread(fd, st.st_size, 0)
        finally:
            os.close(fd)
        if len(data) != st.st_size:
            raise Changed
        self._keep(path, identity, data)
        return data

    def _keep(self, path: bytes, identity: tuple[int, int, int, int, int], data: bytes) -> None:
        if len(data) > self.limit:
            return
        old = self.entries.pop(path, None)
        if old is not None:
            self.size -= len(old[1])
        entries = self.entries
        while entries and self.size + len(data) > self.limit:
            self.size -= len(entries.pop(next(iter(entries)))[1])
        entries[path] = (identity, data)
        self.size += len(data)


def _segments(rest: bytes) -> tuple[list[bytes], bool]:
    """The path segments below the mount, and whether the path ended with a slash."""
    if b"%" in rest:
        if _BAD_ESCAPE.search(rest):
            raise Refused(400)
        if _ENCODED_SEPARATOR.search(rest):
            raise Refused(404)
        rest = unquote_to_bytes(rest)
    if b"\x00" in rest:
        raise Refused(400)
    segments = []
    for segment in rest.split(b"/"):
        if not segment or segment == b".":
            continue
        if segment[:1] == b".":
            raise Refused(404)  # "..", and dotfiles
        segments.append(segment)
    return segments, rest.endswith(b"/")


def _wanted_headers(headers: list[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    found: dict[bytes, bytes] = {}
    for name, value in headers:
        lowered = name.lower()
        if lowered in _WANTED:
            found[lowered] = found[lowered] + b"," + value if lowered in found else value
    return found


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


def _etags(value: bytes) -> list[bytes]:
    return [tag.strip() for tag in value.split(b",") if tag.strip()]


def _http_time(value: bytes) -> int | None:
    parsed = email.utils.parsedate_tz(value.decode("latin-1"))
    return None if parsed is None else int(email.utils.mktime_tz(parsed))


def _preconditions(
    headers: dict[bytes, bytes], etag: bytes, last_modified: bytes, mtime: int
) -> int:
    """412 or 304 when a precondition says so, else 0 (RFC 9110 section 13.2.2)."""
    if_match = headers.get(b"if-match")
    if if_match is not None:
        tags = _etags(if_match)
        if b"*" not in tags and etag not in tags:  # strong comparison: a W/ tag never matches
            return 412
    elif b"if-unmodified-since" in headers:
        since = _http_time(headers[b"if-unmodified-since"])
        if since is not None and mtime > since:
            return 412
    if_none_match = headers.get(b"if-none-match")
    if if_none_match is not None:
        tags = [tag.removeprefix(b"W/") for tag in _etags(if_none_match)]
        return 304 if b"*" in tags or etag in tags else 0
    modified_since = headers.get(b"if-modified-since")
    if modified_since is not None:
        if modified_since == last_modified:
            return 304
        since = _http_time(modified_since)
        if since is not None and mtime <= since:
            return 304
    return 0


def _if_range_matches(value: bytes, etag: bytes, last_modified: bytes) -> bool:
    value = value.strip()
    if value.startswith(b'"'):
        return value == etag  # strong comparison
    return value == last_modified  # a date must match exactly (RFC 9110 section 13.1.5)


UNSATISFIABLE = (-1, -1)


def _parse_range(value: bytes, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single range; None: serve the whole file; or UNSATISFIABLE."""
    unit, sep, spec = value.partition(b"=")
    if not sep or unit.strip().lower() != b"bytes":
        return None
    specs = [item.strip() for item in spec.split(b",") if item.strip()]
    if len(specs) != 1:
        return None  # several ranges: the whole file, instead of a multipart body
    first, dash, last = specs[0].partition(b"-")
    if not dash or not (first.isdigit() or last.isdigit()):
        return None
    if (first and not first.isdigit()) or (last and not last.isdigit()):
        return None
    if not first:  # a suffix: the last N bytes
        length = int(last)
        if length == 0 or size == 0:
            return UNSATISFIABLE
        return max(0, size - length), size - 1
    start = int(first)
    if last and int(last) < start:
        return None  # invalid: ignored, as RFC 9110 says
    if start >= size:
        return UNSATISFIABLE
    return start, min(int(last), size - 1) if last else size - 1
