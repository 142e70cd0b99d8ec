"""Turning a run's results (the JSON document) into the markdown report.

The markdown is made only from the JSON, so a report can be rebuilt from any saved run. Ratios
are to the baseline profile (maitred when it ran): throughput ratios above 1 and latency ratios
below 1 mean the peer did better than the baseline.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from bench.memory import ROLES
from bench.rounds import RatioSummary, paired_ratios, summarize
from bench.scenarios import CPU_MS

Results = dict[str, Any]
Cell = Callable[[dict[str, Any]], float | None]
# Above this CPU share (% of one core) used by other processes, a run is flagged as disturbed.
MAX_QUIET_OTHER_PCT = 10.0
NA = "n/a"
# Marks a ratio whose spread over the rounds is wider than the difference it claims.
UNSURE = "(?)"
NO_ANSWER = "no answer"
DASH = "—"


def measured(key: str, sub: str | None = None) -> Cell:
    def cell(outcome: dict[str, Any]) -> float | None:
        value = outcome["measured"][key]
        return float(value[sub] if sub else value)

    return cell


def latency(percentile: str) -> Cell:
    """A latency percentile; None when no request was answered (0 ms would read as fast)."""

    def cell(outcome: dict[str, Any]) -> float | None:
        if not outcome["measured"]["requests"]:
            return None
        return float(outcome["measured"]["latency_ms"][percentile])

    return cell


def _outcome(profile: dict[str, Any], scenario: str) -> dict[str, Any] | None:
    outcome: dict[str, Any] | None = profile["scenarios"].get(scenario)
    return outcome


def ok_profiles(results: Results) -> list[dict[str, Any]]:
    return [p for p in results["profiles"] if p["scenarios"]]


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def _fmt_optional(value: float | None) -> str:
    return NO_ANSWER if value is None else _fmt(value)


def _matrix(results: Results, cell: Cell, ratio: bool, missing: str = NA) -> list[str]:
    """Scenarios x profiles; ``missing`` stands where a profile ran but has no figure."""
    profiles = ok_profiles(results)
    base_name = results["meta"]["baseline"]
    lines = [
        "| scenario | " + " | ".join(p["name"] for p in profiles) + " |",
        "|---|" + "---:|" * len(profiles),
    ]
    base = next((p for p in profiles if p["name"] == base_name), None)
    for scenario in results["scenarios"]:
        name = scenario["name"]
        base_value = _value(base, name, cell) if base else None
        row = []
        for profile in profiles:
            value = _value(profile, name, cell)
            reference = base_value if ratio else None
            text = _ratio_cell(value, reference, profile, name, missing)
            summary = _round_ratios(results, profile, name, cell) if ratio else None
            if value is not None and summary is not None and summary.rounds > 1:
                text = f"{_fmt(value)} ({_summary_text(summary)})"
            row.append(text)
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    return lines


def _round_ratios(
    results: Results, profile: dict[str, Any], scenario: str, cell: Cell
) -> RatioSummary | None:
    """The profile's ratio to the baseline in each round of the run, summarised (None for the
    baseline itself: its ratio is 1 by definition)."""
    name, base_name = profile["name"], results["meta"]["baseline"]
    if name == base_name:
        return None
    values, bases = [], []
    for one_round in results.get("rounds", []):
        by_name = {p["name"]: p for p in one_round}
        if name in by_name and base_name in by_name:
            values.append(_value(by_name[name], scenario, cell))
            bases.append(_value(by_name[base_name], scenario, cell))
    return summarize(paired_ratios(values, bases))


def _summary_text(summary: RatioSummary) -> str:
    """``0.95x, 0.90-1.02`` and the unsure mark when the spread outweighs the claim."""
    text = f"{summary.median:.2f}x, {summary.low:.2f}-{summary.high:.2f}"
    return f"{text} {UNSURE}" if summary.unsure else text


def _value(profile: dict[str, Any], scenario: str, cell: Cell) -> float | None:
    outcome = _outcome(profile, scenario)
    if outcome is None or "error" in outcome:
        return None
    return cell(outcome)


def _ratio_cell(
    value: float | None, base: float | None, profile: dict[str, Any], scenario: str, missing: str
) -> str:
    if value is None:
        outcome = _outcome(profile, scenario)
        if outcome is None:
            return NA
        return "error" if "error" in outcome else missing
    text = _fmt(value)
    if base:
        text += f" ({value / base:.2f}x)"
    return text


def _hol_table(results: Results) -> list[str]:
    lines = [
        "| profile | mode | p50 alone | p50 with slow | p99 alone | p99 with slow "
        "| /hello req/s with slow | slow lane req/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for profile in ok_profiles(results):
        for name, mode in (("hol-keepalive", "keep-alive"), ("hol-close", "close")):
            outcome = _outcome(profile, name)
            if not outcome or "error" in outcome or not outcome.get("baseline"):
                continue
            alone, loaded = outcome["baseline"]["latency_ms"], outcome["measured"]["latency_ms"]
            slow_rps = outcome["background"].get("rps", 0.0)
            lines.append(
                f"| {profile['name']} | {mode} | {_fmt(alone['p50'])} | {_fmt(loaded['p50'])} "
                f"| {_fmt(alone['p99'])} | {_fmt(loaded['p99'])} "
                f"| {_fmt(outcome['measured']['rps'])} | {_fmt(slow_rps)} |"
            )
    return lines


def _slow_table(results: Results) -> list[str]:
    lines = [
        "| profile | /hello req/s | vs no slow clients | p99 ms | errors "
        "| slow connections opened | closed by server |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for profile in ok_profiles(results):
        outcome = _outcome(profile, "slow-clients")
        if not outcome or "error" in outcome:
            continue
        rps = outcome["measured"]["rps"]
        hello = _value(profile, "hello", measured("rps"))
        versus = f"{rps / hello:.2f}x" if hello else NA
        bg = outcome["background"]
        lines.append(
            f"| {profile['name']} | {_fmt(rps)} | {versus} "
            f"| {_fmt_optional(latency('p99')(outcome))} "
            f"| {sum(outcome['measured']['errors'].values())} "
            f"| {bg.get('connects', 0)} | {bg.get('closed_by_server', 0)} |"
        )
    return lines


def _mib(kib: int) -> str:
    return f"{kib / 1024:.0f}"


def _per_profile(
    header: list[str], results: Results, row: Callable[[dict[str, Any]], str | None]
) -> list[str]:
    """A table with a row per profile that ran; ``row`` gives None for one without the figures."""
    rows = [row(profile) for profile in ok_profiles(results)]
    return header + [r for r in rows if r is not None]


def _memory_row(profile: dict[str, Any]) -> str | None:
    idle, peak = profile["memory"].get("idle"), profile["memory"].get("peak")
    if not idle or not peak:
        return None
    return (
        f"| {profile['name']} | {idle['processes']} | {_mib(idle['rss_kib'])} "
        f"| {_mib(idle['pss_kib'])} | {_mib(peak['rss_kib'])} | {_mib(peak['pss_kib'])} |"
    )


def _memory_table(results: Results) -> list[str]:
    header = [
        "| profile | processes | idle RSS MiB | idle PSS MiB | peak RSS MiB | peak PSS MiB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    return _per_profile(header, results, _memory_row)


def _how_ratios(meta: dict[str, Any]) -> str:
    rounds = int(meta.get("rounds", 1))
    if rounds < 2:
        return ", one round: no spread"
    return (
        f"; each profile ran {rounds} rounds in alternating order: the figure is the median"
        " round's, in brackets the median of the same-round ratios and their lowest-highest;"
        f" {UNSURE} marks a ratio whose spread is wider than the difference it claims"
    )


def _cpu_loops_lines(results: Results) -> list[str]:
    """The CPU-bound scenario in the unit of work done: loop iterations of the shared app's
    spin per second (requests per second x loops per request)."""
    per_request = results["meta"]["cpu_loops_per_ms"] * CPU_MS
    loops: Cell = lambda outcome: float(outcome["measured"]["rps"]) * per_request  # noqa: E731
    cells = []
    for profile in ok_profiles(results):
        value = _value(profile, "cpu", loops)
        if value is None:
            continue
        summary = _round_ratios(results, profile, "cpu", loops)
        ratio = f" ({_summary_text(summary)})" if summary else ""
        cells.append(f"| {profile['name']} | {value / 1e6:,.2f}{ratio} |")
    if not cells:
        return []
    return [
        f"CPU-bound work (`/cpu?ms={CPU_MS}`), million loop iterations per second:",
        "",
        "| profile | M loops/s |",
        "|---|---:|",
        *cells,
        "",
    ]


def _roles_row(profile: dict[str, Any]) -> str | None:
    roles, idle = profile["memory"].get("idle_roles"), profile["memory"].get("idle")
    if not roles or not idle:
        return None
    cells = [
        f"{roles[name]['pss_kib_each'] / 1024:.1f}"
        + (f" x{roles[name]['processes']}" if roles[name]["processes"] > 1 else "")
        if name in roles
        else DASH
        for name in ROLES
    ]
    return (
        f"| {profile['name']} | "
        + " | ".join(cells)
        + f" | {idle['processes']} | {idle['pss_kib'] / 1024:.1f} |"
    )


def _roles_table(results: Results) -> list[str]:
    header = [
        "| profile | master | front | workers (each) | processes | tree |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    return _per_profile(header, results, _roles_row)


def _errors_cell(outcome: dict[str, Any]) -> float | None:
    return float(sum(outcome["measured"]["errors"].values()))


def share(key: str) -> Cell:
    def cell(outcome: dict[str, Any]) -> float | None:
        return float(outcome[key]) if key in outcome else None

    return cell


def _profiles_table(results: Results) -> list[str]:
    lines = ["| profile | server | version | status | command |", "|---|---|---|---|---|"]
    for p in results["profiles"]:
        status = p["status"] if not p["message"] else f"{p['status']}: {p['message']}"
        command = f"`{p['command']}`" if p["command"] else DASH
        status = status.replace("|", "\\|").replace("\n", " ")
        lines.append(
            f"| {p['name']} | {p['title']} | {p['version'] or DASH} | {status} | {command} |"
        )
    return lines


def _disturbance_cell(outcome: dict[str, Any]) -> float | None:
    if "other_cpu_pct" not in outcome:
        return None
    return float(outcome["other_cpu_pct"]) + float(outcome.get("steal_cpu_pct", 0.0))


def disturbance(results: Results) -> float:
    """The largest CPU share (% of one core) other processes and steal took during a scenario."""
    shares = [
        _disturbance_cell(outcome) or 0.0
        for profile in results["profiles"]
        for outcome in profile["scenarios"].values()
    ]
    return max(shares, default=0.0)


def render_summary(results: Results, charts: list[str]) -> list[str]:
    """The part the README's Performance section shows: context, headline tables, charts."""
    meta = results["meta"]
    other = disturbance(results)
    warning = (
        [
            f"**Disturbed run:** other processes (or hypervisor steal) took up to {other:.0f} % of"
            " a core while a scenario ran (see the CPU tables); compare figures only with a"
            " quiet re-run.",
            "",
        ]
        if other > MAX_QUIET_OTHER_PCT
        else []
    )
    lines = [
        *warning,
        f"Run on {meta['date']}: {meta['cpu']}, {meta['cores']} cores, {meta['memory_gib']} GiB,"
        f" {meta['kernel']}, Python {meta['python']}, commit `{meta['commit'][:12]}`.",
        f"Command: `{meta['command']}`. Load generator: {meta['loadgen']} on the same machine;"
        f" {meta['duration_s']:g} s per load; every server has {meta['slots']} request slots.",
        "",
        f"Successful requests per second (ratio to {meta['baseline']}{_how_ratios(meta)}):",
        "",
        *_matrix(results, measured("rps"), ratio=True),
        "",
        *_cpu_loops_lines(results),
        "Idle PSS per process, MiB (after warm-up; workers: the mean of one):",
        "",
        *_roles_table(results),
        "",
        f"p99 latency in ms (ratio to {meta['baseline']}):",
        "",
        *_matrix(results, latency("p99"), ratio=True, missing=NO_ANSWER),
        "",
    ]
    lines += [f"![{os.path.splitext(os.path.basename(chart))[0]}]({chart})" for chart in charts]
    return lines


def render_markdown(results: Results, charts: list[str]) -> str:
    meta = results["meta"]
    scenarios = [f"- **{s['name']}**: {s['title']}" for s in results["scenarios"]]
    lines = [
        f"# maitred benchmark, {meta['date']}",
        "",
        *render_summary(results, charts),
        "",
        "## Scenarios",
        "",
        *scenarios,
        "",
        "## Head-of-line blocking: /hello latency (ms) alone and next to slow requests",
        "",
        *_hol_table(results),
        "",
        "## Slow clients",
        "",
        *_slow_table(results),
        "",
        "## Memory of the whole process tree (idle after warm-up; peak under load)",
        "",
        *_memory_table(results),
        "",
        "## Errors (non-2xx responses and socket errors in the measured load)",
        "",
        *_matrix(results, _errors_cell, ratio=False),
        "",
        f"## CPU while each scenario ran (% of one core; the machine has {meta['cores']} cores)",
        "",
        "Server (the whole process tree):",
        "",
        *_matrix(results, share("server_cpu_pct"), ratio=False),
        "",
        "Load generator (every load process of the scenario):",
        "",
        *_matrix(results, share("loadgen_cpu_pct"), ratio=False),
        "",
        "Kernel interrupts (mostly loopback TCP, which belongs to no process):",
        "",
        *_matrix(results, share("kernel_cpu_pct"), ratio=False),
        "",
        "Other processes and hypervisor steal (should be near 0, or the run was disturbed):",
        "",
        *_matrix(results, _disturbance_cell, ratio=False),
        "",
        "## Servers",
        "",
        *_profiles_table(results),
        "",
        f"Tools: {meta['tools']}. CPU work: {meta['cpu_loops_per_ms']} loops/ms.",
        "",
    ]
    return "\n".join(lines)
