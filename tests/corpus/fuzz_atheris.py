"""Coverage-guided fuzzing of the sans-IO parser with atheris (optional; not part of pytest).

    pip install atheris
    python tests/corpus/fuzz_atheris.py -runs=200000          # seeds: the corpus
    python tests/corpus/fuzz_atheris.py -max_total_time=600   # ten minutes

Each input is cut in two at a point taken from its first byte and fed in two pieces, so framing
that spans a read is exercised too. A crash is any exception other than ProtocolError, or a
status the front would not answer with; libFuzzer writes the input to ./crash-*.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from maitred.http.errors import ProtocolError
    from maitred.http.parser import Limits, RequestParser

ANSWERABLE = {400, 413, 414, 417, 431, 501, 505}
CORPUS_DIR = Path(__file__).resolve().parent


def one_input(data: bytes) -> None:
    cut = data[0] % len(data) if data else 0
    parser = RequestParser(Limits())
    try:
        parser.feed(data[:cut])
        parser.feed(data[cut:])
    except ProtocolError as exc:
        if exc.status not in ANSWERABLE:
            raise AssertionError(f"unexpected status {exc.status}") from exc


def main() -> None:
    seeds = [str(p) for p in sorted(CORPUS_DIR.glob("*.http"))]
    args = [sys.argv[0], *sys.argv[1:]]
    if not any(not a.startswith("-") for a in sys.argv[1:]):
        # No corpus directory given: start from a copy of ours (libFuzzer adds to it).
        work = Path("fuzz-corpus")
        work.mkdir(exist_ok=True)
        for seed in seeds:
            (work / Path(seed).name).write_bytes(Path(seed).read_bytes())
        args.append(str(work))
    atheris.Setup(args, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
