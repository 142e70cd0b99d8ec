"""Listening sockets: parse bind addresses, bind them once in the master.

The master binds every listener before it starts any other process; the fronts inherit them
through fork, so a restarted front (or a reloaded server) keeps the same sockets and no
connection attempt is refused in between.

With several fronts, each TCP address gets one socket per front, bound with SO_REUSEPORT
(:func:`bind_group`): the kernel spreads new connections evenly over them by a hash of the
client's address and port. One socket shared by all fronts would go to whichever front woke
first, and a burst of connections (a browser's, a load balancer's pool) would all land on one.
A unix socket cannot be shared that way; all fronts accept on the one socket.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import stat
from dataclasses import dataclass

UNIX_PREFIX = "unix:"


@dataclass(frozen=True)
class Address:
    family: socket.AddressFamily
    host: str  # empty for unix sockets
    port: int
    path: str = ""  # unix sockets only

    def url(self, bound: socket.socket) -> str:
        if self.family == socket.AF_UNIX:
            return UNIX_PREFIX + self.path
        host, port = bound.getsockname()[:2]
        shown = f"[{host}]" if self.family == socket.AF_INET6 else host
        return f"http://{shown}:{port}"


def parse_address(text: str) -> Address:
    """`HOST:PORT`, `[V6]:PORT`, `:PORT`, `HOST` (port 8000) or `unix:/path`."""
    if text.startswith(UNIX_PREFIX):
        path = text[len(UNIX_PREFIX) :]
        if not path:
            raise ValueError("empty unix socket path")
        return Address(socket.AF_UNIX, "", 0, path)
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(text)
        port_text = rest[1:] or "8000"
        family = socket.AF_INET6
    else:
        host, _, port_text = text.rpartition(":") if ":" in text else (text, "", "8000")
        host = host or "0.0.0.0"
        if ":" in host:
            raise ValueError("IPv6 addresses need brackets: [::1]:8000")
        family = socket.AF_INET
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"bad port in {text!r}")
    return Address(family, host, int(port_text))


def bind_group(address: Address, backlog: int, count: int) -> list[socket.socket]:
    """`count` listening sockets on one TCP address, in one SO_REUSEPORT group; one socket
    for a unix address or a count of 1 (a second server on the port is then refused)."""
    if count == 1 or address.family == socket.AF_UNIX:
        return [bind(address, backlog)]
    group = [bind(address, backlog, reuse_port=True)]
    same_port = dataclasses.replace(address, port=group[0].getsockname()[1])  # port 0: chosen
    try:
        group.extend(bind(same_port, backlog, reuse_port=True) for _ in range(count - 1))
    except BaseException:
        for sock in group:
            sock.close()
        raise
    return group


def bind(address: Address, backlog: int, reuse_port: bool = False) -> socket.socket:
    """A listening, non-inheritable-by-exec socket for one address."""
    sock = socket.socket(address.family, socket.SOCK_STREAM)
    try:
        if address.family == socket.AF_UNIX:
            _remove_stale_unix_socket(address.path)
            sock.bind(address.path)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if address.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address.host, address.port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _remove_stale_unix_socket(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
