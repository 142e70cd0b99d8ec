"""The control socket's wire format: length-prefixed JSON, both ways (sans-IO).

A message is a 4-byte big-endian length, then that many bytes of UTF-8 JSON. The client sends
one request and reads one answer; the master then closes the connection.

    request   {"command": "workers", "args": ["shop", "3"]}        ("args" may be left out)
    answer    {"ok": true, "result": ...}                          (what the command returns)
              {"ok": false, "error": "unknown app 'shp'; apps: shop, blog"}

A request longer than MAX_REQUEST, one that is not JSON, not an object, or whose command is
not a string or whose args are not a list of strings, is answered with an error and changes
nothing (maitred.control). Answers may be longer (a `stacks` of many threads), up to
MAX_ANSWER, which the client enforces.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

LENGTH = struct.Struct(">I")
MAX_REQUEST = 64 * 1024  # bytes: a command and a few words; more is not a request
MAX_ANSWER = 16 * 1024 * 1024  # bytes: the stacks of hundreds of threads fit many times over


class ProtocolError(ValueError):
    """What arrived is not a message of this protocol; the text says why, in one line."""


@dataclass(frozen=True)
class Request:
    command: str
    args: tuple[str, ...] = ()


def encode(message: Any) -> bytes:
    """One message: its length, then its JSON."""
    payload = json.dumps(message, separators=(",", ":")).encode("utf-8")
    return LENGTH.pack(len(payload)) + payload


class Decoder:
    """Takes bytes as they arrive; `message` is the payload once it is whole."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._buffer = bytearray()
        self.message: bytes | None = None

    def feed(self, data: bytes) -> bytes | None:
        """The whole payload once it is in (None until then); ProtocolError when it is
        longer than the limit (said as soon as the length is read), or past its end."""
        self._buffer += data
        if len(self._buffer) < LENGTH.size:
            return None
        (size,) = LENGTH.unpack_from(self._buffer)
        if size > self.limit:
            raise ProtocolError(f"message of {size} bytes: at most {self.limit}")
        end = LENGTH.size + size
        if len(self._buffer) > end:
            raise ProtocolError("bytes after the message: one message per connection")
        if len(self._buffer) < end:
            return None
        self.message = bytes(self._buffer[LENGTH.size :])
        return self.message


def json_object(payload: bytes, what: str) -> dict[str, Any]:
    """The JSON object in a payload; ProtocolError naming `what` when it is not one."""
    try:
        message = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"{what} is a JSON object")
    return message


def parse_request(payload: bytes) -> Request:
    """The request in a payload; ProtocolError when it is not one."""
    message = json_object(payload, "a request")
    command, args = message.get("command"), message.get("args", [])
    if not isinstance(command, str) or not command:
        raise ProtocolError('a request names its "command" (a string)')
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ProtocolError('"args" is a list of strings')
    unknown = set(message) - {"command", "args"}
    if unknown:
        raise ProtocolError(f"unknown fields: {', '.join(sorted(unknown))}")
    return Request(command, tuple(args))


def parse_answer(payload: bytes) -> Any:
    """The result of an answer; ProtocolError with the master's words when it is an error,
    or when it is not an answer at all."""
    message = json_object(payload, "an answer")
    if "ok" not in message:
        raise ProtocolError("the master's answer is not an answer")
    if not message["ok"]:
        raise ProtocolError(str(message.get("error", "error")))
    return message.get("result")


def ok(result: Any) -> bytes:
    return encode({"ok": True, "result": result})


def error(text: str) -> bytes:
    return encode({"ok": False, "error": text})
