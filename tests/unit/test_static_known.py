"""Plain requests for a small file served before: answered after one lstat, never stale."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from maitred import config
from maitred.front.static import StaticFiles
from maitred.http.parser import RequestHead
from maitred.http.response import DateCache


class Answer:
    """The parts of an exchange StaticFiles uses, recording what it answers."""

    def __init__(self, target: bytes, fields: list[tuple[bytes, bytes]] | None = None) -> None:
        self.head = RequestHead(b"GET", target, "1.1", [(b"Host", b"h"), *(fields or [])], True)
        self.suppress_body = False
        self.extra_head = b""
        self.answers: list[tuple[int, bytes, bytes]] = []

    def respond_full(self, status: int, length: int, head: bytes, body: bytes) -> None:
        self.answers.append((status, head, body))


@pytest.fixture
def files(tmp_path: Path) -> StaticFiles:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_bytes(b"first\n")
    cfg = config.Config(static=(("/static", str(tmp_path)),))
    return StaticFiles(cfg, DateCache())


def serve(files: StaticFiles, exchange: Answer) -> tuple[int, bytes, bytes]:
    mount = files.match(exchange.head.target)
    assert mount is not None
    exchange_: Any = exchange  # a stand-in for maitred.front.exchange.Exchange
    files.serve(exchange_, mount)
    return exchange.answers[-1]


def lstats_of(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    seen: list[bytes] = []
    real = os.lstat

    def counting(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        seen.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "lstat", counting)
    return seen


def test_a_file_served_before_takes_one_lstat(
    files: StaticFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = serve(files, Answer(b"/static/sub/a.txt"))
    seen = lstats_of(monkeypatch)
    again = serve(files, Answer(b"/static/sub/a.txt"))
    assert len(seen) == 1  # the walk would lstat sub, then a.txt
    assert again == first
    assert again[0] == 200 and again[2] == b"first\n"
    assert b"Content-Length: 6\r\n" in again[1] and b"ETag: " in again[1]


def test_a_replaced_file_is_served_new_at_once(files: StaticFiles, tmp_path: Path) -> None:
    assert serve(files, Answer(b"/static/sub/a.txt"))[2] == b"first\n"
    new = tmp_path / "sub" / "new"
    new.write_bytes(b"second, longer\n")
    new.replace(tmp_path / "sub" / "a.txt")
    status, head, body = serve(files, Answer(b"/static/sub/a.txt"))
    assert (status, body) == (200, b"second, longer\n")
    assert b"Content-Length: 15\r\n" in head
    (tmp_path / "sub" / "a.txt").unlink()
    assert serve(files, Answer(b"/static/sub/a.txt"))[0] == 404


def test_conditional_and_range_requests_take_the_whole_way(files: StaticFiles) -> None:
    _, head, _ = serve(files, Answer(b"/static/sub/a.txt"))
    etag = head.split(b"ETag: ")[1].split(b"\r\n")[0]
    assert serve(files, Answer(b"/static/sub/a.txt", [(b"If-None-Match", etag)]))[0] == 304
    ranged = serve(files, Answer(b"/static/sub/a.txt", [(b"Range", b"bytes=0-1")]))
    assert (ranged[0], ranged[2]) == (206, b"fi")
    head_request = Answer(b"/static/sub/a.txt")
    head_request.head.method = b"HEAD"
    head_request.suppress_body = True
    assert serve(files, head_request)[2] == b""
