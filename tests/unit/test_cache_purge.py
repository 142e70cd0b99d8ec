"""Purges of the response cache: the ctl words, and the message from the master to its fronts
over their channels (maitred.frontapps), as a front's table of apps reads them."""

from __future__ import annotations

import asyncio
import logging
import pickle
import socket
from types import SimpleNamespace

import pytest

from maitred import frontapps
from maitred.cachecommands import PurgeError, parse
from maitred.front.apptable import AppTable
from maitred.frontapps import Purge, encode_purge

# Long enough for a message on a local socket pair to reach a loop that runs, on a busy machine.
DELIVERY = 0.2


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


def test_the_message_round_trips_and_the_front_refuses_what_it_cannot_read() -> None:
    master, front = frontapps.pair()
    with master, front:
        master.send(encode_purge(Purge("prefix", "/é", "blog")))
        assert frontapps.receive(front) == Purge("prefix", "/é", "blog")
        with pytest.raises(ValueError):
            encode_purge(Purge("all", "/"))
        unknown = [
            (b"nonsense", "malformed"),
            (pickle.dumps(["purge"]), "malformed"),
            (pickle.dumps(("purge", ("url",))), "malformed"),
            (pickle.dumps(("purge", ("all", "x", ""))), "unknown kind 'all'"),
            (pickle.dumps(("reboot", ())), "unknown kind 'reboot'"),
        ]
        for data, why in unknown:
            master.send(data)
            with pytest.raises(ValueError, match=why):
                frontapps.receive(front)
        master.close()
        assert frontapps.receive(front) is None  # the master is gone


class FakeCache:
    def __init__(self) -> None:
        self.purged: list[dict[str, str]] = []

    def purge(self, **asked: str) -> int:
        self.purged.append(asked)
        return 3


def listening(loop: asyncio.AbstractEventLoop, control: socket.socket) -> dict[str, FakeCache]:
    """A front's table of apps reading `control`, with two apps' caches; those caches."""
    caches = {"main": FakeCache(), "blog": FakeCache()}
    front = SimpleNamespace(loop=loop, router=SimpleNamespace(caches=caches))
    AppTable(front).listen(control)  # type: ignore[arg-type]
    return caches


def test_a_purge_reaches_two_fronts_and_a_bad_message_is_only_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.new_event_loop()
    pairs = [frontapps.pair(), frontapps.pair()]
    cached = [SimpleNamespace(cfg=SimpleNamespace(cache_size=1))]
    channels = [frontapps.Channel(master, [], cached) for master, _ in pairs]  # type: ignore[arg-type]
    try:
        fronts = [listening(loop, front) for _, front in pairs]
        pairs[0][0].send(b"garbage")  # a bug of the master's: the front logs it, serves on
        with caplog.at_level(logging.INFO, logger="maitred.error"):
            assert all(c.purge(encode_purge(Purge("tag", "t"))) for c in channels)
            assert all(c.purge(encode_purge(Purge("url", "/x", "blog"))) for c in channels)
            loop.run_until_complete(asyncio.sleep(DELIVERY))
        for caches in fronts:
            assert caches["main"].purged == [{"tag": "t"}]
            assert caches["blog"].purged == [{"tag": "t"}, {"url": "/x"}]
        said = [r.getMessage() for r in caplog.records if r.name == "maitred.error"]
        assert any(text.startswith("front: a malformed message") for text in said)
        assert caplog.text.count("cache purge by tag t: 6 entries dropped") == 2
    finally:
        for master, front in pairs:
            master.close()
            front.close()
        loop.close()


def test_a_purge_that_does_not_fit_waits_for_a_later_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    master, front = frontapps.pair()
    channel = frontapps.Channel(master, [], [])
    message = encode_purge(Purge("url", "/"))
    with master, front:
        sent = 0
        with pytest.raises(BlockingIOError):
            while True:  # a front that does not read: its channel fills up
                master.send(message)
                sent += 1
        assert channel.purge(encode_purge(Purge("tag", "late")))
        assert len(channel.purges) == 1  # the master did not wait
        monkeypatch.setattr(frontapps, "MAX_QUEUED_PURGES", 1)
        assert not channel.purge(message)  # past the bound: refused, said in the log
        for _ in range(sent):
            assert frontapps.receive(front) == Purge("url", "/")
        channel.send_purges()  # a later turn of the master's loop
        assert not channel.purges
        assert frontapps.receive(front) == Purge("tag", "late")
