"""What nginx writes to a uwsgi or FastCGI upstream, for tests: packets, records, and reading
the records an application answers with."""

from __future__ import annotations

import socket
import struct

from maitred.gateway import fastcgi
from maitred.gateway.params import GatewayHead
from maitred.http.parser import Event

# Variables as nginx's uwsgi_params and fastcgi_params send them for GET /a/b?x=1.
NGINX_PARAMS = {
    b"QUERY_STRING": b"x=1",
    b"REQUEST_METHOD": b"GET",
    b"CONTENT_TYPE": b"",
    b"CONTENT_LENGTH": b"",
    b"REQUEST_URI": b"/a/b?x=1",
    b"PATH_INFO": b"/a/b",
    b"DOCUMENT_ROOT": b"/usr/share/nginx/html",
    b"SERVER_PROTOCOL": b"HTTP/1.1",
    b"REQUEST_SCHEME": b"http",
    b"REMOTE_ADDR": b"203.0.113.9",
    b"REMOTE_PORT": b"40000",
    b"SERVER_PORT": b"80",
    b"SERVER_NAME": b"example.com",
    b"HTTP_HOST": b"example.com",
    b"HTTP_USER_AGENT": b"test",
}


def params_with(body: bytes = b"", **changes: bytes) -> dict[bytes, bytes]:
    params = dict(NGINX_PARAMS)
    if body:
        params |= {b"REQUEST_METHOD": b"POST", b"CONTENT_LENGTH": str(len(body)).encode()}
    params |= {name.encode(): value for name, value in changes.items()}
    return params


def uwsgi_packet(params: dict[bytes, bytes], body: bytes = b"", modifier1: int = 0) -> bytes:
    block = b"".join(
        struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v for k, v in params.items()
    )
    return struct.pack("<BHB", modifier1, len(block), 0) + block + body


def record(kind: int, rid: int, content: bytes = b"", padding: int = 0) -> bytes:
    header = fastcgi.RECORD.pack(fastcgi.VERSION, kind, rid, len(content), padding)
    return header + content + b"\0" * padding


def begin(rid: int, keep_conn: bool = True, role: int = fastcgi.RESPONDER) -> bytes:
    flags = fastcgi.KEEP_CONN if keep_conn else 0
    return record(fastcgi.BEGIN_REQUEST, rid, fastcgi.BEGIN_BODY.pack(role, flags))


def params_records(rid: int, params: dict[bytes, bytes]) -> bytes:
    block = b"".join(map(fastcgi.encode_pair, params.items()))
    return record(fastcgi.PARAMS, rid, block) + record(fastcgi.PARAMS, rid)


def stdin_records(rid: int, body: bytes, size: int = 32768) -> bytes:
    pieces = [record(fastcgi.STDIN, rid, body[at : at + size]) for at in range(0, len(body), size)]
    return b"".join(pieces) + record(fastcgi.STDIN, rid)


def fcgi_request(
    rid: int, params: dict[bytes, bytes], body: bytes = b"", keep_conn: bool = True
) -> bytes:
    return begin(rid, keep_conn) + params_records(rid, params) + stdin_records(rid, body)


def read_records(data: bytes) -> list[tuple[int, int, bytes]]:
    """(type, request id, content) of each whole record in `data`."""
    out = []
    at = 0
    while len(data) - at >= fastcgi.RECORD.size:
        _, kind, rid, length, padding = fastcgi.RECORD.unpack_from(data, at)
        start = at + fastcgi.RECORD.size
        if start + length + padding > len(data):
            break
        out.append((kind, rid, data[start : start + length]))
        at = start + length + padding
    return out


def stdout_of(records: list[tuple[int, int, bytes]], rid: int) -> bytes:
    return b"".join(c for kind, r, c in records if kind == fastcgi.STDOUT and r == rid)


def end_status(records: list[tuple[int, int, bytes]], rid: int) -> int | None:
    """The protocol status of `rid`'s END_REQUEST, None when there is none."""
    for kind, r, content in records:
        if kind == fastcgi.END_REQUEST and r == rid:
            return int(fastcgi.END_BODY.unpack(content)[1])
    return None


def summary(events: list[Event]) -> list[object]:
    """A parser's events with heads as their fields and body pieces joined: comparable across
    chunkings."""
    out: list[object] = []
    for event in events:
        if isinstance(event, GatewayHead):
            out.append((event.method, event.target, event.keep_alive, event.headers))
        elif isinstance(event, bytes) and out and isinstance(out[-1], bytes):
            out[-1] += event
        else:
            out.append(event)
    return out


class Client:
    """One connection to a gateway listener (a TCP port on 127.0.0.1, or a unix socket path),
    reading what the server answers."""

    def __init__(self, where: int | str, timeout: float = 10.0) -> None:
        family = socket.AF_UNIX if isinstance(where, str) else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(where if isinstance(where, str) else ("127.0.0.1", where))
        except BaseException:
            self.sock.close()
            raise
        self.received = b""
        self.eof = False

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        data = self.sock.recv(256 * 1024)
        if not data:
            self.eof = True
        self.received += data
        return bool(data)

    def until_close(self) -> bytes:
        """Everything until the server closes the connection."""
        while self._fill():
            pass
        return self.received

    def until_end(self, rid: int) -> list[tuple[int, int, bytes]]:
        """The records received until `rid`'s END_REQUEST (or the close)."""
        while end_status(read_records(self.received), rid) is None and self._fill():
            pass
        return read_records(self.received)

    def take(self) -> bytes:
        data, self.received = self.received, b""
        return data
