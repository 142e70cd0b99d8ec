"""Listening sockets: parse bind addresses, bind them once in the master.

The master binds every listener before it starts any other process; the fronts inherit them
through fork, so a restarted front (or a reloaded server) keeps the same sockets and no
connection attempt is refused in between.

With several fronts, each TCP address gets one socket per front, bound with SO_REUSEPORT
(:func:`bind_group`): the kernel spreads new connections evenly over them by a hash of the
client's address and port. One socket shared by all fronts would go to whichever front woke
first, and a burst of connections (a browser's, a load balancer's pool) would all land on one.
A unix socket cannot be shared that way; all fronts accept on the one socket.

A second server started on an address this one serves must be refused, as it is when it binds
one plain socket (EADDRINUSE), not share or take over the address. Two cases need a check of
their own. Linux lets any socket of the same user that sets SO_REUSEPORT join a group, so before
binding one, :func:`bind_group` binds a probe without SO_REUSEPORT, which any socket on the
address refuses; the group then takes the probe's port (port 0: one free port for all). A unix
socket's file outlives a server that crashed and must be removed before binding again, but not
while a server listens on it (the path would then lead to us, and the other server would serve
an inode nobody can reach): :func:`bind` connects to it first and removes it only when refused.
An error names the address, since the bare "Address already in use" does not say which one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import ipaddress
import os
import re
import socket
import stat
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

UNIX_PREFIX = "unix:"
# `fd://NAME`: the socket systemd passed under that name (maitred.inherit), bound by nobody here.
FD_PREFIX = "fd://"
# What systemd allows in a FileDescriptorName= (printable ASCII without `:`, at most 255).
FD_NAME = re.compile(r"[!-9;-~]{1,255}")
# The scheme a bind address may start with says what its clients speak: HTTP (the default, no
# scheme needed); HTTPS, HTTP over TLS (a bare address is TLS when a certificate is given and
# no address says https://, maitred.tls); or the uwsgi and FastCGI protocols an existing nginx
# (uwsgi_pass, fastcgi_pass) talks to an app server with (maitred.gateway).
HTTP, HTTPS, UWSGI, FASTCGI = "http", "https", "uwsgi", "fastcgi"
SCHEMES = (HTTP, HTTPS, UWSGI, FASTCGI)
GATEWAY_SCHEMES = (UWSGI, FASTCGI)  # the schemes of listeners maitred.front.gateway serves
SCHEME_END = "://"
# A connect to a listening unix socket completes at once, into the backlog, whether or not the
# server accepts; only a full backlog makes a blocking connect wait, for a server that may be
# hung. With a timeout Linux does not wait at all (EAGAIN, which also says a server is there);
# the timeout bounds the wait where a kernel would wait, so a hung server cannot hang our start.
UNIX_CHECK_TIMEOUT = 1.0


@dataclass(frozen=True)
class Address:
    family: socket.AddressFamily
    host: str  # empty for unix sockets
    port: int
    path: str = ""  # unix sockets only
    name: str = ""  # fd://NAME only (family AF_UNSPEC): a socket systemd passed
    scheme: str = ""  # as the bind address says it: "" or one of SCHEMES

    @property
    def protocol(self) -> str:
        """What its clients speak once connected: HTTP (over TLS or not), UWSGI or FASTCGI."""
        return self.scheme if self.scheme in GATEWAY_SCHEMES else HTTP

    def __str__(self) -> str:
        """The address as `--bind` takes it, for error messages."""
        scheme = self.scheme + SCHEME_END if self.scheme not in ("", HTTP) else ""
        if self.name:
            return scheme + FD_PREFIX + self.name
        if self.family == socket.AF_UNIX:
            return scheme + UNIX_PREFIX + self.path
        host = f"[{self.host}]" if self.family == socket.AF_INET6 else self.host
        return f"{scheme}{host}:{self.port}"

    def url(self, bound: socket.socket, scheme: str = "") -> str:
        """Where `bound` listens, with the scheme it is served with (maitred.tls.schemes;
        default: the one it says, or http)."""
        scheme = scheme or self.scheme or HTTP
        if self.name:
            return address_of(bound).url(bound, scheme)
        bare = dataclasses.replace(self, scheme="")
        if self.family == socket.AF_UNIX:
            return str(bare) if scheme == HTTP else f"{scheme}{SCHEME_END}{bare}"
        host, port = bound.getsockname()[:2]
        return f"{scheme}{SCHEME_END}{dataclasses.replace(bare, host=host, port=port)}"


def address_of(sock: socket.socket) -> Address:
    """Where a socket listens, as an Address."""
    where = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        path = where.decode("utf-8", "replace") if isinstance(where, bytes) else where
        return Address(socket.AF_UNIX, "", 0, path)
    return Address(sock.family, where[0], where[1])


def same_address(address: Address, sock: socket.socket) -> bool:
    """Whether `sock` listens where `address` says (a host name never matches: it may name
    several addresses)."""
    if address.name or sock.family != address.family:
        return False
    actual = address_of(sock)
    if address.family == socket.AF_UNIX:
        return os.path.abspath(address.path) == actual.path
    try:
        same_host = ipaddress.ip_address(address.host) == ipaddress.ip_address(actual.host)
    except ValueError:
        return False
    return same_host and address.port == actual.port


def parse_address(text: str) -> Address:
    """`HOST:PORT`, `[V6]:PORT`, `:PORT`, `HOST` (port 8000), `unix:/path` or `fd://NAME`, each
    optionally after a scheme: `http://`, `https://`, `uwsgi://` or `fastcgi://` (what the
    listener's clients speak; `https://fd://web`)."""
    if text.startswith(FD_PREFIX):
        name = text[len(FD_PREFIX) :]
        if not FD_NAME.fullmatch(name):
            raise ValueError(f"bad socket name in {text!r}")
        return Address(socket.AF_UNSPEC, "", 0, name=name)
    scheme, sep, rest = text.partition(SCHEME_END)
    if not sep:
        return _parse_place(text)
    if scheme.lower() not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r} in {text!r}: one of {', '.join(SCHEMES)}")
    place = parse_address(rest) if rest.startswith(FD_PREFIX) else _parse_place(rest)
    return dataclasses.replace(place, scheme=scheme.lower())


def _parse_place(text: str) -> Address:
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
    for a unix address or a count of 1. A second server on the address is refused either way."""
    if count == 1 or address.family == socket.AF_UNIX:
        return [bind(address, backlog)]
    same_port = dataclasses.replace(address, port=_free_port(address))
    group: list[socket.socket] = []
    try:
        group.extend(bind(same_port, backlog, reuse_port=True) for _ in range(count))
    except BaseException:
        for sock in group:
            sock.close()
        raise
    return group


def bind(address: Address, backlog: int, reuse_port: bool = False) -> socket.socket:
    """A listening, non-inheritable-by-exec socket for one address."""
    sock = socket.socket(address.family, socket.SOCK_STREAM)
    try:
        _bind_to(sock, address, reuse_port)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _free_port(address: Address) -> int:
    """The port a group may take on a TCP address (a free one for port 0); EADDRINUSE if any
    socket holds it. A socket bound without SO_REUSEPORT conflicts with every other on the
    port, where one with it would join their group."""
    with socket.socket(address.family, socket.SOCK_STREAM) as probe:
        _bind_to(probe, address, reuse_port=False)
        port: int = probe.getsockname()[1]
    # Closed before the group binds, which it would refuse; a socket that never listened
    # leaves nothing behind (no TIME_WAIT), so the port is free again at once.
    return port


def _bind_to(sock: socket.socket, address: Address, reuse_port: bool) -> None:
    """Bind a new socket with our options: the probe must be refused exactly where the
    listeners would be (SO_REUSEADDR, IPV6_V6ONLY), so both are set up here."""
    try:
        if address.family == socket.AF_UNIX:
            _remove_stale_unix_socket(address.path)
            sock.bind(address.path)
            return
        # SO_REUSEADDR: a restart must not wait for the last server's TIME_WAIT connections.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if address.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address.host, address.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError as exc:  # the bare error does not say which of the addresses
        if exc.errno is None:  # "AF_UNIX path too long"
            raise OSError(f"{exc}: {address}") from exc
        raise OSError(exc.errno, exc.strerror, str(address)) from exc


def _remove_stale_unix_socket(path: str) -> None:
    """Remove the socket file a server that is gone left at `path`; EADDRINUSE if a server
    listens on it. Anything else at the path is left for bind to fail on."""
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return
    except FileNotFoundError:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(UNIX_CHECK_TIMEOUT)
        try:
            probe.connect(path)
        except ConnectionRefusedError:  # nobody listens: stale
            with contextlib.suppress(FileNotFoundError):  # removed by another server meanwhile
                os.unlink(path)
            return
        except FileNotFoundError:  # removed since the stat: nothing to do
            return
        except PermissionError:
            raise  # we cannot tell whether a server is there, so the file is not ours to remove
        except OSError:
            pass  # a full backlog (EAGAIN, a timeout) or a datagram socket: someone is there
    raise OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE))


def bind_all(
    texts: Sequence[str],
    backlog: int,
    count: int,
    inherited: Mapping[int, Sequence[socket.socket]] = MappingProxyType({}),
    schemes: Sequence[str] = (),
) -> tuple[list[list[socket.socket]], list[str]]:
    """Each bind address's group of `count` listeners, and their URLs (with the scheme each
    is served with, from `schemes`: http by default). A group inherited for an address (by its
    index in `texts`, maitred.inherit) is used instead of binding when it has the address's
    family (a changed address is bound anew); inherited groups left unused are closed. If one
    cannot be bound, those bound before it are closed too."""
    groups: list[list[socket.socket]] = []
    urls = []
    used: set[int] = set()
    try:
        for index, text in enumerate(texts):
            address = parse_address(text)
            given = inherited.get(index)
            if given and (address.name or given[0].family == address.family):
                group = list(given)
                used.add(index)
            elif address.name:
                raise OSError(errno.ENOENT, "systemd passed no socket of that name", text)
            else:
                group = bind_group(address, backlog, count)
            groups.append(group)
            scheme = schemes[index] if index < len(schemes) else ""
            urls.append(address.url(group[0], scheme))
    except BaseException:
        close_all(groups, keep_paths=False)  # a unix socket's path too: nobody serves it
        raise
    for index, extra in inherited.items():
        if index not in used:
            for sock in extra:
                sock.close()
    return groups, urls


def close_all(
    groups: Sequence[Sequence[socket.socket]],
    keep_paths: bool,
    not_ours: Collection[socket.socket] = (),
) -> None:
    """Close listeners; remove a unix socket's path too, unless `keep_paths` (another
    process serves it now) or the socket is in `not_ours` (systemd's: its socket unit owns
    the path)."""
    for sock in (sock for group in groups for sock in group):
        if sock.family == socket.AF_UNIX and not keep_paths and sock not in not_ours:
            path = sock.getsockname()
            if isinstance(path, str) and path and os.path.exists(path):
                os.unlink(path)
        sock.close()
