"""What /download/ sends, apart from Django so that tests can rebuild it without settings."""

from __future__ import annotations


def download_bytes(size: int) -> bytes:
    """What /download/?size=SIZE sends: a pattern a test can rebuild without the file."""
    pattern = bytes(range(256)) * 4096
    return (pattern * (size // len(pattern) + 1))[:size]
