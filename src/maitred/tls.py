"""TLS settings: which listeners serve TLS, and the SSL context they serve it with.

Theory of operation
-------------------
Which listeners are TLS: a bind address may say `https://` or `http://`. When none says
`https://`, a certificate (--certfile) makes every TCP listener TLS, as in gunicorn, and unix
sockets stay plain (a local proxy speaks plain HTTP to them); when one does, only the
`https://` ones are TLS, so plain and TLS listeners can be mixed. `https://unix:/path` makes a
unix socket TLS. :func:`schemes` decides this once, for the master's "Listening at" lines and
for the fronts.

The context: :func:`build_context` turns the settings into one server-side
:class:`ssl.SSLContext`, or raises :class:`TLSError` with one line that names the file and
says what is wrong with it (unreadable, not a certificate, a key that does not match). The
master builds it at start (a bad file stops the server before it binds anything) and on every
HUP: a good one goes to the fronts started from then on (they inherit it through fork), and the
fronts running are told to load the files again (maitred.front.tls); a bad one is logged and
the one in use stays.

ALPN: the context offers :data:`ALPN_PROTOCOLS`, HTTP/1.1 only. HTTP/2 would be added there and
in the front's choice of protocol after the handshake (maitred.front.tls.TLSHandshake).

No I/O beyond reading the files; no asyncio. Used by the master and by the fronts.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Sequence

from maitred import sockets
from maitred.config import Config, ConfigError

# What the front offers in ALPN, in order of preference. The one place to add "h2".
ALPN_PROTOCOLS = ("http/1.1",)

MIN_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}

# How a client certificate's subject is written: RFC 4514 short names, as nginx's
# $ssl_client_s_dn and Apache's SSL_CLIENT_S_DN write them.
SHORT_NAMES = {
    "commonName": "CN",
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "domainComponent": "DC",
    "userId": "UID",
    "streetAddress": "STREET",
}
_DN_SPECIALS = ',+"\\<>;='


class TLSError(Exception):
    """The TLS settings or files cannot be used; the message says which and why."""


def enabled(cfg: Config) -> bool:
    return bool(cfg.certfile)


def schemes(cfg: Config) -> list[str]:
    """The scheme each --bind address is served with, in order: the one it says, else
    sockets.HTTPS when a certificate is given, no address says https:// and it is a TCP one,
    else sockets.HTTP."""
    parsed = [sockets.parse_address(text) for text in cfg.bind]
    bare_is_tls = enabled(cfg) and all(a.scheme != sockets.HTTPS for a in parsed)
    return [
        address.scheme
        or (sockets.HTTPS if bare_is_tls and address.family != socket.AF_UNIX else sockets.HTTP)
        for address in parsed
    ]


def check(cfg: Config) -> None:
    """The rules that tie the TLS settings together; ConfigError names what breaks one."""
    if cfg.keyfile and not cfg.certfile:
        raise ConfigError("keyfile is set but certfile is not: give the certificate too")
    wants_tls = sockets.HTTPS in schemes(cfg)
    if wants_tls and not cfg.certfile:
        raise ConfigError("an https:// bind address needs a certificate: set certfile")
    if cfg.cert_reqs != "none" and not cfg.ca_certs:
        raise ConfigError(
            f"cert-reqs {cfg.cert_reqs} needs ca-certs: the CAs client certificates must be "
            "signed by"
        )
    if wants_tls and cfg.proxy_protocol:
        raise ConfigError("proxy-protocol on TLS listeners is not supported yet")


def build_context(cfg: Config) -> ssl.SSLContext:
    """The server-side context for the TLS listeners; TLSError says why it cannot be built."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = MIN_VERSIONS[cfg.ssl_min_version]
    # A renegotiation is a handshake a client can start at any time, each costing the front
    # CPU outside the handshake timeout; HTTP/1.1 needs none.
    ctx.options |= ssl.OP_NO_RENEGOTIATION
    if cfg.ssl_ciphers:
        try:
            ctx.set_ciphers(cfg.ssl_ciphers)
        except ssl.SSLError:
            raise TLSError(f"ssl-ciphers {cfg.ssl_ciphers!r} selects no cipher") from None
    _readable("certfile", cfg.certfile)
    if cfg.keyfile:
        _readable("keyfile", cfg.keyfile)
    try:
        ctx.load_cert_chain(cfg.certfile, cfg.keyfile or None, password=_no_password)
    except ssl.SSLError as exc:
        raise TLSError(_load_error(cfg, exc)) from None
    if cfg.ca_certs:
        _readable("ca-certs", cfg.ca_certs)
        try:
            ctx.load_verify_locations(cafile=cfg.ca_certs)
        except ssl.SSLError as exc:
            raise TLSError(f"ca-certs {cfg.ca_certs}: no CA certificate in it ({exc})") from None
    ctx.verify_mode = CERT_REQS[cfg.cert_reqs]
    ctx.set_alpn_protocols(list(ALPN_PROTOCOLS))
    return ctx


def _no_password() -> str:
    """An encrypted key would make OpenSSL ask for its password on the terminal."""
    raise TLSError("the key is encrypted: give an unencrypted key")


def _readable(setting: str, path: str) -> None:
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise TLSError(f"{setting} {path}: cannot read it: {exc.strerror or exc}") from None


def _load_error(cfg: Config, exc: ssl.SSLError) -> str:
    key = cfg.keyfile or cfg.certfile
    if "KEY_VALUES_MISMATCH" in str(exc) or exc.reason == "KEY_VALUES_MISMATCH":
        return f"certfile {cfg.certfile} and keyfile {key} do not match (another key's certificate)"
    return f"cannot load the certificate {cfg.certfile} with the key {key}: {exc} (PEM expected)"


def subject(peercert: object) -> str:
    """A verified client certificate's subject as an RFC 4514 string ("CN=alice,O=Example"),
    from ssl.SSLSocket.getpeercert(); empty when there is none."""
    if not isinstance(peercert, dict):
        return ""
    rdns: Sequence[Sequence[tuple[str, str]]] = peercert.get("subject", ())
    # RFC 4514 writes the last RDN of the certificate's sequence first.
    return ",".join(
        "+".join(f"{SHORT_NAMES.get(k, k)}={_escape(v)}" for k, v in rdn) for rdn in reversed(rdns)
    )


def _escape(value: str) -> str:
    escaped = "".join("\\" + c if c in _DN_SPECIALS else c for c in value)
    if escaped[:1] in ("#", " "):
        escaped = "\\" + escaped
    if escaped.endswith(" "):
        escaped = escaped[:-1] + "\\ "
    return escaped


def check_reload(running: Config, loaded: Config) -> None:
    """Which listeners serve TLS is fixed at start, as the addresses are; ConfigError when a
    HUP's settings would change it (a listener would switch between HTTP and HTTPS)."""
    if schemes(running) != schemes(loaded.replace(bind=running.bind)):
        raise ConfigError(
            "the new configuration would turn TLS on or off on a listener, which needs a "
            "restart; keeping the old"
        )
