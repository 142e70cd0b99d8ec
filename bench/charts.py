"""PNG charts of a run: throughput and p99 latency, one panel per scenario.

matplotlib is optional: without it (a bare CI machine running --quick) no chart is drawn and the
report says nothing about charts.
"""

from __future__ import annotations

import math
import os
from typing import Any

from bench.report import Results, ok_profiles

# file -> (key in the measured figures, sub-key, title, log scale)
CHARTS = {
    "throughput.png": ("rps", None, "successful requests/s (higher is better)", False),
    "latency.png": ("latency_ms", "p99", "p99 latency, ms (lower is better, log scale)", True),
}
PANEL_COLUMNS = 3
PANEL_SIZE = (4.6, 2.6)  # inches per panel
TICKS = 4
BASELINE_COLOR = "#c0392b"
PEER_COLOR = "#7f8c8d"
DPI = 110
NO_ANSWER = " no answer"


def write_charts(results: Results, out_dir: str) -> list[str]:
    """Draws the charts into out_dir; returns their file names (none without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib import ticker
    except ImportError:
        return []
    if not any(profile["scenarios"] for profile in ok_profiles(results)):
        return []
    written = []
    for file_name, (key, sub, title, log) in CHARTS.items():
        figure = _draw(plt, ticker, results, (key, sub, log))
        figure.suptitle(f"{title} — {results['meta']['date']}")
        figure.tight_layout()
        figure.savefig(os.path.join(out_dir, file_name), dpi=DPI)
        plt.close(figure)
        written.append(file_name)
    return written


def _draw(plt: Any, ticker: Any, results: Results, what: tuple[str, str | None, bool]) -> Any:
    scenarios = [s["name"] for s in results["scenarios"]]
    rows = math.ceil(len(scenarios) / PANEL_COLUMNS)
    figure, axes = plt.subplots(
        rows,
        PANEL_COLUMNS,
        figsize=(PANEL_SIZE[0] * PANEL_COLUMNS, PANEL_SIZE[1] * rows),
        squeeze=False,
    )
    for index, axis in enumerate(axes.flat):
        if index >= len(scenarios):
            axis.set_visible(False)
            continue
        _panel(axis, ticker, results, scenarios[index], what)
    return figure


def _values(
    results: Results, scenario: str, key: str, sub: str | None
) -> tuple[list[str], list[float | None]]:
    names: list[str] = []
    values: list[float | None] = []
    for profile in ok_profiles(results):
        outcome = profile["scenarios"].get(scenario)
        if not outcome or "error" in outcome:
            continue
        names.append(profile["name"])
        figure = outcome["measured"][key]
        # No answer means no latency: a bar at 0 ms would read as the fastest.
        answered = outcome["measured"]["requests"] > 0
        values.append(float(figure[sub] if sub else figure) if answered or not sub else None)
    return names, values


def _panel(
    axis: Any, ticker: Any, results: Results, scenario: str, what: tuple[str, str | None, bool]
) -> None:
    key, sub, log = what
    names, values = _values(results, scenario, key, sub)
    known = [v for v in values if v]
    left = 10 ** math.floor(math.log10(min(known))) if log and known else 0.0
    colors = [BASELINE_COLOR if n == results["meta"]["baseline"] else PEER_COLOR for n in names]
    # Bars start at the axis' left edge: 0, or on a log scale the power of ten below the smallest.
    axis.barh(names, [(v or left) - left for v in values], left=left, color=colors)
    if log and known:
        axis.set_xscale("log")
        axis.set_xlim(left=left)
        axis.xaxis.set_minor_formatter(ticker.NullFormatter())
    else:
        axis.xaxis.set_major_locator(ticker.MaxNLocator(TICKS))
    axis.xaxis.set_major_formatter(ticker.FuncFormatter(_short))
    axis.invert_yaxis()
    axis.set_title(scenario, fontsize=10)
    axis.tick_params(labelsize=8)
    for y, value in enumerate(values):
        text = NO_ANSWER if value is None else f" {_label(value)}"
        axis.text(value or left, y, text, va="center", fontsize=7)


def _label(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


def _short(value: float, _position: object) -> str:
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"
