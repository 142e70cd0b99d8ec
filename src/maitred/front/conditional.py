"""Conditional and range requests for static files: pure functions of request header values.

Theory of operation
-------------------
Preconditions are evaluated as RFC 9110 section 13.2.2 orders them: If-Match /
If-Unmodified-Since (412), then If-None-Match / If-Modified-Since (304). Then Range: one
satisfiable range is a 206, an unsatisfiable one a 416; several ranges are answered with the
whole file (allowed, and it spares a multipart body). If-Range that does not match also means the
whole file. Everything here compares against the representation actually sent (a precompressed
sibling has its own ETag).
"""

from __future__ import annotations

import email.utils

# What parse_range returns for a range no byte of the file satisfies (416).
UNSATISFIABLE = (-1, -1)


def _etags(value: bytes) -> list[bytes]:
    return [tag.strip() for tag in value.split(b",") if tag.strip()]


def _http_time(value: bytes) -> int | None:
    parsed = email.utils.parsedate_tz(value.decode("latin-1"))
    return None if parsed is None else int(email.utils.mktime_tz(parsed))


def preconditions(
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


def if_range_matches(value: bytes, etag: bytes, last_modified: bytes) -> bool:
    value = value.strip()
    if value.startswith(b'"'):
        return value == etag  # strong comparison
    return value == last_modified  # a date must match exactly (RFC 9110 section 13.1.5)


def parse_range(value: bytes, size: int) -> tuple[int, int] | None:
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
