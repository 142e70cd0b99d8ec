"""The bench's headline table: maitred / peer per load, with the spread of the rounds."""

from __future__ import annotations

from typing import Any

import pytest
from bench.headline import ROWS, headline_markdown, headline_table, ratio

DJANGO = next(row for row in ROWS if row.label.startswith("Django"))
MEMORY = next(row for row in ROWS if row.label.startswith("idle PSS"))
CPU = next(row for row in ROWS if row.label.startswith("CPU-bound"))


def _profile(name: str, scenarios: dict[str, float], pss_mib: float = 0.0) -> dict[str, Any]:
    return {
        "name": name,
        "memory": {"idle": {"pss_kib": pss_mib * 1024}} if pss_mib else {},
        "scenarios": {s: {"measured": {"rps": rps}} for s, rps in scenarios.items()},
    }


def _results(rounds: list[list[dict[str, Any]]]) -> dict[str, Any]:
    meta = {
        "baseline": "maitred",
        "rounds": len(rounds),
        "command": "python -m bench --rounds 3",
        "date": "2026-12-07 23:00 UTC",
        "cpu": "AMD EPYC",
        "cores": 2,
        "python": "3.11.7",
        "commit": "0123456789abcdef",
        "duration_s": 5.0,
        "cpu_loops_per_ms": 1000,
    }
    return {"meta": meta, "profiles": rounds[len(rounds) // 2], "rounds": rounds}


def _round(mine: float, theirs: float, their_pss: float) -> list[dict[str, Any]]:
    return [
        _profile("maitred", {"django": mine, "cpu": 100}, 48),
        _profile("granian", {"django": theirs}, their_pss),
    ]


def three_rounds() -> dict[str, Any]:
    return _results([_round(200, 250, 50), _round(300, 300, 60), _round(240, 200, 40)])


def test_a_cell_is_maitred_over_the_peer_in_the_same_round() -> None:
    summary = ratio(three_rounds(), "granian", DJANGO)
    assert summary is not None
    # Rounds: 200/250, 300/300, 240/200: the median, then the lowest and the highest.
    assert (summary.median, summary.low, summary.high) == (1.0, 0.8, 1.2)
    assert summary.unsure  # a spread of 0.4 cannot tell a difference of 0


def test_memory_ratios_and_work_units() -> None:
    results = three_rounds()
    memory = ratio(results, "granian", MEMORY)
    assert memory is not None and memory.median == pytest.approx(48 / 50)
    assert ratio(results, "granian", CPU) is None  # the peer never ran it


def test_the_table_has_a_row_per_load_that_ran_and_flags_unsure_cells() -> None:
    lines = headline_table(three_rounds())
    assert lines[:2] == ["| load | maitred | maitred / granian |", "| --- | ---: | ---: |"]
    django = next(line for line in lines if line.startswith("| Django"))
    assert django == "| Django page (template + sqlite), req/s | 240 | 1.00x (0.80-1.20) (?) |"
    cpu = next(line for line in lines if line.startswith("| CPU-bound"))
    assert cpu.endswith("| 0.50 | — |")  # 100 req/s x 5 ms x 1000 loops/ms: 0.5 M loops/s
    assert not any(line.startswith("| hello") for line in lines)  # not run: no row


def test_the_markdown_says_what_the_figures_are() -> None:
    results = three_rounds()
    text = headline_markdown(results)
    assert "one run of `python -m bench --rounds 3`" in text
    assert "2026-12-07 23:00 UTC" in text and "3 rounds in alternating order" in text
    assert "disturbed" not in text
    results["profiles"][0]["scenarios"]["django"]["other_cpu_pct"] = 150.0
    assert "A disturbed run: other processes took up to 150 % of a core" in headline_markdown(
        results
    )


def test_memory_compares_only_trees_that_run_the_app() -> None:
    nginx_alone = _profile("nginx-static", {"static-4k": 9000}, 9)
    results = _results([[*_round(200, 250, 50), nginx_alone] for _ in range(3)])
    assert ratio(results, "nginx-static", MEMORY) is None
    assert ratio(results, "granian", MEMORY) is not None


def test_a_run_of_maitred_alone_gives_a_well_formed_table() -> None:
    results = _results([[_profile("maitred", {"hello": 5000}, 48)]])
    assert headline_table(results) == [
        "| load | maitred |",
        "| --- | ---: |",
        "| hello, keep-alive, req/s | 5,000 |",
        "| idle PSS of the process tree after warm-up, MiB (less is better) | 48.0 |",
    ]
    assert "one round, so no spread" in headline_markdown(results)


def test_cpu_per_page_is_the_trees_cpu_over_the_pages_answered() -> None:
    results = three_rounds()
    cpu_pcts = [(50, 60), (60, 60), (40, 80)]
    for one_round, (mine, theirs) in zip(results["rounds"], cpu_pcts, strict=True):
        for profile, pct in zip(one_round, (mine, theirs), strict=True):
            outcome = profile["scenarios"]["django"]
            outcome["server_cpu_pct"] = pct
            outcome["measured"].update(ok=int(outcome["measured"]["rps"] * 5), duration_s=5.0)
    per_page = next(row for row in ROWS if row.label.startswith("Django page, server CPU"))
    # Round 1, maitred: 50 % of a core over 5 s for 1,000 pages is 2.5 ms a page; granian:
    # 60 % for 1,250 pages, 2.4 ms. Round 2: 2.0 and 2.0. Round 3: 1.67 and 4.0.
    summary = ratio(results, "granian", per_page)
    assert summary is not None
    assert (summary.low, summary.median, summary.high) == pytest.approx(
        ((2 / 1200) / (4 / 1000), 1.0, 2.5 / 2.4)
    )
