"""maitred.tls: which listeners are TLS, the settings' rules, the context and its errors, and
how a client certificate's subject is written."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from certs import TestCA
from maitred import tls
from maitred.config import Config, ConfigError, check


def schemes(*bind: str, certfile: str = "") -> list[str]:
    return tls.schemes(Config(bind=bind, certfile=certfile))


def test_a_certificate_makes_every_tcp_listener_tls_but_unix_ones() -> None:
    binds = ("127.0.0.1:8000", "[::1]:8001", "unix:/tmp/x.sock")
    assert schemes(*binds, certfile="c.pem") == ["https", "https", "http"]
    assert schemes(*binds) == ["http", "http", "http"]


def test_an_https_address_makes_only_the_https_ones_tls() -> None:
    binds = ("https://0.0.0.0:443", "http://0.0.0.0:80", "0.0.0.0:8080", "https://unix:/tmp/s")
    assert schemes(*binds, certfile="c.pem") == ["https", "http", "http", "https"]


def test_a_socket_systemd_passes_is_tls_as_its_entry_says() -> None:
    """Its family is known only once passed: bare, it is TLS under a certificate as a TCP
    address is (a socket unit for port 443); a scheme before fd:// decides, as for others."""
    assert schemes("fd://web", certfile="c.pem") == ["https"]
    assert schemes("https://fd://secure", "fd://web", certfile="c.pem") == ["https", "http"]
    assert schemes("http://fd://web", "0.0.0.0:443", certfile="c.pem") == ["http", "https"]


@pytest.mark.parametrize(
    ("settings", "why"),
    [
        ({"keyfile": "k.pem"}, "certfile is not"),
        ({"bind": ("https://127.0.0.1:0",)}, "needs a certificate"),
        ({"certfile": "c.pem", "cert_reqs": "required"}, "needs ca-certs"),
        ({"certfile": "c.pem", "proxy_protocol": True}, "proxy-protocol"),
        ({"bind": ("ftp://127.0.0.1:0",)}, "unknown scheme"),
    ],
)
def test_settings_that_do_not_fit_together(settings: dict[str, object], why: str) -> None:
    with pytest.raises((ConfigError, ValueError), match=why):
        check(Config(**settings))  # type: ignore[arg-type]


def test_a_reload_may_not_turn_tls_on_or_off_on_a_listener() -> None:
    running = Config(certfile="c.pem")
    tls.check_reload(running, running.replace(certfile="other.pem"))
    with pytest.raises(ConfigError, match="restart"):
        tls.check_reload(running, running.replace(certfile=""))


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path)


def test_the_context_offers_http11_only_and_tls12_at_least(ca: TestCA) -> None:
    server = ca.issue("server", "127.0.0.1")
    cfg = Config(certfile=str(server.cert), keyfile=str(server.key), ca_certs=str(ca.path))
    ctx = tls.build_context(cfg.replace(cert_reqs="optional"))
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode == ssl.CERT_OPTIONAL
    assert tls.ALPN_PROTOCOLS == ("http/1.1",)
    strict = tls.build_context(cfg.replace(ssl_min_version="1.3", ssl_ciphers="ECDHE+AESGCM"))
    assert strict.minimum_version == ssl.TLSVersion.TLSv1_3
    assert all("AES" in c["name"] for c in strict.get_ciphers() if c["protocol"] == "TLSv1.2")


def test_files_that_cannot_be_used_say_which_and_why(ca: TestCA, tmp_path: Path) -> None:
    server = ca.issue("server", "127.0.0.1")
    other = ca.issue("other", "127.0.0.1")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    encrypted = tmp_path / "encrypted.key"
    key = serialization.load_pem_private_key(server.key.read_bytes(), None)
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    cases = {
        (str(tmp_path / "none.pem"), str(server.key)): "certfile .*none.pem: cannot read it",
        (str(server.cert), str(tmp_path / "none.key")): "keyfile .*none.key: cannot read it",
        (str(server.cert), str(other.key)): "do not match",
        (str(garbage), str(server.key)): "cannot load the certificate .*garbage.pem",
        (str(server.cert), str(encrypted)): "encrypted",
    }
    for (cert, key_path), why in cases.items():
        with pytest.raises(tls.TLSError, match=why):
            tls.build_context(Config(certfile=cert, keyfile=key_path))
    with pytest.raises(tls.TLSError, match="selects no cipher"):
        tls.build_context(Config(certfile=str(server.cert), ssl_ciphers="NOPE"))


def test_a_subject_is_written_as_nginx_and_apache_write_it() -> None:
    peercert = {
        "subject": (
            (("countryName", "FR"),),
            (("organizationName", "Acme, Inc."),),
            (("commonName", "alice"), ("userId", "42")),
        )
    }
    assert tls.subject(peercert) == "CN=alice+UID=42,O=Acme\\, Inc.,C=FR"
    assert tls.subject({}) == ""
    assert tls.subject(None) == ""
    assert tls.subject({"subject": ((("commonName", " #x "),),)}) == "CN=\\ #x\\ "
