"""htpasswd files: each hash htpasswd writes, checked; Basic credentials; re-reading the file.

The hashes below were written by tools, not by the code under test: SHA-256/512-crypt and
apr1 by ``openssl passwd -5/-6/-apr1 -salt Hx7.pQ 'correct horse'`` (OpenSSL 3.0), bcrypt
by the bcrypt package (``$2y$`` is Apache's spelling of ``$2b$``: the same hash), {SHA} as
``htpasswd -s`` writes it (base64 of the SHA-1).
"""

from __future__ import annotations

import base64
import logging
import os
from pathlib import Path

import pytest

from maitred import htpasswd
from maitred.config import ConfigError
from maitred.cryptsha import apr1, sha_crypt

PASSWORD = b"correct horse"
HASHES = {
    "sha256": b"$5$Hx7.pQ$w61H5k.JV5FYS3DLhonFSMd6/2V8zfcdiv3uNizwbx/",
    "sha256-rounds": b"$5$rounds=12000$abcdefgh$hNhugiGE.SWqBsm5c9cgk.AzEDqxfaVuTyyTIBjpNV2",
    "sha512": (
        b"$6$Hx7.pQ$ioUeu/wlPpZY2JP/h4484GAaBD7JryRVaHLl9/IZOv.9BfJK9bEtMu7ofk51ad1DrLPMnAXutf"
        b"j7IR7UwLDJN1"
    ),
    "apr1": b"$apr1$Hx7.pQ$zyVNQy1YtO4nm1osaxXY40",
    "bcrypt-2b": b"$2b$05$BjP6mGV3EuEWu6fvE3jjqe6SZhCyL3adn5WM3AwMvkNo/eio3Cn4e",
    "bcrypt-2y": b"$2y$05$BjP6mGV3EuEWu6fvE3jjqe6SZhCyL3adn5WM3AwMvkNo/eio3Cn4e",
    "bcrypt-2a": b"$2a$05$4gExPctVrvG6UQaoQFfoHet5Me5.GfIeoNnXO3R8KHX9AlUdwVoqS",
    "sha1": b"{SHA}L55TUjtiq8FBorTWAZ0jy6g129A=",
}


def users_file(**entries: bytes) -> bytes:
    return b"".join(b"%s:%s\n" % (user.encode(), stored) for user, stored in entries.items())


@pytest.mark.parametrize("kind", sorted(HASHES))
def test_each_hash_verifies_the_right_password_only(kind: str) -> None:
    users = htpasswd.parse(users_file(alice=HASHES[kind]), "f")
    assert htpasswd.verify(users, b"alice", PASSWORD)
    assert not htpasswd.verify(users, b"alice", b"correct horse!")
    assert not htpasswd.verify(users, b"alice", b"")
    assert not htpasswd.verify(users, b"bob", PASSWORD)  # not in the file


def test_the_crypt_functions_give_back_the_tools_hashes() -> None:
    for kind in ("sha256", "sha256-rounds", "sha512"):
        stored = HASHES[kind]
        assert sha_crypt(PASSWORD, stored.rpartition(b"$")[0]) == stored
    assert apr1(PASSWORD, b"$apr1$Hx7.pQ") == HASHES["apr1"]
    # Inputs of the spec's test vectors (Drepper, SHA-crypt.txt), hashed by openssl passwd: a
    # rounds= given is kept in the hash, one below 1000 is raised to it.
    assert sha_crypt(b"Hello world!", b"$5$saltstring") == (
        b"$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5"
    )
    assert sha_crypt(
        b"we have a short salt string but not a short password", b"$6$rounds=77777$short"
    ) == (
        b"$6$rounds=77777$short$WuQyW2YR.hBNpjjRhpYD/ifIw05xdfeEyQoMxIXbkvr0gge1a1x3yRULJ5CCaUeOx"
        b"FmtlcGZelFl5CxtgfiAc0"
    )
    assert sha_crypt(b"the minimum number is still observed", b"$5$rounds=10$roundstoolow") == (
        b"$5$rounds=1000$roundstoolow$yfvwcWrQ8l/K0DAWyuPMDNHpIVlTQebY9l/gL972bIC"
    )


def test_weak_hashes_are_named_and_unknown_ones_refused_with_their_line() -> None:
    users = htpasswd.parse(
        b"# staff\n\nalice:" + HASHES["apr1"] + b"\nbob:" + HASHES["sha1"] + b"\n"
        b"carol:" + HASHES["bcrypt-2y"] + b"\n",
        "f",
    )
    assert users.weak == (("alice", "apr1-MD5"), ("bob", "SHA-1"))
    with pytest.raises(ValueError, match="f line 2: the hash of 'dave'"):
        htpasswd.parse(b"carol:" + HASHES["sha512"] + b"\ndave:rl.3ZZ1Ii9yDw\n", "f")
    with pytest.raises(ValueError, match="line 1: expected user:hash"):
        htpasswd.parse(b"justaname\n", "f")


def test_basic_credentials_are_read_from_the_authorization_field() -> None:
    field = b"Basic " + base64.b64encode(b"alice:pa:ss")
    assert htpasswd.credentials(field) == (b"alice", b"pa:ss")
    assert htpasswd.credentials(b"basic " + base64.b64encode(b"a:")) == (b"a", b"")
    assert htpasswd.credentials(b"Bearer abc") is None
    assert htpasswd.credentials(b"Basic !!!") is None
    assert htpasswd.credentials(b"Basic " + base64.b64encode(b"no-colon")) is None


def basic(user: bytes, password: bytes) -> list[bytes]:
    return [b"Basic " + base64.b64encode(user + b":" + password)]


def test_basic_auth_answers_a_challenge_until_the_right_password(tmp_path: Path) -> None:
    path = tmp_path / "htpasswd"
    path.write_bytes(users_file(alice=HASHES["sha256"]))
    auth = htpasswd.BasicAuth(str(path), 'Staff "only"')
    challenge = (401, b'WWW-Authenticate: Basic realm="Staff \\"only\\""\r\n')
    assert auth.unauthorized == challenge
    assert auth.check(None) == challenge
    assert auth.check([b"Bearer x"]) == challenge
    assert auth.check(basic(b"alice", b"wrong")) == challenge
    assert auth.check(basic(b"alice", PASSWORD)) is None
    assert auth.check(basic(b"alice", PASSWORD)) is None  # remembered: no hash this time
    assert auth.check(basic(b"alice", b"wrong")) == challenge  # remembered too
    assert sorted(auth.known.values()) == [False, True]


def test_past_its_share_of_a_second_hashing_answers_503_and_remembered_ones_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "htpasswd"
    path.write_bytes(users_file(alice=HASHES["sha256"]))
    auth = htpasswd.BasicAuth(str(path), "r")
    clock = [1000.0]
    monkeypatch.setattr(htpasswd.time, "monotonic", lambda: clock[0])

    def slow_verify(users: htpasswd.Users, user: bytes, password: bytes) -> bool:
        clock[0] += 0.1  # each hash takes a tenth of a second
        return password == PASSWORD

    monkeypatch.setattr(htpasswd, "verify", slow_verify)
    assert auth.check(basic(b"alice", PASSWORD)) is None
    answers = [auth.check(basic(b"alice", b"guess %d" % n)) for n in range(5)]
    assert answers[:2] == [auth.unauthorized] * 2  # 0.3 s spent: past the share
    assert answers[2:] == [htpasswd.BUSY] * 3
    assert auth.check(basic(b"alice", PASSWORD)) is None  # known: no hash, no wait
    clock[0] += htpasswd.WINDOW  # a new second
    assert auth.check(basic(b"alice", b"guess 9")) == auth.unauthorized


def test_the_file_is_read_again_when_it_changes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "htpasswd"
    path.write_bytes(users_file(alice=HASHES["sha256"]))
    auth = htpasswd.BasicAuth(str(path), "r")
    assert auth.check(basic(b"alice", PASSWORD)) is None
    path.write_bytes(users_file(bob=HASHES["sha512"]))
    os.utime(path, ns=(1, 1))  # a new identity even within the file system's time resolution
    clock = [auth.checked + htpasswd.RECHECK]
    monkeypatch.setattr(htpasswd.time, "monotonic", lambda: clock[0])
    assert auth.check(basic(b"alice", PASSWORD)) == auth.unauthorized  # gone, known or not
    assert auth.check(basic(b"bob", PASSWORD)) is None
    # A file broken meanwhile keeps the users read before, and says so once.
    path.write_bytes(b"bob\n")
    clock[0] += htpasswd.RECHECK
    with caplog.at_level(logging.ERROR, "maitred.error"):
        assert auth.check(basic(b"bob", PASSWORD)) is None
        clock[0] += htpasswd.RECHECK
        assert auth.check(basic(b"bob", PASSWORD)) is None
    assert len([r for r in caplog.records if "cannot read" in r.message]) == 1


def test_a_file_that_cannot_be_used_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No such file"):
        htpasswd.BasicAuth(str(tmp_path / "missing"), "r")


def test_weak_hashes_are_warned_of_when_the_file_is_first_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "htpasswd"
    path.write_bytes(users_file(old=HASHES["apr1"], new=HASHES["bcrypt-2y"]))
    with caplog.at_level(logging.WARNING, "maitred.error"):
        htpasswd.BasicAuth(str(path), "r")
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: user 'old' has an apr1-MD5 hash: re-hash it with htpasswd -B"
    ]
