"""Property tests of the sans-IO parser (hypothesis): whatever the bytes, however they are cut.

* It raises nothing but ProtocolError, and only with a status the front may answer.
* Its events always form requests: a head, body pieces, END; never a body without a head.
* The outcome does not depend on how the input was cut into pieces.

Inputs are random bytes, requests assembled from tricky fragments, and corpus requests with
random bytes inserted, deleted or replaced.
"""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corpus import load_cases, replay
from maitred.http.errors import ProtocolError
from maitred.http.parser import END, Event, Limits, RequestHead, RequestParser

ANSWERABLE = {400, 413, 414, 417, 431, 501, 505}
FUZZ = settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

SEEDS = [case.raw for case in load_cases()]
INTERESTING = b'\r\n\t \x00\x0b\x7f\x80\xff:;,="#*/?%-_0123456789aAfFxX'
METHODS = [b"GET", b"POST", b"HEAD", b"OPTIONS", b"CONNECT", b"PRI", b"get", b"G ET", b""]
TARGETS = [b"/", b"/a?b=c", b"*", b"http://h/p", b"h:80", b"/a b", b"/#f", b"/\xff", b""]
VERSIONS = [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1 ", b"http/1.1", b""]
FIELDS = [
    b"Host: h",
    b"Host: h",
    b"Content-Length: 3",
    b"Content-Length: 0",
    b"Content-Length: 3, 3",
    b"Content-Length: -1",
    b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: gzip, chunked",
    b"Transfer-Encoding: chunked, identity",
    b"Transfer-Encoding : chunked",
    b"Expect: 100-continue",
    b"Connection: close",
    b"Connection: Upgrade",
    b"Upgrade: websocket",
    b"X_Y: underscore",
    b" folded",
    b"X: \x00",
    b"Trailer: x",
]
BODIES = [b"", b"abc", b"3\r\nabc\r\n0\r\n\r\n", b"0\r\n\r\n", b"3;e=v\r\nabc\r\n0\r\nT: 1\r\n\r\n"]
EOLS = [b"\r\n", b"\r\n", b"\n", b"\r"]


@st.composite
def assembled(draw: st.DrawFn) -> bytes:
    """One or more requests built from fragments that are each valid or subtly not."""
    out = []
    for _ in range(draw(st.integers(1, 3))):
        eol = draw(st.sampled_from(EOLS))
        line = b" ".join(
            [
                draw(st.sampled_from(METHODS)),
                draw(st.sampled_from(TARGETS)),
                draw(st.sampled_from(VERSIONS)),
            ]
        )
        fields = draw(st.lists(st.sampled_from(FIELDS), max_size=5))
        out.append(line + eol + b"".join(f + eol for f in fields) + eol)
        out.append(draw(st.sampled_from(BODIES)))
    return b"".join(out)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A corpus request with a few bytes inserted, deleted or replaced."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["insert", "delete", "replace"]))
        byte = draw(st.sampled_from(INTERESTING))
        if kind == "insert":
            data[at:at] = bytes([byte])
        elif at < len(data):
            data[at : at + 1] = b"" if kind == "delete" else bytes([byte])
    return bytes(data)


INPUTS = st.one_of(st.binary(max_size=300), assembled(), mutated())


def cuts(data: bytes, points: list[int]) -> list[bytes]:
    bounds = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def check_sequence(events: list[Event], in_request: bool) -> bool:
    """Events must go head, body*, END; returns whether a request is still open."""
    for event in events:
        if isinstance(event, RequestHead):
            assert not in_request, "a head inside a request"
            in_request = True
        elif event is END:
            assert in_request, "END without a head"
            in_request = False
        else:
            assert isinstance(event, bytes) and event, f"unexpected event {event!r}"
            assert in_request, "body bytes without a head"
    return in_request


@FUZZ
@given(data=INPUTS, points=st.lists(st.integers(0, 10_000), max_size=8))
def test_only_protocol_errors_and_well_formed_events(data: bytes, points: list[int]) -> None:
    parser = RequestParser(Limits())
    in_request = False
    for piece in cuts(data, points):
        try:
            events = parser.feed(piece)
        except ProtocolError as exc:
            assert exc.status in ANSWERABLE, exc
            check_sequence(exc.events, in_request)
            return
        in_request = check_sequence(events, in_request)


@FUZZ
@given(data=INPUTS, points=st.lists(st.integers(0, 10_000), max_size=8))
def test_outcome_does_not_depend_on_chunking(data: bytes, points: list[int]) -> None:
    assert_same_outcome(replay(cuts(data, points)), replay([data]))


@FUZZ
@given(data=INPUTS)
def test_byte_by_byte_agrees_with_whole(data: bytes) -> None:
    assert_same_outcome(replay([data[i : i + 1] for i in range(len(data))]), replay([data]))


# A limit and a malformation in one head: which is seen first depends on where the reads
# split. llhttp hands over a field only once the next one begins, and not at all when that next
# line is malformed, and the request target in pieces as they arrive; so a head one field over
# the limit (or a target over it) before a bad byte is refused 431 (414) when a read ends before
# the bad byte and 400 when it arrives whole. Both refuse the same head.
LIMIT_OR_MALFORMED = {400, 414, 431}


Outcome = tuple[list[dict[str, Any]], int | None]


def assert_same_outcome(cut: Outcome, whole: Outcome) -> None:
    if cut[0] == whole[0] and {cut[1], whole[1]} <= LIMIT_OR_MALFORMED:
        return
    assert settled(cut) == settled(whole)


def settled(outcome: Outcome) -> Outcome:
    """The outcome as the front acts on it: bytes after a request that ends the stream
    (HTTP/1.0 without keep-alive, Connection: close) are never parsed for an answer, whether
    the parser dropped them (they came in a later read) or llhttp refused them (same read)."""
    requests, status = outcome
    if status is not None and requests and _ends_stream(requests[-1]):
        return requests, None
    return outcome


def _ends_stream(request: dict[str, Any]) -> bool:
    tokens = {
        token.strip().lower()
        for name, value in request["headers"]
        if name.lower() == "connection"
        for token in value.split(",")
    }
    return "close" in tokens or (request["version"] == "1.0" and "keep-alive" not in tokens)


def test_a_field_over_the_limit_before_a_bad_line_is_refused_either_way() -> None:
    head = b"GET / HTTP/1.1\r\nHost: h\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(100))
    data = head + b"X\r\n"
    cut, whole = replay([data[i : i + 1] for i in range(len(data))]), replay([data])
    assert (cut, whole) == (([], 431), ([], 400))
    assert_same_outcome(cut, whole)


def test_bytes_after_a_request_that_ends_the_stream_are_no_answer_either_way() -> None:
    data = b"GET / HTTP/1.0\r\nContent-Length: 3\r\n\r\nGET / HTTP/1.1\r\n\r\n"
    cut, whole = replay([data[i : i + 1] for i in range(len(data))]), replay([data])
    assert (cut[1], whole[1]) == (None, 400)  # dropped in a later read, refused in the same
    assert_same_outcome(cut, whole)
