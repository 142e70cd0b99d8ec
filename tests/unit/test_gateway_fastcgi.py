"""The FastCGI record reader, fed raw bytes whole, in two at every split point, and broken."""

from __future__ import annotations

import pytest

from gatewaywire import (
    begin,
    fcgi_request,
    params_records,
    params_with,
    read_records,
    record,
    stdin_records,
    summary,
)
from maitred.gateway import fastcgi
from maitred.gateway.fastcgi import FastCGIParser, RequestAborted, fastcgi_frame
from maitred.gateway.params import GatewayError, GatewayHead
from maitred.http.errors import BodyTooLarge
from maitred.http.framing import BodyEnd
from maitred.http.parser import END, Limits

BODY = b"name=value&x=1"
MAX_CONNS = 77


def parser(limits: Limits | None = None) -> FastCGIParser:
    return FastCGIParser(limits or Limits(), MAX_CONNS)


POST = fcgi_request(1, params_with(BODY), BODY)


def test_a_request_is_a_head_its_body_and_the_end() -> None:
    reader = parser()
    head, body, end = reader.feed(POST)
    assert isinstance(head, GatewayHead)
    assert (head.method, head.target, head.content_length) == (b"POST", b"/a/b?x=1", len(BODY))
    assert (body, end) == (BODY, END)
    assert reader.request_id == 1 and reader.messages == 1 and not reader.replies


@pytest.mark.parametrize("split", range(1, len(POST)))
def test_every_split_point_gives_the_same_events(split: int) -> None:
    reader = parser()
    events = reader.feed(POST[:split]) + reader.feed(POST[split:])
    assert summary(events) == summary(parser().feed(POST))


def test_byte_by_byte() -> None:
    reader = parser()
    events = [event for byte in POST for event in reader.feed(bytes((byte,)))]
    assert summary(events) == summary(parser().feed(POST))


def test_keep_conn_carries_the_next_request_once_the_first_is_answered() -> None:
    reader = parser()
    first = reader.feed(fcgi_request(1, params_with(), keep_conn=True))
    assert isinstance(first[0], GatewayHead) and first[0].keep_alive and reader.keep_conn
    reader.request_done()
    second = reader.feed(fcgi_request(2, params_with(), keep_conn=False))
    assert isinstance(second[0], GatewayHead) and not second[0].keep_alive
    assert reader.request_id == 2 and reader.messages == 2


def test_a_second_request_while_one_is_in_progress_is_refused() -> None:
    reader = parser()
    data = begin(1) + params_records(1, params_with()) + fcgi_request(2, params_with(), BODY)
    events = reader.feed(data + stdin_records(1, b""))
    assert len([e for e in events if isinstance(e, GatewayHead)]) == 1
    assert summary(events)[1:] == [END]  # request 2's body went nowhere
    assert read_records(b"".join(reader.replies)) == [
        (fastcgi.END_REQUEST, 2, fastcgi.END_BODY.pack(0, fastcgi.CANT_MPX_CONN))
    ]
    assert reader.request_id == 1


def test_get_values_is_answered_honestly() -> None:
    reader = parser()
    names = {b"FCGI_MPXS_CONNS": b"", b"FCGI_MAX_CONNS": b"", b"FCGI_MAX_REQS": b"", b"X": b""}
    content = b"".join(map(fastcgi.encode_pair, names.items()))
    assert reader.feed(record(fastcgi.GET_VALUES, 0, content)) == []
    [(kind, rid, answer)] = read_records(b"".join(reader.replies))
    assert (kind, rid) == (fastcgi.GET_VALUES_RESULT, 0)
    assert reader._pairs(memoryview(answer)) == {
        b"FCGI_MPXS_CONNS": b"0",
        b"FCGI_MAX_CONNS": b"77",
        b"FCGI_MAX_REQS": b"77",
    }


def test_unknown_types_are_answered_unknown_type() -> None:
    reader = parser()
    reader.feed(record(99, 0, b"abc"))
    assert read_records(b"".join(reader.replies)) == [
        (fastcgi.UNKNOWN_TYPE, 0, fastcgi.UNKNOWN_BODY.pack(99))
    ]


def test_another_role_is_refused() -> None:
    reader = parser()
    assert reader.feed(begin(3, role=2)) == []  # AUTHORIZER
    assert read_records(b"".join(reader.replies)) == [
        (fastcgi.END_REQUEST, 3, fastcgi.END_BODY.pack(0, fastcgi.UNKNOWN_ROLE))
    ]


def test_abort_mid_body_raises_after_the_events_before_it() -> None:
    reader = parser()
    data = begin(1) + params_records(1, params_with(BODY)) + record(fastcgi.STDIN, 1, BODY[:4])
    with pytest.raises(RequestAborted) as caught:
        reader.feed(data + record(fastcgi.ABORT_REQUEST, 1))
    assert summary(caught.value.events)[1:] == [BODY[:4]]
    assert caught.value.request_id == 1


def test_padding_is_skipped() -> None:
    data = begin(1) + record(
        fastcgi.PARAMS, 1, b"".join(map(fastcgi.encode_pair, params_with(BODY).items())), padding=5
    )
    data += record(fastcgi.PARAMS, 1) + record(fastcgi.STDIN, 1, BODY, padding=3)
    data += record(fastcgi.STDIN, 1)
    assert summary(parser().feed(data)) == summary(parser().feed(POST))


def test_long_names_and_values_use_four_byte_lengths() -> None:
    long = b"v" * 300
    events = parser().feed(fcgi_request(1, params_with(HTTP_COOKIE=long)))
    head = events[0]
    assert isinstance(head, GatewayHead) and head.fields[b"cookie"] == [long]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x02" + begin(1)[1:], "version 2"),
        (record(fastcgi.BEGIN_REQUEST, 1, b"\0\1\1\0"), "BEGIN_REQUEST of 4 bytes"),
        (
            begin(1) + record(fastcgi.PARAMS, 1, b"\x05\x03ab") + record(fastcgi.PARAMS, 1),
            "runs past",
        ),
        (begin(1) + record(fastcgi.PARAMS, 1, b"\x80\0") + record(fastcgi.PARAMS, 1), "runs past"),
        (begin(1) + record(fastcgi.STDIN, 1, b"x"), "STDIN before"),
        (begin(1) + begin(1), "begun twice"),
        (record(fastcgi.STDOUT, 1, b"x"), "from the web server"),
        (fcgi_request(1, params_with(CONTENT_LENGTH=b"x")), "CONTENT_LENGTH"),
        (fcgi_request(1, params_with(BODY), BODY[:-1]), "1 bytes short"),
        (fcgi_request(1, params_with(BODY), BODY + b"!"), "longer than its CONTENT_LENGTH"),
    ],
)
def test_bad_records_are_refused(data: bytes, reason: str) -> None:
    with pytest.raises(GatewayError, match=reason):
        parser().feed(data)


def test_oversize_params_are_refused_before_they_are_all_in() -> None:
    limits = Limits(request_line=100, fields=2, field_size=100)
    big = params_records(1, params_with(HTTP_COOKIE=b"c" * 60000))
    reader = parser(limits)
    with pytest.raises(GatewayError, match="over the head limits"):
        reader.feed(begin(1) + big[: len(big) // 2])


def test_a_body_of_unknown_length_is_read_to_the_end_of_stdin() -> None:
    """nginx with fastcgi_request_buffering off sends a chunked upload with CONTENT_LENGTH
    empty: the head waits for the first STDIN record to say whether a body follows."""
    unannounced = params_with(REQUEST_METHOD=b"POST")
    for body in (BODY, b""):
        whole = fcgi_request(1, unannounced, body)
        for pieces in ([whole], [bytes([byte]) for byte in whole]):
            reader = parser()
            head, *chunks, end = [event for piece in pieces for event in reader.feed(piece)]
            assert isinstance(head, GatewayHead) and head.chunked is bool(body)
            assert b"".join(c for c in chunks if isinstance(c, bytes)) == body
            assert end is END


def test_a_body_over_the_limit_is_refused_after_its_head() -> None:
    """The head goes out ahead of the error, so the 413 answers (and logs) a known request."""
    with pytest.raises(BodyTooLarge) as announced:  # by its CONTENT_LENGTH
        parser(Limits(body=10)).feed(POST)
    [head] = announced.value.events
    assert isinstance(head, GatewayHead) and head.content_length == len(BODY)
    unannounced = fcgi_request(1, params_with(), BODY)
    with pytest.raises(BodyTooLarge) as carried:  # or by what STDIN carries
        parser(Limits(body=10)).feed(unannounced)
    assert isinstance(carried.value.events[0], GatewayHead)


def test_records_out() -> None:
    big = b"x" * (fastcgi.MAX_CONTENT + 10)
    records = read_records(b"".join(fastcgi.stdout_records(5, big)))
    assert [(kind, rid, len(c)) for kind, rid, c in records] == [
        (fastcgi.STDOUT, 5, fastcgi.MAX_CONTENT),
        (fastcgi.STDOUT, 5, 10),
    ]
    assert read_records(fastcgi.end_request(5)) == [
        (fastcgi.END_REQUEST, 5, fastcgi.END_BODY.pack(0, fastcgi.REQUEST_COMPLETE))
    ]


def test_responses_end_with_their_record() -> None:
    keep = fastcgi_frame(200, -1, "1.1", True, False)
    assert (keep.end, keep.keep_alive, keep.chunked, keep.tail) == (
        BodyEnd.RECORD,
        True,
        False,
        b"\r\n",
    )
    assert not fastcgi_frame(200, 5, "1.1", False, False).keep_alive
    assert not fastcgi_frame(304, -1, "1.1", True, False).write_body
    assert not fastcgi_frame(200, 5, "1.1", True, True).write_body  # HEAD
