"""The uwsgi packet reader, fed raw bytes whole, in two at every split point, and broken."""

from __future__ import annotations

import struct

import pytest

from gatewaywire import params_with, summary, uwsgi_packet
from maitred.gateway.params import GatewayError, GatewayHead
from maitred.gateway.uwsgi import UwsgiParser, uwsgi_frame
from maitred.http.errors import BodyTooLarge
from maitred.http.framing import BodyEnd
from maitred.http.parser import END, Limits

BODY = b"name=value&x=1"
POST = uwsgi_packet(params_with(BODY, UWSGI_SCRIPT=b"evil:app", UWSGI_CHDIR=b"/"), BODY)


def test_a_whole_packet_is_a_head_its_body_and_the_end() -> None:
    parser = UwsgiParser(Limits())
    events = parser.feed(POST)
    head, body, end = events
    assert isinstance(head, GatewayHead)
    assert (head.method, head.target, head.version) == (b"POST", b"/a/b?x=1", "1.1")
    assert head.content_length == len(BODY) and not head.keep_alive
    assert (body, end) == (BODY, END)
    assert parser.closed and parser.messages == 1
    assert parser.feed(b"more") == []  # one request per connection


def test_magic_uwsgi_variables_are_ignored() -> None:
    head = UwsgiParser(Limits()).feed(POST)[0]
    assert isinstance(head, GatewayHead)
    names = [name for name, _ in head.headers]
    assert names == [b"HOST", b"USER-AGENT", b"Content-Length"]
    assert not any(b"UWSGI" in name for name in names)


@pytest.mark.parametrize("split", range(1, len(POST)))
def test_every_split_point_gives_the_same_events(split: int) -> None:
    parser = UwsgiParser(Limits())
    in_head = []
    events = parser.feed(POST[:split])
    in_head.append(parser.in_head)
    events += parser.feed(POST[split:])
    assert summary(events) == summary(UwsgiParser(Limits()).feed(POST))
    assert in_head == [split < len(POST) - len(BODY)]


def test_byte_by_byte() -> None:
    parser = UwsgiParser(Limits())
    events = [event for byte in POST for event in parser.feed(bytes((byte,)))]
    assert summary(events) == summary(UwsgiParser(Limits()).feed(POST))


def test_a_request_without_body_ends_with_its_head() -> None:
    events = UwsgiParser(Limits()).feed(uwsgi_packet(params_with()))
    assert len(events) == 2 and events[1] is END


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (uwsgi_packet(params_with(), modifier1=5), "modifier1 5"),
        # The block says 10 bytes; the key inside says 300.
        (struct.pack("<BHB", 0, 10, 0) + struct.pack("<H", 300) + b"x" * 8, "past the vars"),
        # A key whose value size is cut off by the block's end.
        (struct.pack("<BHB", 0, 4, 0) + struct.pack("<H", 1) + b"k" + b"\0", "past the vars"),
        (uwsgi_packet(params_with(CONTENT_LENGTH=b"12x")), "CONTENT_LENGTH"),
        (uwsgi_packet(params_with(CONTENT_LENGTH=b"-1")), "CONTENT_LENGTH"),
        (uwsgi_packet(params_with(REQUEST_METHOD=b"")), "REQUEST_METHOD"),
    ],
)
def test_bad_packets_are_refused(packet: bytes, reason: str) -> None:
    with pytest.raises(GatewayError, match=reason):
        UwsgiParser(Limits()).feed(packet)


def test_an_oversize_vars_block_is_refused_from_its_header() -> None:
    limits = Limits(request_line=100, fields=2, field_size=100)
    big = uwsgi_packet(params_with(HTTP_COOKIE=b"c" * 60000))
    with pytest.raises(GatewayError, match="over the head limits"):
        UwsgiParser(limits).feed(big[:4])  # the size alone says so: nothing is held


def test_too_many_or_too_long_vars_are_refused() -> None:
    limits = Limits(request_line=200, fields=2, field_size=2000)
    many = params_with(**{f"HTTP_X{i}": b"1" for i in range(40)})
    with pytest.raises(GatewayError, match="too many"):
        UwsgiParser(limits).feed(uwsgi_packet(many))
    with pytest.raises(GatewayError, match="field size"):
        UwsgiParser(limits).feed(uwsgi_packet(params_with(HTTP_COOKIE=b"c" * 3000)))


def test_a_body_over_the_limit_is_refused_after_its_head() -> None:
    """The head goes out ahead of the error, so the 413 answers (and logs) a known request."""
    with pytest.raises(BodyTooLarge) as refused:
        UwsgiParser(Limits(body=10)).feed(POST)
    [head] = refused.value.events
    assert isinstance(head, GatewayHead) and head.content_length == len(BODY)


def test_responses_are_framed_up_to_the_close() -> None:
    known = uwsgi_frame(200, 5, "1.1", True, False)
    assert (known.end, known.keep_alive, known.chunked) == (BodyEnd.LENGTH, False, False)
    unknown = uwsgi_frame(200, -1, "1.1", True, False)
    assert (unknown.end, unknown.chunked, unknown.write_body) == (BodyEnd.CLOSE, False, True)
    assert not uwsgi_frame(200, 5, "1.1", True, True).write_body  # HEAD
