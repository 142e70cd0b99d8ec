"""Basic authentication against an htpasswd file, as Apache's ``htpasswd`` writes it.

Theory of operation
-------------------
A file holds one ``user:hash`` per line (blank lines and ``#`` comments skipped).
:func:`parse` reads its text into a :class:`Users` table; the hashes accepted:

* bcrypt (``$2y$``, ``$2a$``, ``$2b$``; ``htpasswd -B``), checked by the ``bcrypt`` package
  (a small, widely used binding to OpenBSD's implementation: bcrypt is Blowfish run
  2^cost times, far too slow written in Python);
* SHA-256 and SHA-512 crypt (``$5$``, ``$6$``; ``htpasswd -2/-5``, ``openssl passwd -5/-6``),
  written here (maitred.cryptsha);
* apr1-MD5 (``$apr1$``, ``htpasswd -m``, the old default) and SHA-1 (``{SHA}``, ``htpasswd
  -s``): accepted, each named in a warning (:attr:`Users.weak`): both fall to a GPU in hours.

Anything else (crypt's DES, plain text) makes the line an error: ``maitred`` refuses to start
with the line's number, rather than let a user in or keep one out in silence.

:class:`BasicAuth` is what the front asks per request (maitred.front.rules): it re-reads the
file when it changed (looked at no more than once per :data:`RECHECK` seconds; a file that
has become unreadable or malformed keeps the users read before, and the error log says why),
decodes the ``Authorization: Basic`` field and checks the password. The hash comparison takes
constant time (:func:`hmac.compare_digest`), and a user the file does not name costs a hash
as a known one does, so timing tells neither passwords nor user names. A hash takes
milliseconds on purpose, on the front's event loop; so the verdict on each field is remembered
(by a SHA-256 of the field, never the password) until the file changes, and a logged-in client
costs one dict lookup per request; and new fields may take at most :data:`HASH_SHARE` of each
second (:class:`HashBudget`): past it a location answers 503 with Retry-After rather than let
a flood of guesses stop the front. Put a rate limit on the location to keep guessers out.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import time
from dataclasses import dataclass, field

from maitred.config import ConfigError
from maitred.cryptsha import apr1, sha_crypt

log = logging.getLogger("maitred.error")

BCRYPT = (b"$2y$", b"$2a$", b"$2b$")
SHA_CRYPT = (b"$5$", b"$6$")
APR1 = b"$apr1$"
SHA1 = b"{SHA}"
WEAK = {APR1: "apr1-MD5", SHA1: "SHA-1"}
RECHECK = 1.0  # seconds between looks at whether the file changed
REMEMBERED = 1024  # verdicts on credentials, remembered until the file changes
UNAUTHORIZED = 401
# Answered when the front's time for hashing passwords is spent: try again in a second.
BUSY = (503, b"Retry-After: 1\r\n")
# The share of each second a location may spend hashing passwords it has no verdict on. A hash
# runs on the event loop, where it holds every connection of the front: bcrypt at cost 10 takes
# about 0.1 s. A flood of guesses thus costs the front at most this share; past it, 503.
HASH_SHARE = 0.25
WINDOW = 1.0
BASIC = b"basic "
# What a user the file does not name is checked against: as costly as a real hash, never equal.
_UNREADABLE = (-1, -1, -1)
_DECOY = b"$5$decoydecoy$0000000000000000000000000000000000000000000"


@dataclass(frozen=True)
class Users:
    """One htpasswd file as read: each user's hash, and the users whose hash is weak."""

    hashes: dict[bytes, bytes] = field(default_factory=dict)
    weak: tuple[tuple[str, str], ...] = ()  # (user, what their hash is)


def parse(text: bytes, origin: str) -> Users:
    """The users of an htpasswd file's `text`; ValueError names the first bad line."""
    hashes: dict[bytes, bytes] = {}
    weak: list[tuple[str, str]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(b"#"):
            continue
        user, sep, stored = line.partition(b":")
        if not sep or not user or not stored:
            raise ValueError(f"{origin} line {number}: expected user:hash")
        stored = stored.split(b":")[0]  # htdigest-like extra fields are not ours
        kind = _kind(stored)
        if kind is None:
            raise ValueError(
                f"{origin} line {number}: the hash of {user.decode('latin-1')!r} is neither "
                "bcrypt, SHA-256/512-crypt, apr1 nor {SHA}: re-hash it with htpasswd -B"
            )
        if kind in WEAK:
            weak.append((user.decode("latin-1"), WEAK[kind]))
        hashes[user] = stored
    return Users(hashes, tuple(weak))


def _kind(stored: bytes) -> bytes | None:
    for prefix in (*BCRYPT, *SHA_CRYPT, APR1, SHA1):
        if stored.startswith(prefix):
            return prefix
    return None


def hash_of(password: bytes, stored: bytes) -> bytes:
    """`password` hashed as `stored` was (same algorithm, salt, cost), to compare with it."""
    if stored.startswith(BCRYPT):
        import bcrypt  # only where a file has bcrypt hashes

        return bytes(bcrypt.hashpw(password, stored))
    if stored.startswith(SHA_CRYPT):
        return sha_crypt(password, stored.rpartition(b"$")[0])
    if stored.startswith(APR1):
        return apr1(password, stored.rpartition(b"$")[0])
    if stored.startswith(SHA1):
        return SHA1 + base64.b64encode(hashlib.sha1(password).digest())
    raise ValueError("unknown hash")


def verify(users: Users, user: bytes, password: bytes) -> bool:
    """Whether `password` is `user`'s, in time that tells neither."""
    stored = users.hashes.get(user)
    known = stored is not None
    # An unknown user is checked against a hash of the file (a known one costs what it does).
    against = stored if stored is not None else next(iter(users.hashes.values()), _DECOY)
    try:
        computed = hash_of(password, against)
    except ValueError:  # a malformed salt or cost: no password matches it
        computed = b""
    return hmac.compare_digest(computed, against) and known


def credentials(value: bytes) -> tuple[bytes, bytes] | None:
    """(user, password) from an ``Authorization`` field's value, if it is Basic."""
    if value[:6].lower() != BASIC:
        return None
    try:
        decoded = base64.b64decode(value[6:].strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    return (user, password) if sep else None


def load(path: str) -> tuple[Users, tuple[int, int, int]]:
    """The users of the file at `path` and its identity (to see it change); OSError or
    ValueError say why it cannot be used."""
    with open(path, "rb") as fh:
        st = os.fstat(fh.fileno())
        text = fh.read()
    return parse(text, path), (st.st_ino, st.st_size, st.st_mtime_ns)


class HashBudget:
    """How much of the current second went into hashing passwords (see HASH_SHARE)."""

    __slots__ = ("start", "used")

    def __init__(self) -> None:
        self.start = 0.0
        self.used = 0.0

    def allows(self, now: float) -> bool:
        if now - self.start >= WINDOW:
            self.start, self.used = now, 0.0
        return self.used < HASH_SHARE * WINDOW

    def spent(self, seconds: float) -> None:
        self.used += seconds


class BasicAuth:
    """The ``auth-basic`` of one location: its htpasswd file, read again when it changes."""

    def __init__(self, path: str, realm: str) -> None:
        try:
            self.users, self.identity = load(path)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"auth-basic: {exc}") from None
        for user, kind in self.users.weak:
            log.warning("%s: user %r has an %s hash: re-hash it with htpasswd -B", path, user, kind)
        self.path = path
        quoted = realm.replace("\\", "\\\\").replace('"', '\\"')
        challenge = b'WWW-Authenticate: Basic realm="%s"\r\n' % quoted.encode("latin-1")
        self.checked = time.monotonic()
        self.unauthorized = (UNAUTHORIZED, challenge)
        # Verdicts on Authorization fields, by their SHA-256: those that passed, so a client
        # that logged in costs no hash per request, and those that failed, so a browser that
        # repeats a wrong password does not either. Forgotten when the file changes.
        self.known: dict[bytes, bool] = {}
        self.hashing = HashBudget()

    def check(self, values: list[bytes] | None) -> tuple[int, bytes] | None:
        """None when the request's Authorization field (`values`) names a user of the file
        with the right password; else the status and header lines to answer: 401 and the
        challenge, or 503 when this second's time for hashing is spent (see HashBudget)."""
        now = time.monotonic()
        if now - self.checked >= RECHECK:
            self.checked = now
            self._reread()
        if not values:
            return self.unauthorized
        key = hashlib.sha256(values[0]).digest()
        verdict = self.known.get(key)
        if verdict is None:
            given = credentials(values[0])
            if given is None:
                return self.unauthorized
            if not self.hashing.allows(now):
                return BUSY
            verdict = verify(self.users, *given)
            self.hashing.spent(time.monotonic() - now)
            if len(self.known) >= REMEMBERED:
                self.known.clear()
            self.known[key] = verdict
        return None if verdict else self.unauthorized

    def _reread(self) -> None:
        try:
            st = os.stat(self.path)
            if (st.st_ino, st.st_size, st.st_mtime_ns) == self.identity:
                return
            users, identity = load(self.path)
        except (OSError, ValueError) as exc:
            if self.identity != _UNREADABLE:  # once per failure, not once per look
                log.error("auth-basic: cannot read %s again, keeping its users: %s", self.path, exc)
            self.identity = _UNREADABLE  # try again at the next look
            return
        self.users, self.identity = users, identity
        self.known.clear()
        log.info("auth-basic: read %s again (%d users)", self.path, len(users.hashes))
