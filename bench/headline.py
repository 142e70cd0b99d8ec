"""The headline table: maitred against each peer on the loads users feel, with the spread.

Theory of operation: one row per load the performance work is steered by (hello keep-alive and
with `Connection: close`, POST 1 MiB, idle PSS, static 4 KiB and 1 MiB, the Django page and the
server's CPU per page, CPU-bound work), one column per peer. A cell is the ratio maitred / peer:
the median of the ratios of the rounds in which both ran (each round measures every profile
afresh, in alternating order, see bench/rounds.py), then the lowest and highest of them, and
`(?)` where that spread is wider than the difference the median claims. maitred / peer reads
directly against targets such as "at least granian's req/s" (1.00x or more); where less is
better (memory, CPU per page), below 1 is better. The maitred column gives its own figure from
the median round, so a ratio has a scale.

Made only from a run's results document (results.json), so any saved run can be rendered again
(`python -m bench --render DIR`). Pure functions: unit-tested in tests/unit/test_bench_headline.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.report import DASH, MAX_QUIET_OTHER_PCT, UNSURE, disturbance
from bench.rounds import RatioSummary, median, paired_ratios, rps, summarize
from bench.scenarios import CPU_MS, STATIC_FILES

Profile = dict[str, Any]
Figure = Callable[[Profile, dict[str, Any]], float | None]
KIB = 1024
MEGABYTE = 1_000_000
MILLION = 1_000_000
# Scenarios that only a server running the shared app can run.
APP_SCENARIOS = frozenset({"hello", "django", "cpu", "upload"})


def _rate(scenario: str, scale: float = 1.0) -> Figure:
    """A scenario's successful requests per second, times `scale` (bytes, loops)."""

    def figure(profile: Profile, meta: dict[str, Any]) -> float | None:
        value = rps(profile["scenarios"].get(scenario))
        return None if value is None else value * scale

    return figure


def _cpu_ms_per_request(scenario: str) -> Figure:
    """The server tree's CPU time per successful request, in ms: what a page costs the whole
    server (front, workers, master), less bent by other work on the machine than a rate."""

    def figure(profile: Profile, meta: dict[str, Any]) -> float | None:
        outcome = profile["scenarios"].get(scenario)
        if rps(outcome) is None or "server_cpu_pct" not in outcome:
            return None
        measured = outcome["measured"]
        if not measured["ok"]:
            return None
        cpu_s = outcome["server_cpu_pct"] / 100 * measured["duration_s"]
        return 1000 * cpu_s / measured["ok"]

    return figure


def _cpu_loops(profile: Profile, meta: dict[str, Any]) -> float | None:
    """Millions of the shared app's loop iterations per second: the CPU-bound work done."""
    value = rps(profile["scenarios"].get("cpu"))
    if value is None:
        return None
    return value * int(meta["cpu_loops_per_ms"]) * CPU_MS / MILLION


def _idle_pss_mib(profile: Profile, meta: dict[str, Any]) -> float | None:
    """Only for a tree that runs the app: nginx alone (the static rows' ceiling) holds no
    interpreter, so its memory compares with nothing here."""
    idle = profile.get("memory", {}).get("idle")
    if not idle or not APP_SCENARIOS & profile["scenarios"].keys():
        return None
    return float(idle["pss_kib"]) / KIB


@dataclass(frozen=True)
class Row:
    label: str
    figure: Figure


ROWS: tuple[Row, ...] = (
    Row("hello, keep-alive, req/s", _rate("hello")),
    Row("hello, `Connection: close`, req/s", _rate("hello-close")),
    Row("POST 1 MiB, req/s", _rate("upload")),
    Row("idle PSS of the process tree after warm-up, MiB (less is better)", _idle_pss_mib),
    Row("static 4 KiB, req/s", _rate("static-4k")),
    Row("static 1 MiB, MB/s", _rate("static-1m", STATIC_FILES["1m.bin"] / MEGABYTE)),
    Row("Django page (template + sqlite), req/s", _rate("django")),
    Row("Django page, server CPU ms per page (less is better)", _cpu_ms_per_request("django")),
    Row(f"CPU-bound work (`/cpu?ms={CPU_MS}`), M loop iterations/s", _cpu_loops),
)


def _by_name(one_round: Sequence[Profile]) -> dict[str, Profile]:
    return {profile["name"]: profile for profile in one_round}


def round_figures(results: dict[str, Any], name: str, row: Row) -> list[float | None]:
    """The profile's figure for the row in each round (None where it did not run)."""
    meta = results["meta"]
    figures: list[float | None] = []
    for one_round in results.get("rounds") or [results["profiles"]]:
        profile = _by_name(one_round).get(name)
        figures.append(None if profile is None else row.figure(profile, meta))
    return figures


def ratio(results: dict[str, Any], peer: str, row: Row) -> RatioSummary | None:
    """maitred / peer over the rounds in which both have the figure."""
    base = results["meta"]["baseline"]
    mine = round_figures(results, base, row)
    theirs = round_figures(results, peer, row)
    return summarize(paired_ratios(mine, theirs))


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def _ratio_text(summary: RatioSummary | None) -> str:
    if summary is None:
        return DASH
    if summary.rounds < 2:
        return f"{summary.median:.2f}x"
    text = f"{summary.median:.2f}x ({summary.low:.2f}-{summary.high:.2f})"
    return f"{text} {UNSURE}" if summary.unsure else text


def _own_text(figures: list[float | None]) -> str:
    measured = [f for f in figures if f is not None]
    return _fmt(median(measured)) if measured else DASH


def peers(results: dict[str, Any]) -> list[str]:
    """The profiles beside the baseline that have a figure in at least one row."""
    base = results["meta"]["baseline"]
    names = [p["name"] for p in results["profiles"] if p["name"] != base and p["scenarios"]]
    return [n for n in names if any(ratio(results, n, row) for row in ROWS)]


def headline_table(results: dict[str, Any]) -> list[str]:
    """The table's Markdown lines: a row per load that ran, a column per peer."""
    base = results["meta"]["baseline"]
    names = peers(results)
    lines = [
        _line(["load", base, *(f"{base} / {name}" for name in names)]),
        _line(["---", *["---:"] * (1 + len(names))]),
    ]
    for row in ROWS:
        own = round_figures(results, base, row)
        if all(f is None for f in own):
            continue
        cells = [_ratio_text(ratio(results, name, row)) for name in names]
        lines.append(_line([row.label, _own_text(own), *cells]))
    return lines


def _line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _rounds_text(rounds: int) -> str:
    if rounds < 2:
        return "one round, so no spread: do not trust a ratio of it"
    return f"{rounds} rounds in alternating order"


def headline_markdown(results: dict[str, Any]) -> str:
    """The table with the line that says what it is: machine, date, rounds, one run."""
    meta = results["meta"]
    rounds = int(meta.get("rounds", 1))
    other = disturbance(results)
    warning = (
        f" A disturbed run: other processes took up to {other:.0f} % of a core while a load"
        " ran, which the spreads show."
        if other > MAX_QUIET_OTHER_PCT
        else ""
    )
    return "\n".join(
        [
            f"Ratios {meta['baseline']} / peer from one run of `{meta['command']}` on"
            f" {meta['date']} ({meta['cpu']}, {meta['cores']} cores, Python {meta['python']},"
            f" commit `{meta['commit'][:12]}`): {_rounds_text(rounds)},"
            f" {meta['duration_s']:g} s per load; each cell is the median of"
            " the same-round ratios, then their lowest-highest; (?) marks a spread wider than"
            f" the difference claimed. The {meta['baseline']} column is its median round's"
            f" figure. Above 1 is better for maitred, except where less is better.{warning}",
            "",
            *headline_table(results),
            "",
        ]
    )
