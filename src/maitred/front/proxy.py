"""Who the client really is, when a proxy stands in front: forwarded headers and PROXY protocol.

Only a peer in --forwarded-allow-ips is believed. From such a peer, per request:

* ``X-Forwarded-For`` is read right to left, skipping addresses that are themselves trusted
  proxies; the first one that is not is the client (REMOTE_ADDR). Reading from the right means a
  client cannot pick its own address by sending a forged header through a proxy that appends.
* ``X-Forwarded-Proto`` and ``X-Forwarded-Host`` give wsgi.url_scheme and HTTP_HOST: the entry at
  the same position as the client's address when the lists line up, else the last one (the one
  the nearest proxy wrote).
* ``Forwarded`` (RFC 7239) is used the same way when there is no ``X-Forwarded-For``; its
  ``for``, ``proto`` and ``host`` come from one element, so they always belong together.

With --proxy-protocol every connection must begin with a PROXY protocol header (v1 text or v2
binary, as HAProxy and the cloud load balancers send it). :class:`ProxyHeaderGate` is the
connection's protocol until the header is in; it then hands the transport to a
:class:`~maitred.front.connection.ClientConnection` (``transport.set_protocol``), so the
header costs nothing once read. The header's source address counts only when the peer that
sent it is trusted; from anyone else it is read (to find where HTTP begins) and ignored.

Owned by the event loop thread.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import struct
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from maitred.front.connection import ClientConnection
    from maitred.front.main import Front

log = logging.getLogger("maitred.error")

Peer = tuple[str, str, str, str, str]  # REMOTE_ADDR, REMOTE_PORT, SERVER_NAME, SERVER_PORT, scheme
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_SCHEMES = {"http": "http", "https": "https"}
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:[]")
# Distinct peer addresses whose trust is remembered (the parse is the costly part); a bound, as
# addresses come from the network.
_CACHE_SIZE = 4096
UNKNOWN_PORT = "0"  # REMOTE_PORT when a proxy names the client without a port
# The request fields (lower-case names) a proxy uses to say who the client is.
FORWARDED_FIELDS = frozenset(
    {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded"}
)


class TrustedPeers:
    """The --forwarded-allow-ips test: is this peer address a proxy we believe?"""

    def __init__(self, entries: Iterable[str]) -> None:
        entries = list(entries)
        self.anyone = "*" in entries
        self.unix = "unix" in entries
        self.networks = [
            ipaddress.ip_network(entry, strict=False)
            for entry in entries
            if entry not in ("*", "unix")
        ]
        self._cache: dict[str, bool] = {}

    def __call__(self, addr: str) -> bool:
        if self.anyone:
            return True
        if not addr:
            return self.unix  # a Unix-socket peer has no address
        known = self._cache.get(addr)
        if known is None:
            ip = parse_ip(addr)
            known = ip is not None and any(ip in net for net in self.networks)
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[addr] = known
        return known

    @property
    def nobody(self) -> bool:
        return not (self.anyone or self.unix or self.networks)


def parse_ip(text: str) -> IPAddress | None:
    try:
        ip = ipaddress.ip_address(text.partition("%")[0])  # drop an IPv6 zone id
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # ::ffff:10.0.0.1 on a dual-stack socket is 10.0.0.1
    return ip


def split_node(node: str) -> tuple[str, str]:
    """(address, port) of `1.2.3.4`, `1.2.3.4:80`, `[2001:db8::1]:80` or `2001:db8::1`."""
    node = node.strip()
    if node.startswith("["):
        addr, _, rest = node[1:].partition("]")
        return addr, rest[1:] if rest.startswith(":") else ""
    if node.count(":") == 1:
        addr, _, port = node.partition(":")
        return addr, port
    return node, ""


class Forwarded:
    """Reads the forwarded headers of requests from trusted peers."""

    def __init__(self, trusted: TrustedPeers) -> None:
        self.trusted = trusted

    def apply(self, fields: dict[bytes, list[bytes]], peer: Peer) -> tuple[Peer, str | None]:
        """The request's peer tuple and Host as the proxy says they are (None: Host unchanged).

        `fields` are the request's (:attr:`maitred.http.parser.RequestHead.fields`).
        """
        xff = _items(fields.get(b"x-forwarded-for", ()))
        protos = _items(fields.get(b"x-forwarded-proto", ()))
        hosts = _items(fields.get(b"x-forwarded-host", ()))
        forwarded = [
            element
            for value in fields.get(b"forwarded", ())
            for element in _forwarded_elements(value.decode("latin-1"))
        ]
        if not (xff or protos or hosts or forwarded):
            return peer, None  # a trusted peer that is not a proxy
        if xff:
            index = self._client_index([split_node(hop) for hop in xff])
            node = split_node(xff[index])
            proto = _aligned(protos, index, len(xff))
            host = _aligned(hosts, index, len(xff))
        elif forwarded:
            elements = [_forwarded_pairs(element) for element in forwarded]
            index = self._client_index([split_node(e.get("for", "")) for e in elements])
            chosen = elements[index]
            node = split_node(chosen["for"]) if "for" in chosen else ("", "")
            proto = chosen.get("proto")
            host = chosen.get("host")
        else:
            proto = _aligned(protos, 0, 1)
            host = _aligned(hosts, 0, 1)
            node = ("", "")
        remote_addr, remote_port, server_name, server_port, scheme = peer
        ip = parse_ip(node[0]) if node[0] else None
        if ip is not None:
            remote_addr, remote_port = str(ip), node[1] if node[1].isdigit() else UNKNOWN_PORT
        scheme = _SCHEMES.get((proto or "").strip().lower(), scheme)
        if host is not None:
            host = host.strip()
            if not host or not _HOST_CHARS.issuperset(host):
                host = None
        return (remote_addr, remote_port, server_name, server_port, scheme), host

    def _client_index(self, nodes: list[tuple[str, str]]) -> int:
        """Position of the client: the rightmost node that is not a trusted proxy."""
        index = len(nodes) - 1
        while index > 0 and self.trusted(nodes[index][0]):
            index -= 1
        return index


def _items(values: Iterable[bytes]) -> list[str]:
    """The comma-separated items of a field's lines, as one list (RFC 9110 section 5.3)."""
    return [item for value in values for item in value.decode("latin-1").split(",")]


def _aligned(values: list[str], index: int, count: int) -> str | None:
    if not values:
        return None
    return values[index] if len(values) == count else values[-1]


def _forwarded_elements(value: str) -> list[str]:
    """The comma-separated elements of a Forwarded value, commas in quotes kept."""
    elements: list[str] = []
    current: list[str] = []
    quoted = False
    for char in value:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            elements.append("".join(current))
            current = []
        else:
            current.append(char)
    elements.append("".join(current))
    return [element for element in elements if element.strip()]


def _forwarded_pairs(element: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for pair in element.split(";"):
        key, sep, value = pair.partition("=")
        if sep:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1].replace("\\", "")
            pairs.setdefault(key.strip().lower(), value)
    return pairs


# --- PROXY protocol ---

V1_PREFIX = b"PROXY "
V1_MAX = 107  # the longest v1 line the specification allows, CRLF included
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_HEADER = struct.Struct("!12sBBH")
# A v2 header may carry TLVs (cloud load balancers add a few); more than this is not a header.
V2_MAX = 4096
# Seconds a new connection has to send its PROXY header; a load balancer sends it at once.
HEADER_TIMEOUT = 10.0


class ProxyHeaderError(Exception):
    pass


def parse_proxy_header(data: bytes) -> tuple[tuple[str, str] | None, int] | None:
    """((source address, port) or None for LOCAL/UNKNOWN, bytes used); None: need more data."""
    if data[:12] == V2_SIGNATURE[: len(data[:12])] and data[:1] == b"\r":
        return _parse_v2(data)
    if data[:6] != V1_PREFIX[: len(data[:6])]:
        raise ProxyHeaderError("no PROXY protocol header")
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX:
            raise ProxyHeaderError("PROXY v1 line too long")
        return None
    parts = data[:end].decode("ascii", "replace").split(" ")
    if len(parts) >= 2 and parts[1] == "UNKNOWN":
        return None, end + 2
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
        raise ProxyHeaderError("malformed PROXY v1 line")
    source, port = parts[2], parts[4]
    if parse_ip(source) is None or not port.isdigit() or int(port) > 0xFFFF:
        raise ProxyHeaderError("malformed PROXY v1 address")
    return (source, port), end + 2


def _parse_v2(data: bytes) -> tuple[tuple[str, str] | None, int] | None:
    if len(data) < V2_HEADER.size:
        return None
    signature, version_command, family, length = V2_HEADER.unpack_from(data)
    if signature != V2_SIGNATURE or version_command >> 4 != 2:
        raise ProxyHeaderError("malformed PROXY v2 header")
    total = V2_HEADER.size + length
    if total > V2_MAX:
        raise ProxyHeaderError("PROXY v2 header too long")
    if len(data) < total:
        return None
    command = version_command & 0x0F
    body = data[V2_HEADER.size : total]
    if command == 0:  # LOCAL: the proxy's own connection (a health check)
        return None, total
    if command != 1:
        raise ProxyHeaderError("unknown PROXY v2 command")
    address_family = family >> 4
    if address_family == 1 and len(body) >= 12:
        source = str(ipaddress.IPv4Address(body[0:4]))
        port = struct.unpack_from("!H", body, 8)[0]
    elif address_family == 2 and len(body) >= 36:
        source = str(ipaddress.IPv6Address(body[0:16]))
        port = struct.unpack_from("!H", body, 32)[0]
    else:
        return None, total  # AF_UNSPEC or AF_UNIX: no address to report
    return (source, str(port)), total


class ProxyHeaderGate(asyncio.Protocol):
    """A connection's protocol until its PROXY header is in; then the ClientConnection's."""

    def __init__(self, front: Front, make: Callable[[], ClientConnection]) -> None:
        self.front = front
        self.make = make
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.timer = self.front.loop.call_later(HEADER_TIMEOUT, self.transport.close)

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        self.buffer += data  # bounded: at most V2_MAX bytes before a decision
        try:
            result = parse_proxy_header(self.buffer)
        except ProxyHeaderError as exc:
            log.debug("closing a connection: %s", exc)
            transport.close()
            return
        if result is None:
            return
        source, used = result
        if self.timer is not None:
            self.timer.cancel()
        conn = self.make()
        transport.set_protocol(conn)
        conn.connection_made(transport)
        if source is not None and self.front.router.trusted(conn.peer[0]):
            conn.peer = (source[0], source[1], *conn.peer[2:])
        rest, self.buffer = self.buffer[used:], b""
        if rest:
            conn.data_received(rest)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.transport = None
