"""The little HTTP/1.1 the Python load clients need: build a request, read one response.

It reads only what the benchmark's servers send (Content-Length, chunked, or close-delimited
bodies) and refuses anything bigger than the caps below instead of growing without bound.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

# The largest response head and body we accept: above what any benchmark route sends.
MAX_HEAD = 64 * 1024
MAX_BODY = 64 * 1024 * 1024
READ_BLOCK = 256 * 1024


class ProtocolError(Exception):
    """The server sent something that is not an HTTP/1.1 response we understand."""


@dataclass(frozen=True)
class Response:
    status: int
    body_bytes: int
    keep_alive: bool


def build_request(
    method: str, path: str, host: str, *, close: bool = False, body_bytes: int = 0
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "User-Agent: maitred-bench"]
    if close:
        lines.append("Connection: close")
    if body_bytes or method == "POST":
        lines.append("Content-Type: application/octet-stream")
        lines.append(f"Content-Length: {body_bytes}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


async def read_response(reader: asyncio.StreamReader) -> Response:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError as exc:
        raise ProtocolError("response head too large") from exc
    if len(head) > MAX_HEAD:
        raise ProtocolError("response head too large")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"bad status line {status_line!r}")
    status = int(parts[1])
    headers = _parse_headers(header_lines)
    keep_alive = parts[0] == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        size = await _read_chunked(reader)
    elif "content-length" in headers:
        size = int(headers["content-length"])
        if size > MAX_BODY:
            raise ProtocolError("response body too large")
        await reader.readexactly(size)
    elif status in (204, 304) or 100 <= status < 200:
        size = 0
    else:
        size = await _read_to_eof(reader)
        keep_alive = False
    return Response(status, size, keep_alive)


def _parse_headers(lines: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


async def _read_chunked(reader: asyncio.StreamReader) -> int:
    total = 0
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # no trailers from our servers: the final CRLF
            return total
        total += size
        if total > MAX_BODY:
            raise ProtocolError("response body too large")
        await reader.readexactly(size + 2)


async def _read_to_eof(reader: asyncio.StreamReader) -> int:
    total = 0
    while block := await reader.read(READ_BLOCK):
        total += len(block)
        if total > MAX_BODY:
            raise ProtocolError("response body too large")
    return total
