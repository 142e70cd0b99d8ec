"""The raw request corpus (see README.md): its cases, and what the parser makes of one."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maitred.http.errors import ProtocolError
from maitred.http.parser import END, Event, Limits, RequestHead, RequestParser

CORPUS_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Case:
    name: str
    raw: bytes
    requests: list[dict[str, Any]]
    status: int | None  # None: every request is valid


def load_cases() -> list[Case]:
    expected = json.loads((CORPUS_DIR / "expected.json").read_text())
    files = {p.stem for p in CORPUS_DIR.glob("*.http")}
    assert files == set(expected), f"unmatched: {sorted(files ^ set(expected))}"
    return [
        Case(name, (CORPUS_DIR / f"{name}.http").read_bytes(), exp["requests"], exp.get("status"))
        for name, exp in sorted(expected.items())
    ]


def _text(raw: bytes) -> str:
    return raw.decode("latin-1")


def replay(pieces: list[bytes]) -> tuple[list[dict[str, Any]], int | None]:
    """(complete requests, status of the rejection or None), feeding `pieces` in order."""
    parser = RequestParser(Limits())
    collector = _Collector()
    for piece in pieces:
        try:
            events = parser.feed(piece)
        except ProtocolError as exc:
            collector.add(exc.events)  # what the client sent before its mistake still counts
            return collector.requests, exc.status
        collector.add(events)
    return collector.requests, None


class _Collector:
    """Parser events -> the requests they describe, in the form of expected.json."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.current: dict[str, Any] | None = None

    def add(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, RequestHead):
                assert self.current is None, "a head inside a request"
                self.current = {
                    "method": _text(event.method),
                    "target": _text(event.target),
                    "version": event.version,
                    "headers": [[_text(n), _text(v)] for n, v in event.headers],
                    "body": "",
                }
            elif event is END:
                assert self.current is not None, "END without a head"
                self.requests.append(self.current)
                self.current = None
            else:
                assert self.current is not None and isinstance(event, bytes), event
                self.current["body"] += _text(event)
