"""The sans-IO request parser, fed whole and in every chunking."""

from __future__ import annotations

import random

import pytest

from maitred.http.errors import ProtocolError
from maitred.http.parser import END, Event, Limits, RequestHead, RequestParser


def feed(data: bytes, step: int = 0, limits: Limits | None = None) -> list[Event]:
    parser = RequestParser(limits or Limits())
    if not step:
        return parser.feed(data)
    events: list[Event] = []
    for start in range(0, len(data), step):
        events += parser.feed(data[start : start + step])
    return events


def merged(events: list[Event]) -> list[object]:
    """Body pieces joined, so that different chunkings compare equal."""
    out: list[object] = []
    for event in events:
        if isinstance(event, bytes) and out and isinstance(out[-1], bytes):
            out[-1] += event
        elif isinstance(event, RequestHead):
            out.append((event.method, event.target, event.version, event.keep_alive))
        else:
            out.append(event)
    return out


GET = b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\n"
CHUNKED = (
    b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: t\r\n\r\n"
)


@pytest.mark.parametrize("step", [0, 1, 2, 3, 7])
def test_get_and_pipelined_requests_in_any_chunking(step: int) -> None:
    events = merged(feed(GET + CHUNKED + b"GET / HTTP/1.0\r\n\r\n", step))
    assert events == [
        (b"GET", b"/a?b=1", "1.1", True),
        END,
        (b"POST", b"/up", "1.1", True),
        b"hello world",
        END,
        (b"GET", b"/", "1.0", False),
        END,
    ]


def test_random_chunkings_agree() -> None:
    rng = random.Random(1234)
    data = GET + CHUNKED + GET
    expected = merged(feed(data))
    for _ in range(200):
        parser = RequestParser(Limits())
        events: list[Event] = []
        pos = 0
        while pos < len(data):
            size = rng.randint(1, 20)
            events += parser.feed(data[pos : pos + size])
            pos += size
        assert merged(events) == expected


def test_head_fields() -> None:
    head = feed(
        b"PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-continue\r\n"
        b"X-A: 1\r\nX-A: 2\r\n\r\nabc"
    )[0]
    assert isinstance(head, RequestHead)
    assert head.content_length == 3
    assert head.expect_continue
    assert head.headers[-2:] == [(b"X-A", b"1"), (b"X-A", b"2")]


def test_fields_by_lower_case_name_with_repeated_lines_in_order() -> None:
    head = feed(
        b"POST /x HTTP/1.1\r\nhOST: h\r\nX-A: 1\r\nCONTENT-length: 3\r\nx-a: 2\r\nX-A: 3\r\n\r\nabc"
    )[0]
    assert isinstance(head, RequestHead)
    assert head.fields == {b"host": [b"h"], b"x-a": [b"1", b"2", b"3"], b"content-length": [b"3"]}
    assert head.content_length == 3
    assert head.headers[0] == (b"hOST", b"h")  # the worker still gets the names as sent


def test_a_chunked_body_whatever_the_case_of_the_name() -> None:
    events = feed(
        b"POST / HTTP/1.1\r\nHost: a\r\ntransfer-ENCODING: Chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
    )
    assert isinstance(events[0], RequestHead) and events[0].chunked
    assert events[1:] == [b"hi", END]


TE_TAB = b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\t \t\r\n\r\n"


@pytest.mark.parametrize("step", [0, 1, 2, 3, 7])
def test_tabs_after_chunked_are_whitespace_in_any_chunking(step: int) -> None:
    events = feed(GET + TE_TAB + b"2\r\nhi\r\n0\r\n\r\n" + GET, step)
    head = events[2]
    assert isinstance(head, RequestHead) and head.chunked
    assert head.fields[b"transfer-encoding"] == [b"chunked   "]  # OWS, as llhttp got it
    assert merged(events) == [
        (b"GET", b"/a?b=1", "1.1", True),
        END,
        (b"POST", b"/up", "1.1", True),
        b"hi",
        END,
        (b"GET", b"/a?b=1", "1.1", True),
        END,
    ]


def test_a_tab_after_chunked_in_a_request_right_behind_a_body() -> None:
    parser = RequestParser(Limits())
    assert merged(parser.feed(b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n")) == [
        (b"PUT", b"/", "1.1", True)
    ]
    events = parser.feed(b"a\tb" + TE_TAB + b"0\r\n\r\n")
    assert merged(events) == [b"a\tb", END, (b"POST", b"/up", "1.1", True), END]


@pytest.mark.parametrize("step", [0, 1, 3])
def test_tabs_after_chunked_elsewhere_are_passed_on_as_sent(step: int) -> None:
    tsv = b"chunked\tchunked\t\r\nTransfer-Encoding: chunked\t\r\n"
    body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(tsv), tsv)
    raw = TE_TAB.replace(b"Host: x", b"Host: x\r\nX-A: chunked\t") + body
    raw += b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(tsv), tsv)
    events = feed(raw, step)
    first, second = events[0], [e for e in events if isinstance(e, RequestHead)][1]
    assert isinstance(first, RequestHead) and first.fields[b"x-a"] == [b"chunked\t"]
    assert isinstance(second, RequestHead) and second.content_length == len(tsv)
    assert [e for e in merged(events) if isinstance(e, bytes)] == [tsv, tsv]


def test_set_host_replaces_the_host_field_or_adds_one() -> None:
    head = RequestHead(b"GET", b"/", "1.1", [(b"HOST", b"old"), (b"X", b"y")], True)
    head.set_host(b"new")
    assert head.headers == [(b"HOST", b"new"), (b"X", b"y")]
    assert head.fields == {b"host": [b"new"], b"x": [b"y"]}
    head = RequestHead(b"GET", b"/", "1.0", [(b"X", b"y")], False)
    head.set_host(b"new")
    assert head.headers == [(b"X", b"y"), (b"Host", b"new")]
    assert head.fields == {b"host": [b"new"], b"x": [b"y"]}


def test_http10_keep_alive_is_honoured() -> None:
    head = feed(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")[0]
    assert isinstance(head, RequestHead) and head.keep_alive


def test_connection_close() -> None:
    head = feed(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")[0]
    assert isinstance(head, RequestHead) and not head.keep_alive


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", 400),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n z\r\n\r\n", 400),  # obs-fold
        (b"GET / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n", 417),
        # Fields by name, whatever its case, and every line of a repeated one:
        (b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHOST: a/b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nEXPECT: magic\r\n\r\n", 417),
        (b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nexpect: magic\r\n\r\n", 417),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTRANSFER-encoding: gzip, chunked\r\n\r\n", 501),
        (b"POST / HTTP/1.0\r\nTransfer-ENCODING: chunked\r\n\r\n", 400),
        # A tab after chunked is whitespace, never a way around the rules above:
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\t, gzip\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\tgzip\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\t\r\n\r\n", 501),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\t\r\n\r\n", 400),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"0\r\nTransfer-Encoding: chunked\t\r\n\r\n",
            400,
        ),
    ],
)
def test_rejections_carry_a_status(raw: bytes, status: int) -> None:
    with pytest.raises(ProtocolError) as info:
        feed(raw)
    assert info.value.status == status


def test_limits() -> None:
    limits = Limits(request_line=64, fields=3, field_size=100, body=10)
    with pytest.raises(ProtocolError) as info:
        feed(b"GET /" + b"a" * 100 + b" HTTP/1.1\r\n\r\n", limits=limits)
    assert info.value.status == 414
    with pytest.raises(ProtocolError) as info:
        feed(b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", limits=limits)
    assert info.value.status == 431
    with pytest.raises(ProtocolError) as info:
        feed(b"GET / HTTP/1.1\r\nHost: " + b"a" * 200 + b"\r\n\r\n", limits=limits)
    assert info.value.status == 431
    with pytest.raises(ProtocolError) as info:
        feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n", limits=limits)
    assert info.value.status == 413
    chunked = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n"
    with pytest.raises(ProtocolError) as info:
        feed(chunked + b"8\r\n12345678\r\n", limits=limits)
    assert info.value.status == 413


def test_a_field_growing_without_end_is_cut_off() -> None:
    limits = Limits(request_line=64, fields=2, field_size=64)
    parser = RequestParser(limits)
    parser.feed(b"GET / HTTP/1.1\r\nX: ")
    with pytest.raises(ProtocolError) as info:
        for _ in range(100):
            parser.feed(b"a" * 64)
    assert info.value.status == 431


def test_upgrade_ends_the_stream() -> None:
    parser = RequestParser(Limits())
    events = parser.feed(
        b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81"
    )
    head = events[0]
    assert isinstance(head, RequestHead) and head.upgrade and not head.keep_alive
    assert events[-1] is END
    assert parser.closed
    assert parser.feed(b"GET / HTTP/1.1\r\n\r\n") == []


UPLOAD_HEAD = b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n"


def test_a_read_that_is_all_body_is_the_body_event_itself() -> None:
    """An upload's bytes are handed on as they came from the socket, not copied per piece."""
    parser = RequestParser(Limits())
    assert [type(event) for event in parser.feed(UPLOAD_HEAD + b"abc")] == [RequestHead, bytes]
    piece = b"defg" + bytes(1)  # a fresh object, as a socket read is
    events = parser.feed(piece)
    assert len(events) == 1 and events[0] is piece
    assert parser.feed(b"xy") == [b"xy", END]


def test_the_request_after_a_body_taken_past_llhttp_is_parsed_afresh() -> None:
    parser = RequestParser(Limits())
    parser.feed(UPLOAD_HEAD + b"abc")
    events = parser.feed(b"defghij" + GET + UPLOAD_HEAD[:20])
    assert merged(events) == [b"defghij", END, (b"GET", b"/a?b=1", "1.1", True), END]
    assert parser.in_head and parser.messages == 3
    events = parser.feed(UPLOAD_HEAD[20:] + b"0123456789")
    assert merged(events) == [(b"POST", b"/up", "1.1", True), b"0123456789", END]


def test_nothing_follows_a_closing_request_whose_body_came_in_pieces() -> None:
    parser = RequestParser(Limits())
    head = UPLOAD_HEAD.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    parser.feed(head + b"abc")
    assert parser.feed(b"defghij" + GET) == [b"defghij", END]
    assert parser.closed and parser.feed(GET) == []


def test_body_bytes_taken_by_the_caller_make_no_event_and_an_empty_feed_ends_it() -> None:
    parser = RequestParser(Limits())
    parser.feed(UPLOAD_HEAD + b"abc")
    assert parser.body_left == 7
    parser.body_taken(4)
    assert parser.body_left == 3 and parser.feed(b"") == []
    parser.body_taken(3)
    assert parser.body_left == 0
    assert parser.feed(b"") == [END]
    assert merged(parser.feed(GET)) == [(b"GET", b"/a?b=1", "1.1", True), END]
