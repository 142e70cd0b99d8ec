"""What a connection reads requests as: a head, pieces of body, the end; and the limits.

The HTTP parser (maitred.http.parser) and the gateway protocols' parsers (maitred.gateway)
make the same events from what they read, so that a connection serves a request the same way
whatever its listener speaks:

* a :class:`RequestHead` when a request's head is complete,
* ``bytes`` for each piece of decoded body,
* :data:`END` when the request's message is complete.

:class:`Limits` bounds what one request may take, from the settings of the same names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from maitred.config import default_of

Headers = list[tuple[bytes, bytes]]


class _End:
    __slots__ = ()

    def __repr__(self) -> str:
        return "END"


END = _End()


@dataclass(frozen=True)
class Limits:
    """Size limits for one request; see the settings of the same names.

    `Limits()` has the settings table's defaults (maitred.config), written there once; the
    front builds its own from its Config.
    """

    request_line: int = default_of("limit_request_line")
    fields: int = default_of("limit_request_fields")
    field_size: int = default_of("limit_request_field_size")
    body: int = default_of("limit_request_body")  # 0 = unlimited

    @property
    def head(self) -> int:
        """Most bytes a head may take before it is complete.

        llhttp buffers a header field internally until it is whole, so without this bound a
        client could grow one field without limit before any callback sees it.
        """
        return self.request_line + self.fields * (self.field_size + 4) + 4


class RequestHead:
    """What the front needs of a request head; the worker builds the environ from it.

    ``headers`` are the field lines as the client sent them (what the worker gets); ``fields``
    are their values by lower-case name, each name's lines in order, so that the front looks a
    field up instead of lowercasing every name again wherever it needs one.
    """

    __slots__ = (
        "chunked",
        "content_length",
        "expect_continue",
        "fields",
        "headers",
        "keep_alive",
        "method",
        "script_name",
        "target",
        "upgrade",
        "version",
    )

    def __init__(
        self,
        method: bytes,
        target: bytes,
        version: str,
        headers: Headers,
        keep_alive: bool,
    ) -> None:
        # Annotated: mypy meets this class inside the import cycle parser -> config -> accesslog.
        self.method: bytes = method
        self.target: bytes = target
        self.version: str = version
        self.headers = headers
        fields: dict[bytes, list[bytes]] = {}
        for name, value in headers:
            fields.setdefault(name.lower(), []).append(value)
        self.fields = fields
        self.keep_alive = keep_alive
        self.content_length: int | None = None
        self.chunked = False
        self.expect_continue = False
        self.upgrade = False
        # The app's mount as a gateway's proxy named it (maitred.gateway.params); "": the
        # worker's --root-path.
        self.script_name = ""

    def __repr__(self) -> str:
        return f"<RequestHead {self.method!r} {self.target!r} HTTP/{self.version}>"

    def set_host(self, host: bytes) -> None:
        """Make `host` the request's Host field (as a trusted proxy says it was)."""
        if b"host" in self.fields:
            self.headers = [
                (name, host if name.lower() == b"host" else value) for name, value in self.headers
            ]
        else:
            self.headers = [*self.headers, (b"Host", host)]
        self.fields[b"host"] = [host]


Event = RequestHead | bytes | _End


class RequestReader(Protocol):
    """What a connection reads its requests with: a RequestParser, or a gateway protocol's
    parser (maitred.gateway), which makes the same events."""

    closed: bool  # no further requests on this stream
    messages: int  # requests begun (a head's identity for timers)

    @property
    def in_head(self) -> bool: ...

    def feed(self, data: bytes) -> list[Event]: ...
