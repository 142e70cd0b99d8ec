"""The parser's strictness beyond the corpus: unbounded framing, counting, what an error keeps."""

from __future__ import annotations

import pytest

from maitred.http.errors import ProtocolError
from maitred.http.parser import END, Limits, RequestHead, RequestParser

CHUNKED_HEAD = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
BLOCK = b"a" * 65536
FEEDS = 100  # 6.4 MB: far past the bound of a default head (about 800 KB)


@pytest.mark.parametrize(
    "opening",
    [
        CHUNKED_HEAD + b"5\r\nhello\r\n0\r\nX-Trailer: ",  # one trailer field growing forever
        CHUNKED_HEAD + b"5;name=",  # a chunk extension growing forever
    ],
)
def test_bytes_that_make_no_progress_are_bounded(opening: bytes) -> None:
    parser = RequestParser(Limits())
    parser.feed(opening)
    with pytest.raises(ProtocolError) as info:
        for _ in range(FEEDS):
            parser.feed(BLOCK)
    assert info.value.status == 431


def test_a_large_body_is_progress() -> None:
    parser = RequestParser(Limits())
    parser.feed(CHUNKED_HEAD)
    for _ in range(FEEDS):
        events = parser.feed(b"10000\r\n" + BLOCK + b"\r\n")
        assert sum(len(e) for e in events if isinstance(e, bytes)) == len(BLOCK)
    assert parser.feed(b"0\r\n\r\n") == [END]


def test_requests_before_an_error_travel_with_it() -> None:
    parser = RequestParser(Limits())
    with pytest.raises(ProtocolError) as info:
        parser.feed(b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\nGET /bad HTTP/1.1\r\nHost : a\r\n\r\n")
    head, end = info.value.events
    assert isinstance(head, RequestHead) and head.target == b"/ok" and end is END


def test_messages_count_the_requests_begun() -> None:
    parser = RequestParser(Limits())
    assert parser.messages == 0
    parser.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HT")
    assert parser.messages == 2 and parser.in_head


@pytest.mark.parametrize(
    "later",
    [
        b"Host: a.example/evil\r\n",  # malformed
        b"Host: a.example\r\nHost: a.example\r\n",  # repeated
        b"",  # missing
    ],
)
def test_each_request_of_a_connection_has_its_host_checked(later: bytes) -> None:
    parser = RequestParser(Limits())
    ok = b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n"
    assert len(parser.feed(ok + ok)) == 4  # a Host checked once passes again
    with pytest.raises(ProtocolError) as info:
        parser.feed(b"GET / HTTP/1.1\r\n" + later + b"\r\n")
    assert info.value.status == 400
