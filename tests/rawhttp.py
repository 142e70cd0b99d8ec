"""A minimal HTTP/1.1 client over a raw socket, for tests that need to see the wire.

It sends exactly the bytes a test gives it and parses responses strictly enough to notice what a
forgiving client would hide: a body shorter than its Content-Length, a missing terminating chunk,
a connection left open or closed, interim 100 responses, pipelined responses in order.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

CRLF = b"\r\n"
HEAD_END = b"\r\n\r\n"
RECV_SIZE = 256 * 1024
# Every wait on the server is bounded; tests that expect something quick pass a shorter one.
DEFAULT_TIMEOUT = 10.0


class ConnectionClosed(Exception):
    """The server closed the connection before a complete response head arrived."""


@dataclass
class Response:
    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    # False when the connection ended before the framing said the body was over.
    complete: bool = True

    def header(self, name: str) -> str | None:
        values = self.header_values(name)
        return ", ".join(values) if values else None

    def header_values(self, name: str) -> list[str]:
        wanted = name.lower()
        return [v for k, v in self.headers if k.lower() == wanted]

    @property
    def is_chunked(self) -> bool:
        return "chunked" in (self.header("Transfer-Encoding") or "").lower()


def request_bytes(
    method: str,
    path: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    version: str = "HTTP/1.1",
) -> bytes:
    """Serialise a request; adds Host, and Content-Length when there is a body and none given."""
    headers = list(headers or [])
    names = {k.lower() for k, _ in headers}
    if "host" not in names:
        headers.insert(0, ("Host", "127.0.0.1"))
    if body and not names & {"content-length", "transfer-encoding"}:
        headers.append(("Content-Length", str(len(body))))
    lines = [f"{method} {path} {version}", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(*parts: bytes) -> bytes:
    """A chunked body with one chunk per part and the terminating zero chunk."""
    out = [b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p]
    return b"".join(out) + b"0\r\n\r\n"


@dataclass(frozen=True)
class ServerEnd:
    """The server's end of one loopback connection, as the kernel's TCP table shows it."""

    inode: int  # 0 until the server accepted it
    unread: int  # bytes received that the server has not read yet
    state: str  # the kernel's TCP state, in hex: "01" established, "06" TIME_WAIT


LOOPBACK_HEX = "0100007F"  # 127.0.0.1 as /proc/net/tcp writes it


def server_ends(server_port: int, client_ports: Iterable[int]) -> dict[int, ServerEnd]:
    """The server's ends of the connections from 127.0.0.1:PORT, by PORT (those still there).

    Only those rows of /proc/net/tcp are looked at: a test's own connections."""
    local = f"{LOOPBACK_HEX}:{server_port:04X}"
    remotes = {f"{LOOPBACK_HEX}:{port:04X}": port for port in client_ports}
    found = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[2] in remotes:
            end = ServerEnd(int(fields[9]), int(fields[4].split(":")[1], 16), fields[3])
            found[remotes[fields[2]]] = end
    return found


def server_end(server_port: int, client_port: int) -> ServerEnd | None:
    """The server's end of the connection from 127.0.0.1:client_port, or None (not there)."""
    return server_ends(server_port, [client_port]).get(client_port)


class RawConnection:
    """One TCP connection to 127.0.0.1:port with a receive buffer and response parser."""

    def __init__(
        self, port: int, timeout: float = DEFAULT_TIMEOUT, source: str = "", recv_buffer: int = 0
    ) -> None:
        """`source`: the local address to connect from (another loopback address, 127.0.0.2).
        `recv_buffer`: the socket's SO_RCVBUF (0: the system's), set before connecting so that a
        client that does not read lets only that much of a response reach it."""
        self.port = port
        self.sock = socket.socket()
        self.sock.settimeout(timeout)
        try:
            if recv_buffer:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, recv_buffer)
            if source:
                self.sock.bind((source, 0))
            self.sock.connect(("127.0.0.1", port))
        except BaseException:
            self.sock.close()
            raise
        self._buf = bytearray()
        self._eof = False

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    @property
    def local_port(self) -> int:
        return int(self.sock.getsockname()[1])

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_by_server(self) -> bool:
        """True once the server has accepted this connection and read all that was sent."""
        end = server_end(self.port, self.local_port)
        return end is not None and end.inode != 0 and end.unread == 0

    def request(
        self,
        method: str,
        path: str,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        version: str = "HTTP/1.1",
    ) -> Response:
        """Send one request and read its final response (skipping interim 1xx responses)."""
        self.send(request_bytes(method, path, headers, body, version))
        response = self.read_response(method)
        while 100 <= response.status < 200:
            response = self.read_response(method)
        return response

    # -- receiving ---------------------------------------------------------------------------

    def _fill(self) -> bool:
        """Receive more bytes into the buffer; False at end of stream."""
        if self._eof:
            return False
        data = self.sock.recv(RECV_SIZE)
        if not data:
            self._eof = True
            return False
        self._buf += data
        return True

    def _take(self, n: int) -> bytes:
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def _read_until(self, sep: bytes) -> bytes | None:
        """Bytes up to and including ``sep``, or None if the stream ends first."""
        scanned = 0
        while True:
            at = self._buf.find(sep, scanned)
            if at >= 0:
                return self._take(at + len(sep))
            scanned = max(0, len(self._buf) - len(sep) + 1)
            if not self._fill():
                return None

    def read_exact(self, n: int) -> bytes:
        """Up to ``n`` bytes; fewer only if the stream ends."""
        while len(self._buf) < n and self._fill():
            pass
        return self._take(min(n, len(self._buf)))

    def read_some(self) -> bytes:
        """Whatever is buffered, or the next bytes to arrive (b"" at end of stream)."""
        if not self._buf:
            self._fill()
        return self._take(len(self._buf))

    def read_head(self) -> Response:
        head = self._read_until(HEAD_END)
        if head is None:
            raise ConnectionClosed(f"connection closed; partial head {bytes(self._buf)!r}")
        status_line, *lines = head[: -len(HEAD_END)].decode("latin-1").split("\r\n")
        version, status, reason = [*status_line.split(" ", 2), ""][:3]
        headers = []
        for line in lines:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
        return Response(version, int(status), reason, headers)

    def read_chunk(self) -> bytes | None:
        """The data of the next chunk of a chunked body: b"" for the last chunk, None at EOF."""
        size_line = self._read_until(CRLF)
        if size_line is None:
            return None
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (trailer := self._read_until(CRLF)) not in (CRLF, None):
                pass
            return b"" if trailer == CRLF else None
        data = self.read_exact(size)
        if len(data) < size or self.read_exact(2) != CRLF:
            return None
        return data

    def read_body(self, response: Response, method: str = "GET") -> None:
        """Fill ``response.body`` according to its framing, noting whether it was complete."""
        if method == "HEAD" or response.status < 200 or response.status in (204, 304):
            return
        length = response.header("Content-Length")
        if response.is_chunked:
            parts = []
            while (chunk := self.read_chunk()) is not None and chunk:
                parts.append(chunk)
            response.body, response.complete = b"".join(parts), chunk == b""
        elif length is not None:
            response.body = self.read_exact(int(length))
            response.complete = len(response.body) == int(length)
        else:
            parts = []
            while data := self.read_some():
                parts.append(data)
            response.body = b"".join(parts)

    def read_response(self, method: str = "GET") -> Response:
        response = self.read_head()
        self.read_body(response, method)
        return response

    def at_eof(self, timeout: float = 5.0) -> bool:
        """True if the server closes the connection within ``timeout`` with nothing more sent.

        Raises if unexpected bytes arrive; returns False if the connection stays open.
        """
        if self._buf:
            raise AssertionError(f"unexpected bytes after response: {bytes(self._buf[:200])!r}")
        previous = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            more = self._fill()
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
        finally:
            self.sock.settimeout(previous)
        if more:
            raise AssertionError(f"unexpected bytes after response: {bytes(self._buf[:200])!r}")
        return True


def fetch(
    port: int,
    method: str,
    path: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    version: str = "HTTP/1.1",
    timeout: float = DEFAULT_TIMEOUT,
) -> Response:
    """One request on a fresh connection, closed afterwards."""
    with RawConnection(port, timeout) as conn:
        return conn.request(method, path, headers, body, version)


def unix_get(path: Path, target: str) -> tuple[int, bytes]:
    """GET over a unix socket, the connection closed by the server after the answer."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(DEFAULT_TIMEOUT)
        sock.connect(str(path))
        send_closing_get(sock, target)
        return read_to_close(sock)


def unix_listening(path: Path) -> bool:
    """Whether a server accepts on the unix socket at `path`: the path appears when the
    socket is bound, a moment before it listens (connecting then is refused)."""
    with socket.socket(socket.AF_UNIX) as sock:
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            return False
    return True


def send_closing_get(sock: socket.socket, target: str) -> None:
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())


def read_to_close(sock: socket.socket) -> tuple[int, bytes]:
    """The status and body of the one response the server sends before it closes."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body
