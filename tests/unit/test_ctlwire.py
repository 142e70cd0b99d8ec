"""The control socket's protocol: framing, requests, answers, the command table (no server)."""

from __future__ import annotations

import json
import os
import socket
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from maitred import ctlview, ctlwire
from maitred.control import Command, CommandError, Commands, ControlServer, Pending
from maitred.ctlwire import Decoder, ProtocolError, Request, parse_answer, parse_request


def test_a_message_decodes_whole_and_byte_by_byte() -> None:
    data = ctlwire.encode({"command": "workers", "args": ["shop", "3"]})
    assert data[:4] == len(data[4:]).to_bytes(4, "big")
    whole = Decoder(ctlwire.MAX_REQUEST).feed(data)
    decoder = Decoder(ctlwire.MAX_REQUEST)
    pieces = [decoder.feed(data[i : i + 1]) for i in range(len(data))]
    assert pieces[:-1] == [None] * (len(data) - 1)
    assert pieces[-1] == whole
    assert parse_request(whole or b"") == Request("workers", ("shop", "3"))


def test_an_oversized_message_is_refused_as_soon_as_its_length_is_read() -> None:
    with pytest.raises(ProtocolError, match="message of 65537 bytes: at most 65536"):
        Decoder(ctlwire.MAX_REQUEST).feed(ctlwire.LENGTH.pack(ctlwire.MAX_REQUEST + 1))


def test_bytes_past_the_message_are_refused() -> None:
    with pytest.raises(ProtocolError, match="one message per connection"):
        Decoder(ctlwire.MAX_REQUEST).feed(ctlwire.encode({"command": "status"}) + b"x")


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"{", "not JSON"),
        (b"\xff", "not JSON"),
        (b"[1]", "a request is a JSON object"),
        (b"{}", 'names its "command"'),
        (b'{"command": ""}', 'names its "command"'),
        (b'{"command": 3}', 'names its "command"'),
        (b'{"command": "x", "args": "a"}', '"args" is a list of strings'),
        (b'{"command": "x", "args": [1]}', '"args" is a list of strings'),
        (b'{"command": "x", "verbose": true}', "unknown fields: verbose"),
    ],
)
def test_malformed_requests_say_why(payload: bytes, error: str) -> None:
    with pytest.raises(ProtocolError, match=error):
        parse_request(payload)


def test_answers_give_the_result_or_the_masters_words() -> None:
    assert parse_answer(ctlwire.ok({"a": 1})[4:]) == {"a": 1}
    with pytest.raises(ProtocolError, match=r"^unknown app 'x'$"):
        parse_answer(ctlwire.error("unknown app 'x'")[4:])
    with pytest.raises(ProtocolError, match="an answer is a JSON object"):
        parse_answer(b"[]")
    with pytest.raises(ProtocolError, match="not an answer"):
        parse_answer(b"{}")


def test_the_table_runs_registered_commands_and_names_the_known_ones() -> None:
    commands = Commands()
    commands.register(Command("cache", lambda args: {"purged": list(args[1:])}, "purge P", "x"))
    assert commands.run(Request("cache", ("purge", "/a"))) == {"purged": ["/a"]}
    with pytest.raises(CommandError, match="unknown command 'cahce'; commands: cache"):
        commands.run(Request("cahce"))
    with pytest.raises(ValueError, match="registered already"):
        commands.register(Command("cache", lambda args: None, "", ""))


def refuse(args: tuple[str, ...]) -> None:
    raise CommandError("no")


class Later(Pending):
    def __init__(self) -> None:
        self.deadline = time.monotonic() + 30.0
        self.ready = False

    def done(self, now: float) -> bool:
        return self.ready

    def result(self) -> Any:
        return "gathered"


def talk(server: ControlServer, client: socket.socket, data: bytes) -> bytes:
    """Drive the server's turns until the client has its whole answer."""
    client.sendall(data)
    decoder = Decoder(ctlwire.MAX_ANSWER)
    client.setblocking(False)
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        server.turn(server.fds())
        try:
            payload = decoder.feed(client.recv(65536))
        except BlockingIOError:
            continue
        if payload is not None:
            return payload
    raise AssertionError("no answer")


def test_the_server_answers_errors_and_waits_for_a_pending_answer(tmp_path: Path) -> None:
    later = Later()
    commands = Commands()
    commands.register(Command("later", lambda args: later, "", ""))
    commands.register(Command("refuse", refuse, "", ""))
    path = str(tmp_path / "c.sock")
    server = ControlServer.bind(path, commands)
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(path)
            answer = json.loads(talk(server, client, b"\x00\x00\x00\x01x"))
        assert answer["ok"] is False and "not JSON" in answer["error"]
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(path)
            answer = json.loads(talk(server, client, ctlwire.encode({"command": "refuse"})))
        assert answer == {"ok": False, "error": "no"}
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(path)
            client.sendall(ctlwire.encode({"command": "later"}))
            for _ in range(3):
                server.turn(server.fds())
            assert server.timeout(time.monotonic()) is not None  # the loop comes back for it
            later.ready = True
            assert json.loads(talk(server, client, b"")) == {"ok": True, "result": "gathered"}
    finally:
        server.close()
    assert not os.path.exists(path)


def test_a_command_without_a_view_of_its_own_shows_as_json() -> None:
    assert ctlview.render("cache", {"purged": 2}) == '{\n  "purged": 2\n}\n'
