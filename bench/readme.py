"""Putting a run's summary into bench/README.md, between two marker comments.

Only the text between the markers changes, so the rest of the README stays hand-written.
"""

from __future__ import annotations

import os

from bench.report import Results, render_summary

START = "<!-- bench:performance:start -->"
END = "<!-- bench:performance:end -->"


def update_readme(readme: str, results: Results, out_dir: str) -> None:
    with open(readme) as f:
        text = f.read()
    if START not in text or END not in text:
        raise SystemExit(f"{readme} has no {START} ... {END} section to update")
    here = os.path.dirname(os.path.abspath(readme))
    relative = os.path.relpath(out_dir, here)
    charts = [
        f"{relative}/{name}"
        for name in ("throughput.png", "latency.png")
        if os.path.exists(os.path.join(out_dir, name))
    ]
    summary = "\n".join(render_summary(results, charts))
    details = f"Full report: [{relative}/results.md]({relative}/results.md)."
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    with open(readme, "w") as f:
        f.write(f"{head}{START}\n{summary}\n{details}\n{END}{tail}")
