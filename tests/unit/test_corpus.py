"""The raw request corpus through the sans-IO parser: whole, byte by byte, random chunkings."""

from __future__ import annotations

import random

import pytest

from corpus import Case, load_cases, replay

CASES = load_cases()
RANDOM_CHUNKINGS = 25  # per case; seeded by the case name so a failure replays the same way


def random_pieces(raw: bytes, rng: random.Random) -> list[bytes]:
    pieces, pos = [], 0
    while pos < len(raw):
        size = rng.choice((1, 2, 3, rng.randint(1, 64), rng.randint(1, len(raw))))
        pieces.append(raw[pos : pos + size])
        pos += size
    return pieces


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case_whole_and_byte_by_byte(case: Case) -> None:
    expected = (case.requests, case.status)
    assert replay([case.raw]) == expected
    assert replay([case.raw[i : i + 1] for i in range(len(case.raw))]) == expected


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case_in_random_chunkings(case: Case) -> None:
    rng = random.Random(case.name)
    for _ in range(RANDOM_CHUNKINGS):
        pieces = random_pieces(case.raw, rng)
        assert replay(pieces) == (case.requests, case.status), pieces


def test_every_rejection_is_a_client_error_or_a_named_exception() -> None:
    # 501 (a coding we do not decode) and 505 (HTTP version) are what the RFCs ask for.
    statuses = {c.status for c in CASES if c.status is not None}
    assert all(400 <= s < 500 or s in (501, 505) for s in statuses), statuses


def test_corpus_covers_valid_and_smuggling_cases() -> None:
    names = {c.name for c in CASES}
    assert {"cl-and-te", "te-and-cl", "cl-duplicate-different", "te-chunked-not-final"} <= names
    assert sum(c.status is None for c in CASES) >= 10
