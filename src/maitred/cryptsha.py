"""The crypt(3) hashes htpasswd files hold besides bcrypt: SHA-256/512-crypt and apr1-MD5.

Python's ``crypt`` module is deprecated (PEP 594) and gone in 3.13, and it only calls the C
library's crypt(3), which musl and macOS do not give the SHA forms; so both algorithms are
written here from their published specifications:

* SHA-crypt (``$5$``, ``$6$``): Ulrich Drepper, "Unix crypt using SHA-256 and SHA-512"
  (https://www.akkadia.org/drepper/SHA-crypt.txt), the form glibc, ``openssl passwd -5/-6``
  and ``htpasswd -2/-5`` (Apache 2.5) write; default 5000 rounds, ``rounds=N$`` otherwise;
* apr1 (``$apr1$``): Poul-Henning Kamp's MD5-crypt with Apache's magic, what ``htpasswd -m``
  wrote for years (``openssl passwd -apr1``). Weak: the caller warns of it.

Each function takes the password and the stored hash's setting (the part up to the last
``$``) and returns the whole hash, for the caller to compare in constant time. Pure; no I/O.
Tested against hashes written by openssl (tests/unit/test_htpasswd.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

ITOA64 = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
SHA_DEFAULT_ROUNDS = 5000
SHA_MIN_ROUNDS, SHA_MAX_ROUNDS = 1000, 999_999_999
SHA_SALT_MAX = 16
MD5_SALT_MAX = 8
MD5_ROUNDS = 1000
ROUNDS_PREFIX = b"rounds="
Hash = Callable[[bytes], Any]  # hashlib.sha256 or hashlib.sha512

# The order the digest's bytes are encoded in, three at a time (Drepper's spec, step 22).
_SHA256_ORDER = (
    (0, 10, 20), (21, 1, 11), (12, 22, 2), (3, 13, 23), (24, 4, 14),
    (15, 25, 5), (6, 16, 26), (27, 7, 17), (18, 28, 8), (9, 19, 29),
)  # fmt: skip
_SHA512_ORDER = (
    (0, 21, 42), (22, 43, 1), (44, 2, 23), (3, 24, 45), (25, 46, 4), (47, 5, 26),
    (6, 27, 48), (28, 49, 7), (50, 8, 29), (9, 30, 51), (31, 52, 10), (53, 11, 32),
    (12, 33, 54), (34, 55, 13), (56, 14, 35), (15, 36, 57), (37, 58, 16), (59, 17, 38),
    (18, 39, 60), (40, 61, 19), (62, 20, 41),
)  # fmt: skip
_MD5_ORDER = ((0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5))


def _b64(digest: bytes, order: Sequence[tuple[int, int, int]]) -> bytearray:
    out = bytearray()
    for a, b, c in order:
        out += _b64_24(digest[a], digest[b], digest[c], 4)
    return out


def _b64_24(b2: int, b1: int, b0: int, count: int) -> bytes:
    value = (b2 << 16) | (b1 << 8) | b0
    out = bytearray()
    for _ in range(count):
        out.append(ITOA64[value & 0x3F])
        value >>= 6
    return bytes(out)


def _repeat(block: bytes, length: int) -> bytes:
    """`length` bytes of `block` repeated (the spec's P and S sequences)."""
    return (block * (length // len(block) + 1))[:length] if length else b""


def sha_crypt(password: bytes, setting: bytes) -> bytes:
    """SHA-256-crypt (``$5$``) or SHA-512-crypt (``$6$``) of `password` with `setting`
    (``$6$salt`` or ``$6$rounds=N$salt``). ValueError when the setting is malformed."""
    parts = setting.split(b"$")
    if len(parts) < 3 or parts[0] or parts[1] not in (b"5", b"6"):
        raise ValueError("not a SHA-crypt setting")
    ident = parts[1]
    new = hashlib.sha256 if ident == b"5" else hashlib.sha512
    rounds, explicit = SHA_DEFAULT_ROUNDS, False
    rest = parts[2:]
    if rest[0].startswith(ROUNDS_PREFIX):
        rounds = min(max(int(rest[0][len(ROUNDS_PREFIX) :]), SHA_MIN_ROUNDS), SHA_MAX_ROUNDS)
        explicit, rest = True, rest[1:]
    if not rest:
        raise ValueError("no salt")
    salt = rest[0][:SHA_SALT_MAX]
    digest = _sha_rounds(new, password, salt, rounds)
    if ident == b"5":
        text = _b64(digest, _SHA256_ORDER) + _b64_24(0, digest[31], digest[30], 3)
    else:
        text = _b64(digest, _SHA512_ORDER) + _b64_24(0, 0, digest[63], 2)
    head = b"$" + ident + b"$" + (b"rounds=%d$" % rounds if explicit else b"")
    return head + salt + b"$" + bytes(text)


def _sha_rounds(h: Hash, password: bytes, salt: bytes, rounds: int) -> bytes:
    """Steps 1-21 of the spec: the digest after `rounds` rounds."""
    b = h(password + salt + password).digest()
    a = h(password + salt)
    a.update(_repeat(b, len(password)))
    n = len(password)
    while n:
        a.update(b if n & 1 else password)
        n >>= 1
    digest_a = a.digest()
    p = _repeat(h(password * len(password)).digest(), len(password))
    s = _repeat(h(salt * (16 + digest_a[0])).digest(), len(salt))
    return _alternate(h, digest_a, p, s, rounds)


def _alternate(h: Hash, digest: bytes, p: bytes, s: bytes, rounds: int) -> bytes:
    """The rounds both algorithms end with, making a guess cost `rounds` hashes."""
    for i in range(rounds):
        ctx = h(p if i & 1 else digest)
        if i % 3:
            ctx.update(s)
        if i % 7:
            ctx.update(p)
        ctx.update(digest if i & 1 else p)
        digest = ctx.digest()
    return bytes(digest)


def apr1(password: bytes, setting: bytes) -> bytes:
    """Apache's apr1-MD5 of `password` with `setting` (``$apr1$salt``)."""
    magic = b"$apr1$"
    if not setting.startswith(magic):
        raise ValueError("not an apr1 setting")
    salt = setting[len(magic) :].split(b"$")[0][:MD5_SALT_MAX]
    final = hashlib.md5(password + salt + password).digest()
    ctx = hashlib.md5(password + magic + salt)
    ctx.update(_repeat(final, len(password)))
    n = len(password)
    while n:
        ctx.update(b"\0" if n & 1 else password[:1])
        n >>= 1
    final = _alternate(hashlib.md5, ctx.digest(), password, salt, MD5_ROUNDS)
    text = _b64(final, _MD5_ORDER) + _b64_24(0, 0, final[11], 2)
    return magic + salt + b"$" + bytes(text)
