"""Property tests of the uwsgi and FastCGI readers (hypothesis): whatever a proxy sends.

* They raise nothing but ProtocolError (a bad packet closes the connection with one line;
  anything else would be a crash in the front).
* Their events form requests: a head, body pieces, END; never a body without its head.
* The peer and environ parts read from the variables raise nothing either.

Inputs are random bytes, and well-formed requests (random variables among those nginx sends)
with random bytes inserted, deleted or replaced, fed in random pieces.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatewaywire import fcgi_request, params_with, uwsgi_packet
from maitred.gateway.fastcgi import FastCGIParser
from maitred.gateway.params import GatewayHead, peer_from_params
from maitred.gateway.uwsgi import UwsgiParser
from maitred.http.errors import ProtocolError
from maitred.http.parser import END, Event, Limits, RequestReader

FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
LIMITS = Limits(body=1000)
NAMES = [
    "REQUEST_METHOD", "CONTENT_LENGTH", "PATH_INFO", "SCRIPT_NAME", "REQUEST_URI",
    "DOCUMENT_URI", "QUERY_STRING", "SERVER_PROTOCOL", "REMOTE_ADDR", "REMOTE_PORT",
    "SERVER_PORT", "HTTPS", "REQUEST_SCHEME", "HTTP_HOST", "HTTP_X_Y", "CONTENT_TYPE",
]  # fmt: skip
VALUES = st.one_of(
    st.sampled_from([b"", b"0", b"12", b"-1", b"GET", b"POST", b"/", b"/a/b", b"%zz", b"on",
                     b"HTTP/1.1", b"HTTP/x", b"::1", b"10.0.0.1", b"\xff\x00", b"99999999999"]),
    st.binary(max_size=20),
)  # fmt: skip
VARIABLES = st.dictionaries(st.sampled_from(NAMES), VALUES, max_size=6)


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, bytes]:
    changes = {name: value for name, value in draw(VARIABLES).items()}
    body = draw(st.binary(max_size=40))
    params = params_with(body, **changes)
    if draw(st.booleans()):
        return "uwsgi", uwsgi_packet(params, body)
    keep = draw(st.booleans())
    return "fastcgi", fcgi_request(1, params, body, keep_conn=keep)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    proto, data = draw(requests())
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["insert", "delete", "replace"]))
        byte = bytes([draw(st.integers(0, 255))])
        if kind == "insert":
            data = data[:at] + byte + data[at:]
        elif kind == "delete":
            data = data[:at] + data[at + 1 :]
        else:
            data = data[:at] + byte + data[at + 1 :]
    return proto, data


def reader(proto: str) -> RequestReader:
    return UwsgiParser(LIMITS) if proto == "uwsgi" else FastCGIParser(LIMITS, 10)


def feed_in_pieces(proto: str, data: bytes, cuts: list[int]) -> list[Event]:
    parser = reader(proto)
    events: list[Event] = []
    at = 0
    try:
        for cut in [*sorted(cuts), len(data)]:
            events += parser.feed(data[at:cut])
            at = cut
    except ProtocolError as exc:
        events += exc.events
    return events


def check_requests(events: list[Event]) -> None:
    in_request = False
    for event in events:
        if isinstance(event, GatewayHead):
            assert not in_request, events
            in_request = True
            peer_from_params(event.params, ("127.0.0.1", "1", "", "", "http"), True)
        else:
            assert in_request, events  # a body piece or END belongs to a head
            if event is END:
                in_request = False
            else:
                assert isinstance(event, bytes)


@FUZZ
@given(
    st.sampled_from(["uwsgi", "fastcgi"]), st.binary(max_size=200), st.lists(st.integers(0, 200))
)
def test_random_bytes_raise_only_protocol_errors(proto: str, data: bytes, cuts: list[int]) -> None:
    check_requests(feed_in_pieces(proto, data, [c for c in cuts if c <= len(data)]))


@FUZZ
@given(mutated(), st.lists(st.integers(0, 2000), max_size=5))
def test_mutated_requests_raise_only_protocol_errors(
    request: tuple[str, bytes], cuts: list[int]
) -> None:
    proto, data = request
    check_requests(feed_in_pieces(proto, data, [c for c in cuts if c <= len(data)]))
