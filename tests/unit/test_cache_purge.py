"""Purges of the response cache: the ctl words, and the message from the master to a front."""

from __future__ import annotations

import asyncio
import os

import pytest

from maitred.cachecommands import PurgeError, parse
from maitred.front.commands import MAX_MESSAGE, CommandReader, Purge, decode, encode_purge


def test_the_words_of_a_purge() -> None:
    assert parse(("purge", "--url", "/a?b=1")) == Purge("url", "/a?b=1")
    assert parse(("purge", "--prefix", "/news", "--app", "blog")) == Purge(
        "prefix", "/news", "blog"
    )
    assert parse(("purge", "--tag", "product-7")) == Purge("tag", "product-7")
    for wrong in [
        (),
        ("purge",),
        ("flush", "--url", "/"),
        ("purge", "--url"),
        ("purge", "--url", "/", "--tag", "x"),
        ("purge", "--host", "x"),
        ("purge", "url", "/"),
        ("purge", "--url", ""),
    ]:
        with pytest.raises(PurgeError):
            parse(wrong)


def test_the_message_round_trips_and_stays_one_pipe_write() -> None:
    line = encode_purge(Purge("prefix", "/é"))
    assert line.endswith(b"\n") and decode(line.rstrip(b"\n")) == Purge("prefix", "/é")
    with pytest.raises(ValueError):
        encode_purge(Purge("url", "/" + "x" * MAX_MESSAGE))
    for bad in [b"nonsense", b'{"purge": "all", "value": "x"}', b"[]"]:
        with pytest.raises(ValueError):
            decode(bad)


class FakeCache:
    def __init__(self) -> None:
        self.purged: list[dict[str, str]] = []

    def purge(self, **asked: str) -> int:
        self.purged.append(asked)
        return 3


def test_a_front_applies_what_the_master_writes() -> None:
    loop = asyncio.new_event_loop()
    read_fd, write_fd = os.pipe()
    caches = {"main": FakeCache(), "blog": FakeCache()}
    try:
        CommandReader.start(loop, read_fd, caches)  # type: ignore[arg-type]
        os.write(write_fd, encode_purge(Purge("tag", "t")) + b"garbage\n")
        os.write(write_fd, encode_purge(Purge("url", "/x", "blog")))
        loop.run_until_complete(asyncio.sleep(0.05))
        assert caches["main"].purged == [{"tag": "t"}]
        assert caches["blog"].purged == [{"tag": "t"}, {"url": "/x"}]
        os.close(write_fd)  # the master is gone: the reader stops and closes its end
        loop.run_until_complete(asyncio.sleep(0.05))
        with pytest.raises(OSError):
            os.fstat(read_fd)
    finally:
        loop.close()
