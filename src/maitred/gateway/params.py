"""A proxy's CGI variables (uwsgi vars, FastCGI params) as the front's request head and peer.

Theory of operation
-------------------
nginx's ``uwsgi_pass`` and ``fastcgi_pass`` do not forward the HTTP request: they send CGI
variables (``REQUEST_METHOD``, ``REQUEST_URI``, ``HTTP_*``...) and then the body. The front runs
every request through the same exchange, router and dispatcher, so :func:`head_from_params`
spells those variables as the :class:`~maitred.http.parser.RequestHead` the HTTP parser makes:

* the method, and the version from ``SERVER_PROTOCOL`` (``HTTP/2.0`` when nginx spoke HTTP/2
  to its client: the worker then says so in the environ);
* the target: with ``PATH_INFO`` given, ``SCRIPT_NAME`` + ``PATH_INFO`` (as nginx split them,
  percent-encoded again so the worker decodes them exactly once) and ``QUERY_STRING``;
  ``SCRIPT_NAME`` travels on as the head's ``script_name``. A ``PATH_INFO`` that starts with
  ``SCRIPT_NAME`` holds the whole path (uwsgi_params' ``$document_uri``): the prefix is taken
  off. A ``SCRIPT_NAME`` equal to ``DOCUMENT_URI`` is fastcgi_params' whole path (a PHP
  script's name), not a mount: it is ignored. Without ``PATH_INFO``, ``REQUEST_URI`` is the
  target as the client sent it, read like an HTTP request's (``SCRIPT_NAME`` from
  ``--root-path``), as fastcgi_params alone has it;
* ``HTTP_*`` variables as header fields (``HTTP_USER_AGENT`` -> ``USER-AGENT``), and
  ``CONTENT_TYPE``/``CONTENT_LENGTH`` as theirs; the body's length is ``CONTENT_LENGTH``.

Who the client is (:func:`peer_from_params`) is a proxy's claim, as with forwarded headers:
``REMOTE_ADDR``, ``REMOTE_PORT`` and ``HTTPS``/``REQUEST_SCHEME`` count only when the peer
that sent them passes --forwarded-allow-ips; from anyone else the socket's own peer stands,
with the url scheme ``http``. ``SERVER_NAME``/``SERVER_PORT`` name this server as the client
addressed it and are taken as they come, like a Host field. Other variables (``DOCUMENT_ROOT``,
uwsgi's ``UWSGI_*`` magic) are ignored: nothing a proxy sends picks the app or a Python file.

Nothing here knows sockets or processes.
"""

from __future__ import annotations

from urllib.parse import quote_from_bytes

from maitred.front.proxy import UNKNOWN_PORT, Peer, parse_ip
from maitred.http.errors import BodyTooLarge, ProtocolError
from maitred.http.parser import Event, Headers, Limits, RequestHead

HTTP_PREFIX = b"HTTP_"
# The CGI variables a proxy sends besides the HTTP_* headers (nginx's uwsgi_params and
# fastcgi_params hold 16 and 18): how many of them the params block may carry on top of
# --limit-request-fields.
CGI_VARIABLES = 32
# Characters of a path that stay as they are when PATH_INFO is percent-encoded back into a
# target (RFC 3986 pchar and "/"); everything else ("%", "?", "#", spaces, non-ASCII) is encoded.
_PATH_SAFE = "/!$&'()*+,;=:@~"
_VERSION_CHARS = frozenset(b"0123456789.")
DEFAULT_VERSION = "1.1"
# Fields the CGI variables of their own carry; an HTTP_ spelling of them is not the client's.
_OWN_FIELDS = frozenset((b"HTTP_CONTENT_TYPE", b"HTTP_CONTENT_LENGTH"))
_HTTPS_ON = frozenset((b"on", b"ON", b"1"))


class GatewayError(ProtocolError):
    """A proxy sent a packet or record we cannot read: the connection is closed (no answer
    could be framed for it) and one line logged."""


class GatewayHead(RequestHead):
    """A request head from a proxy's variables; `params` are those variables, for its peer."""

    __slots__ = ("params",)
    params: dict[bytes, bytes]


def param_limits(limits: Limits) -> tuple[int, int, int]:
    """(most bytes in a params block, most variables, longest variable) from the HTTP limits
    that mean the same: a head's size, its field count, its longest line."""
    return (
        limits.head,
        limits.fields + CGI_VARIABLES,
        max(limits.field_size, limits.request_line),
    )


def head_from_params(params: dict[bytes, bytes], keep_alive: bool) -> GatewayHead:
    """The request head the proxy's variables describe; GatewayError when they describe none."""
    method = params.get(b"REQUEST_METHOD", b"")
    if not method or not method.isalpha():
        raise GatewayError("no valid REQUEST_METHOD")
    headers: Headers = []
    for name, value in params.items():
        if name.startswith(HTTP_PREFIX) and name not in _OWN_FIELDS:
            headers.append((name[len(HTTP_PREFIX) :].replace(b"_", b"-"), value))
    content_type = params.get(b"CONTENT_TYPE")
    if content_type:
        headers.append((b"Content-Type", content_type))
    length = params.get(b"CONTENT_LENGTH") or b"0"
    if not length.isdigit():
        raise GatewayError(f"bad CONTENT_LENGTH {length[:20]!r}")
    if length.strip(b"0"):
        headers.append((b"Content-Length", length))
    target, script_name = _target(params)
    head = GatewayHead(method, target, _version(params), headers, keep_alive)
    head.params = params
    head.content_length = int(length)
    head.script_name = script_name
    return head


def refuse_oversize(head: RequestHead, events: list[Event], body_limit: int) -> None:
    """BodyTooLarge when the head's CONTENT_LENGTH is over `body_limit` (--limit-request-body;
    0: none), carrying `events` (the head last among them): the connection makes the request
    first, so its 413 answers a known request (its location, id and access log line), as
    maitred.http.parser does for HTTP."""
    length = head.content_length
    if body_limit and length is not None and length > body_limit:
        error = BodyTooLarge(f"body of {length} bytes")
        error.events = events
        raise error


def _version(params: dict[bytes, bytes]) -> str:
    protocol = params.get(b"SERVER_PROTOCOL", b"")
    version = protocol[5:] if protocol.startswith(b"HTTP/") else b""
    if not version or not _VERSION_CHARS.issuperset(version):
        return DEFAULT_VERSION
    return version.decode("ascii")


def _target(params: dict[bytes, bytes]) -> tuple[bytes, str]:
    """(target, SCRIPT_NAME: "" for --root-path) as the module docstring says."""
    query = params.get(b"QUERY_STRING", b"")
    path_info = params.get(b"PATH_INFO")
    if path_info is None:
        uri = params.get(b"REQUEST_URI") or params.get(b"DOCUMENT_URI") or b"/"
        if b"?" not in uri and query:
            uri += b"?" + query
        return uri, ""
    script = params.get(b"SCRIPT_NAME", b"").rstrip(b"/")
    if script == params.get(b"DOCUMENT_URI", b"").rstrip(b"/"):
        script = b""  # fastcgi_params' whole path (a PHP script's), beside PATH_INFO $uri
    if script and (path_info == script or path_info.startswith(script + b"/")):
        path_info = path_info[len(script) :]
    path = quote_from_bytes(script + path_info, _PATH_SAFE).encode("ascii") or b"/"
    target = path + b"?" + query if query else path
    return target, script.decode("latin-1")


def peer_from_params(params: dict[bytes, bytes], socket_peer: Peer, trusted: bool) -> Peer:
    """(REMOTE_ADDR, REMOTE_PORT, SERVER_NAME, SERVER_PORT, url scheme) of a proxied request:
    the proxy's word for the client only when `trusted` (module docstring)."""
    remote_addr, remote_port, server_name, server_port, _ = socket_peer
    name, port = params.get(b"SERVER_NAME"), params.get(b"SERVER_PORT")
    if name:
        server_name = name.decode("latin-1")
    if port and port.isdigit():
        server_port = port.decode("ascii")
    if not trusted:
        return remote_addr, remote_port, server_name, server_port, "http"
    addr = params.get(b"REMOTE_ADDR", b"").decode("latin-1")
    ip = parse_ip(addr) if addr else None
    if ip is not None:
        port_text = params.get(b"REMOTE_PORT", b"")
        remote_addr = str(ip)
        remote_port = port_text.decode("ascii") if port_text.isdigit() else UNKNOWN_PORT
    https = params.get(b"HTTPS") in _HTTPS_ON or params.get(b"REQUEST_SCHEME") == b"https"
    return remote_addr, remote_port, server_name, server_port, "https" if https else "http"
