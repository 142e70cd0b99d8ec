"""A proxy's CGI variables as the request head and peer the rest of the front takes."""

from __future__ import annotations

import pytest

from gatewaywire import params_with
from maitred.gateway.params import head_from_params, peer_from_params

SOCKET_PEER = ("127.0.0.1", "5555", "127.0.0.1", "9000", "http")


@pytest.mark.parametrize(
    ("changes", "target", "script"),
    [
        # uwsgi_params: PATH_INFO is $document_uri, no SCRIPT_NAME.
        ({}, b"/a/b?x=1", ""),
        # A mount named by the proxy, PATH_INFO still holding the whole path (uwsgi style).
        ({"SCRIPT_NAME": b"/a"}, b"/a/b?x=1", "/a"),
        ({"SCRIPT_NAME": b"/a/", "PATH_INFO": b"/a"}, b"/a?x=1", "/a"),
        # fastcgi_split_path_info: SCRIPT_NAME and PATH_INFO apart.
        ({"SCRIPT_NAME": b"/app", "PATH_INFO": b"/b"}, b"/app/b?x=1", "/app"),
        # fastcgi_params' SCRIPT_NAME is the whole path ($fastcgi_script_name), DOCUMENT_URI too.
        ({"SCRIPT_NAME": b"/a/b", "DOCUMENT_URI": b"/a/b"}, b"/a/b?x=1", ""),
        # No PATH_INFO: the client's own target, read like HTTP's (fastcgi_params alone).
        ({"PATH_INFO": None, "SCRIPT_NAME": b"/a/b"}, b"/a/b?x=1", ""),
        # Decoded variables are encoded again, for the worker to decode once.
        ({"PATH_INFO": b"/caf\xc3\xa9 100%?#"}, b"/caf%C3%A9%20100%25%3F%23?x=1", ""),
        ({"PATH_INFO": b""}, b"/?x=1", ""),
    ],
)
def test_target_and_mount(changes: dict[str, bytes | None], target: bytes, script: str) -> None:
    params = params_with(**{k: v for k, v in changes.items() if v is not None})
    for name, value in changes.items():
        if value is None:
            del params[name.encode()]
    head = head_from_params(params, keep_alive=False)
    assert (head.target, head.script_name) == (target, script)


def test_version_and_headers() -> None:
    params = params_with(b"abc", SERVER_PROTOCOL=b"HTTP/2.0", CONTENT_TYPE=b"text/plain")
    params[b"HTTP_CONTENT_LENGTH"] = b"999"  # not the client's: CONTENT_LENGTH is
    head = head_from_params(params, keep_alive=True)
    assert head.version == "2.0" and head.keep_alive
    assert head.fields[b"content-length"] == [b"3"]
    assert head.fields[b"content-type"] == [b"text/plain"]
    assert head.fields[b"user-agent"] == [b"test"]


def test_the_client_is_believed_only_from_a_trusted_proxy() -> None:
    params = params_with(HTTPS=b"on")
    assert peer_from_params(params, SOCKET_PEER, trusted=True) == (
        "203.0.113.9",
        "40000",
        "example.com",
        "80",
        "https",
    )
    assert peer_from_params(params, SOCKET_PEER, trusted=False) == (
        "127.0.0.1",
        "5555",
        "example.com",
        "80",
        "http",
    )
    scheme = params_with(REQUEST_SCHEME=b"https")
    assert peer_from_params(scheme, SOCKET_PEER, trusted=True)[4] == "https"
    garbage = params_with(REMOTE_ADDR=b"not an address")
    assert peer_from_params(garbage, SOCKET_PEER, trusted=True)[:2] == ("127.0.0.1", "5555")
