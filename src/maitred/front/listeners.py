"""What a front knows of its listeners and of each connection's two ends.

A listener speaks HTTP, HTTPS or a gateway protocol (uwsgi://, fastcgi://): the gateways' and
TLS's modules are imported only by a front that has such a listener (gateway_classes,
open_connections), since they would take memory in every front that serves HTTP alone. The
server end of a connection's peer (SERVER_NAME, SERVER_PORT, scheme) is settled once per
listener when it is the same for all its connections (server_end), which spares each new
connection the lookups peer_info would make.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Mapping, Sequence, Sized
from typing import TYPE_CHECKING

from maitred import sockets
from maitred.front.connection import ClientConnection

if TYPE_CHECKING:
    from maitred.front.tls import FrontTLS

# SERVER_NAME, SERVER_PORT and url scheme of a connection (the end of its peer tuple); that of
# a Unix-socket listener, where there are no addresses (server_end).
ServerEnd = tuple[str, str, str]
UNIX_END: ServerEnd = ("localhost", "", "http")


def gateway_classes(protocols: Sequence[str]) -> Mapping[str, type[ClientConnection]]:
    """The connection classes of the protocols other than HTTP, by protocol.

    The gateways (uwsgi://, fastcgi://) are imported only by a front that has such a listener:
    their modules would take memory in every front that serves HTTP alone.
    """
    if all(protocol in (sockets.HTTP, sockets.HTTPS) for protocol in protocols):
        return {}
    from maitred.front.gateway import GATEWAYS

    return GATEWAYS


def open_connections(connections: Sized, tls: FrontTLS) -> Sized:
    """What a front with TLS listeners counts against --max-connections: its connections and
    its handshakes under way. front/tls.py is imported only by such a front (like the
    gateways, see gateway_classes)."""
    from maitred.front.tls import OpenConnections

    return OpenConnections(connections, tls.handshakes)


def server_end(listener: socket.socket) -> ServerEnd | None:
    """SERVER_NAME, SERVER_PORT and scheme of every plain connection accepted on `listener`,
    or None when they differ between connections: a listener on a wildcard address (0.0.0.0,
    [::]) has each connection's own local address. Settled once per listener, it spares a new
    connection the transport's lookups of its local address and TLS object, and the strings
    they build: about half of what the peer tuple costs (uvloop and asyncio both call
    getsockname(2) on every accepted socket anyway, before the front hears of it)."""
    if listener.family not in (socket.AF_INET, socket.AF_INET6):
        return UNIX_END
    try:
        host, port = listener.getsockname()[:2]
        unspecified = ipaddress.ip_address(host.partition("%")[0]).is_unspecified
    except (OSError, ValueError):
        return None  # closed, or an address it cannot read: ask each connection
    return None if unspecified else (host, str(port), "http")


def peer_info(
    transport: asyncio.BaseTransport, server: ServerEnd | None = None
) -> tuple[str, str, str, str, str]:
    """(REMOTE_ADDR, REMOTE_PORT, SERVER_NAME, SERVER_PORT, url scheme) of a connection;
    `server` is the last three when its listener says them for all (:func:`server_end`)."""
    if server is not None:
        if server is UNIX_END:
            return ("", "", *server)  # no addresses: nothing to ask
        remote = transport.get_extra_info("peername")
        if isinstance(remote, tuple):
            return (remote[0], str(remote[1]), *server)
    peer = transport.get_extra_info("peername")
    local = transport.get_extra_info("sockname")
    scheme = "http" if transport.get_extra_info("ssl_object") is None else "https"
    if isinstance(local, tuple):
        remote = peer if isinstance(peer, tuple) else ("", 0)
        return (remote[0], str(remote[1]), local[0], str(local[1]), scheme)
    return ("", "", "localhost", "", scheme)  # a unix socket: no addresses to report
