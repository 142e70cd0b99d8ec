"""The pure parts of static files, proxy headers and the access log, without sockets."""

from __future__ import annotations

import ipaddress
import json
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maitred import config
from maitred.front import accesslog, conditional, proxy, static, staticpath
from maitred.front.conditional import UNSATISFIABLE
from maitred.front.staticpath import Refused
from maitred.http.parser import RequestHead

SIZE = 100


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"bytes=0-9", (0, 9)),
        (b"bytes=90-", (90, 99)),
        (b"bytes=-10", (90, 99)),
        (b"bytes=-1000", (0, 99)),
        (b"bytes=50-5000", (50, 99)),
        (b"Bytes = 1-2", (1, 2)),
        (b"bytes=100-", UNSATISFIABLE),
        (b"bytes=-0", UNSATISFIABLE),
        (b"bytes=5-1", None),
        (b"bytes=0-1,3-4", None),
        (b"bytes=a-b", None),
        (b"bytes=-", None),
        (b"items=0-1", None),
        (b"", None),
    ],
)
def test_parse_range(value: bytes, expected: object) -> None:
    assert conditional.parse_range(value, SIZE) == expected


def test_range_of_an_empty_file_is_unsatisfiable() -> None:
    assert conditional.parse_range(b"bytes=0-", 0) is UNSATISFIABLE
    assert conditional.parse_range(b"bytes=-5", 0) is UNSATISFIABLE


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"gzip, deflate, br", [b"br", b"gzip"]),
        (b"gzip", [b"gzip"]),
        (b"br;q=0.5, gzip;q=0.8", [b"gzip", b"br"]),
        (b"gzip;q=0, br;q=0", []),
        (b"*", [b"br", b"gzip"]),
        (b"*;q=0.5, gzip;q=0", [b"br"]),
        (b"x-gzip", [b"gzip"]),
        (b"identity", []),
        (b"gzip;q=bogus", []),
    ],
)
def test_accepted_codings(value: bytes, expected: list[bytes]) -> None:
    assert staticpath._accepted_codings(value) == expected


@pytest.mark.parametrize(
    ("rest", "segments", "trailing"),
    [
        (b"/a/b.css", (b"a", b"b.css"), False),
        (b"/a//./b/", (b"a", b"b"), True),
        (b"", (), False),
        (b"/caf%C3%A9.txt", (b"caf\xc3\xa9.txt",), False),
    ],
)
def test_segments(rest: bytes, segments: tuple[bytes, ...], trailing: bool) -> None:
    assert staticpath._segments(rest) == (segments, trailing)


def test_a_mount_remembers_the_segments_of_recent_targets() -> None:
    mount = staticpath.Mount("/static", "/srv/static")
    assert mount.segments(b"/static/a//b.css?v=1") == ((b"a", b"b.css"), False)
    assert mount.segments(b"/static/a/?v=2") == ((b"a",), True)
    assert mount.known == {
        b"/static/a//b.css?v=1": ((b"a", b"b.css"), False),
        b"/static/a/?v=2": ((b"a",), True),
    }
    assert mount.segments(b"/static/a//b.css?v=1") == ((b"a", b"b.css"), False)
    for _ in range(2):  # a refused target is refused every time, and not remembered
        with pytest.raises(Refused):
            mount.segments(b"/static/../etc/passwd")
    long = b"/static/" + b"x" * staticpath.KNOWN_TARGET_SIZE
    assert mount.segments(long) == ((b"x" * staticpath.KNOWN_TARGET_SIZE,), False)
    assert len(mount.known) == 2
    for number in range(staticpath.KNOWN_TARGETS + 1):
        mount.segments(b"/static/%d" % number)
    assert 0 < len(mount.known) <= staticpath.KNOWN_TARGETS


@pytest.mark.parametrize(
    ("rest", "status"),
    [
        (b"/../x", 404),
        (b"/%2e%2e/x", 404),
        (b"/.env", 404),
        (b"/a%2fb", 404),
        (b"/a%5Cb", 404),
        (b"/%zz", 400),
        (b"/%", 400),
        (b"/a%00", 400),
    ],
)
def test_segments_refused(rest: bytes, status: int) -> None:
    with pytest.raises(Refused) as refused:
        staticpath._segments(rest)
    assert refused.value.status == status


def test_preconditions() -> None:
    etag, date = b'"1-2"', b"Sun, 22 Nov 2026 10:00:00 GMT"
    mtime = 1795341600  # that date

    def check(**headers: bytes) -> int:
        wanted = {name.replace("_", "-").encode(): value for name, value in headers.items()}
        return conditional.preconditions(wanted, etag, date, mtime)

    assert check() == 0
    assert check(if_none_match=etag) == 304
    assert check(if_none_match=b"W/" + etag) == 304
    assert check(if_none_match=b'"x"') == 0
    assert check(if_modified_since=date) == 304
    assert check(if_modified_since=b"Sat, 21 Nov 2026 10:00:00 GMT") == 0
    assert check(if_modified_since=b"garbage") == 0
    assert check(if_match=b'"x"') == 412
    assert check(if_match=b"W/" + etag) == 412  # If-Match compares strongly
    assert check(if_match=etag, if_none_match=etag) == 304
    assert check(if_unmodified_since=b"Sat, 21 Nov 2026 10:00:00 GMT") == 412


def test_wanted_headers_join_repeated_lines_whatever_the_case_of_their_names() -> None:
    head = RequestHead(
        b"GET",
        b"/",
        "1.1",
        [
            (b"Host", b"h"),
            (b"RANGE", b"bytes=0-1"),
            (b"If-None-Match", b'"a"'),
            (b"if-none-match", b'"b"'),
            (b"Accept", b"*/*"),
        ],
        True,
    )
    assert static._wanted_headers(head.fields) == {
        b"range": b"bytes=0-1",
        b"if-none-match": b'"a","b"',
    }
    assert static._wanted_headers({b"host": [b"h"], b"accept": [b"*/*"]}) == {}


def test_hashed_names() -> None:
    assert static.HASHED_NAME.search(b"base.96c479cedf7a.css")
    assert static.HASHED_NAME.search(b"jquery.min.3a2b4c5d6e7f.js")
    assert not static.HASHED_NAME.search(b"base.css")
    assert not static.HASHED_NAME.search(b"base.96c479cedf7.css")  # 11 digits
    assert not static.HASHED_NAME.search(b"base.96C479CEDF7A.css")


# --- proxy ---


def test_proxy_v1() -> None:
    line = b"PROXY TCP4 192.0.2.1 192.0.2.2 5555 80\r\nGET"
    assert proxy.parse_proxy_header(line) == (("192.0.2.1", "5555"), len(line) - 3)
    assert proxy.parse_proxy_header(b"PROXY TCP4 192.0") is None  # more to come
    assert proxy.parse_proxy_header(b"PRO") is None
    assert proxy.parse_proxy_header(b"PROXY UNKNOWN\r\n") == (None, 15)


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\n",
        b"PROXY TCP4 a b c d\r\n",
        b"PROXY TCP4 192.0.2.1 192.0.2.2 70000 80\r\n",
        b"PROXY " + b"x" * 200,
        b"\r\n\r\n\x00\r\nQUIT\n\x10\x11\x00\x00",  # version 1 in a v2 header
    ],
)
def test_proxy_header_errors(data: bytes) -> None:
    with pytest.raises(proxy.ProxyHeaderError):
        proxy.parse_proxy_header(data)


def test_proxy_v2() -> None:
    body = ipaddress.ip_address("198.51.100.1").packed + bytes(4) + struct.pack("!HH", 4321, 443)
    header = proxy.V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", len(body)) + body
    assert proxy.parse_proxy_header(header + b"GET") == (("198.51.100.1", "4321"), len(header))
    assert proxy.parse_proxy_header(header[:10]) is None
    assert proxy.parse_proxy_header(header[:-1]) is None
    local = proxy.V2_SIGNATURE + b"\x20\x00\x00\x00"
    assert proxy.parse_proxy_header(local) == (None, 16)


def test_trusted_peers() -> None:
    trusted = proxy.TrustedPeers(["127.0.0.1", "10.0.0.0/8", "unix"])
    assert trusted("127.0.0.1") and trusted("10.1.2.3") and trusted("::ffff:10.0.0.1")
    assert trusted("")  # a Unix-socket peer
    assert not trusted("192.0.2.1") and not trusted("nonsense")
    assert proxy.TrustedPeers(["*"])("192.0.2.1")
    assert proxy.TrustedPeers([]).nobody


def test_forwarded_apply() -> None:
    forwarded = proxy.Forwarded(proxy.TrustedPeers(["127.0.0.1"]))
    peer = ("127.0.0.1", "5000", "127.0.0.1", "8000", "http")
    fields = {b"forwarded": [b'for="_hidden", for="[2001:db8::1]:80";proto=HTTPS;host="a.example"']}
    assert forwarded.apply(fields, peer) == (
        ("2001:db8::1", "80", "127.0.0.1", "8000", "https"),
        "a.example",
    )
    assert forwarded.apply({b"host": [b"x"]}, peer) == (peer, None)


# --- access log ---


def test_escape() -> None:
    assert accesslog.escape("plain /path?q=1") == "plain /path?q=1"
    assert accesslog.escape('a"b\\c\td\x7f\xe9') == "a\\x22b\\x5Cc\\x09d\\x7F\\xE9"


@pytest.mark.parametrize("text", ["{nope}", "{remote_addr!r}", "{status:>5}", "{", "{}"])
def test_bad_formats(text: str) -> None:
    with pytest.raises(ValueError):
        accesslog.compile_format(text)


def test_a_log_field_is_the_first_line_of_its_header_whatever_the_case() -> None:
    headers = [(b"REFERER", b"https://a.example/"), (b"referer", b"https://b.example/")]
    head = RequestHead(b"GET", b"/", "1.1", headers, True)
    entry = accesslog.Entry(head, ("1.2.3.4", "1", "", "", "http"), 200, 5, 10.0)
    assert entry.header(b"referer") == "https://a.example/"
    assert entry.header(b"user-agent") == "-"
    assert accesslog.Entry(None, entry.peer, 400, 0, 10.0).header(b"referer") == "-"


def test_json_line_of_a_hostile_request() -> None:
    head = RequestHead(b"GET", b'/"\\\x01', "1.1", [(b"User-Agent", b'\x00\t\n"')], True)
    entry = accesslog.Entry(head, ("1.2.3.4", "1", "", "", "http"), 200, 5, 10.0)
    record = json.loads(accesslog.compile_format("json")(entry))
    assert record["target"] == '/"\\\x01'
    assert record["user_agent"] == '\x00\t\n"'
    text = accesslog.compile_format("combined")(entry)
    assert '"GET /\\x22\\x5C\\x01 HTTP/1.1"' in text
    assert '"\\x00\\x09\\x0A\\x22"' in text and "\n" not in text


# --- settings ---


def test_static_mounts_from_every_source(tmp_path: Path) -> None:
    (tmp_path / "maitred.toml").write_text('static = ["/static=./files", "/media/=/srv/media"]\n')
    assert config.load({}, {}, cwd=str(tmp_path)).static == (
        ("/static", "./files"),
        ("/media", "/srv/media"),
    )
    from_env = config.load({}, {"MAITRED_STATIC": "/a=x,/b=y"}, cwd="/nonexistent")
    assert from_env.static == (("/a", "x"), ("/b", "y"))
    from_cli = config.load({"static": ["/a=x", "/b=y"]}, {}, cwd="/nonexistent")
    assert from_cli.static == (("/a", "x"), ("/b", "y"))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("static", ["static=./x"]),
        ("static", ["/static"]),
        ("static", ["/a/../b=x"]),
        ("static", ["/a%2f=x"]),
        ("forwarded_allow_ips", "10.0.0.300"),
        ("access_log_format", "{unknown_field}"),
        ("request_id_header", "X Request"),
    ],
)
def test_bad_settings(name: str, value: object) -> None:
    with pytest.raises(config.ConfigError):
        config.load({name: value}, {}, cwd="/nonexistent")


@given(
    lines=st.lists(st.binary(max_size=300).map(lambda b: b.replace(b"\n", b"") + b"\n")),
    size=st.integers(1, 700),
)
def test_log_pieces_end_at_line_ends_and_stay_within_size(lines: list[bytes], size: int) -> None:
    data = b"".join(lines)
    pieces = [bytes(piece) for piece in accesslog.line_pieces(data, size)]
    assert b"".join(pieces) == data
    for piece in pieces:
        assert piece.endswith(b"\n")
        assert len(piece) <= size or piece.count(b"\n") == 1  # only a long line stands alone
