"""`maitred ctl`'s answers for a person: one function per command, plain text (pure).

What each command returns is maitred.mastercommands' (and the status document's); a command
without a view of its own (one another module registered) is shown as indented JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

USAGES = (
    "status",
    "top",
    "workers APP N",
    "reload [APP]",
    "reopen-logs",
    "stacks [PID]",
    "drain",
    "undrain",
    "stop",
    "help",
    "cache purge (--url URL | --prefix PATH | --tag TAG) [--app NAME]",
)


def render(command: str, result: Any) -> str:
    view = VIEWS.get(command)
    if view is None:
        return json.dumps(result, indent=2) + "\n"
    return view(result)


def _table(rows: list[list[str]]) -> list[str]:
    """Rows as aligned columns (the first row is the header)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _status(doc: dict[str, Any]) -> str:
    lines = [f"maitred master {doc['pid']}: {doc['state']}"]
    for name, app in doc["apps"].items():
        least, most = app["scaling"]
        bounds = f", scaling {least}..{most}" if most > least else ""
        lines += [
            "",
            f"{name} ({app['app']}): {app['wanted']} workers{bounds}; "
            f"queue {app['queued']} (oldest {app['oldest_wait']:.1f} s), "
            f"threads busy {app['busy']:.1f} of {app['threads']}",
        ]
        rows = [["PID", "ID", "STATE", "AGE", "IN FLIGHT", "OLDEST"]]
        for w in app["workers"]:
            held = "-" if w["in_flight"] is None else str(w["in_flight"])
            rows.append(
                [
                    str(w["pid"]),
                    str(w["id"]),
                    w["state"],
                    f"{w['age']:.0f}s",
                    held,
                    f"{w['oldest_request']:.1f}s",
                ]
            )
        lines += ["  " + line for line in _table(rows)]
    return "\n".join(lines) + "\n"


def _top(doc: dict[str, Any]) -> str:
    rows = [["APP", "PID", "IN FLIGHT", "OLDEST"]]
    for name, app in doc["apps"].items():
        for w in app["workers"]:
            if w["in_flight"] or w["oldest_request"]:
                rows.append(
                    [name, str(w["pid"]), str(w["in_flight"] or "-"), f"{w['oldest_request']:.1f}s"]
                )
    if len(rows) == 1:
        return f"maitred master {doc['pid']}: no request in flight\n"
    return f"maitred master {doc['pid']}: requests in flight\n" + "\n".join(_table(rows)) + "\n"


def _stacks(result: dict[str, Any]) -> str:
    lines = []
    for report in result["workers"]:
        threads = report["threads"]
        lines.append(f"{report['worker']} (pid {report['pid']}): {len(threads)} busy threads")
        for t in threads:
            rid = f" [{t['request_id']}]" if t["request_id"] else ""
            lines.append(
                f"  {t['method']} {t['path']}{rid}, {t['age']:.1f} s, thread {t['thread']}:"
            )
            lines += ["    " + line for line in t["stack"].rstrip("\n").split("\n")]
        if report.get("left_out"):
            lines.append(f"  ({report['left_out']} more threads left out: too long)")
    for pid in result["no_answer"]:
        lines.append(f"pid {pid}: no answer in time")
    return "\n".join(lines) + "\n" if lines else "no worker is ready\n"


def _workers(result: dict[str, Any]) -> str:
    least, most = result["scaling"]
    bounds = f" (scaling {least}..{most})" if most > least else ""
    return f"{result['app']}: {result['workers']} workers{bounds}\n"


def _said(text: str) -> Callable[[Any], str]:
    return lambda result: text + "\n"


def _help(result: list[dict[str, str]]) -> str:
    rows = [[f"{c['command']} {c['usage']}".strip(), c["summary"]] for c in result]
    return "\n".join(_table([["COMMAND", ""], *rows])) + "\n"


VIEWS: dict[str, Callable[[Any], str]] = {
    "status": _status,
    "top": _top,
    "stacks": _stacks,
    "workers": _workers,
    "reload": lambda result: f"reloading: {', '.join(result['reloading'])}\n",
    "reopen-logs": _said("log files reopened"),
    "drain": _said("draining: readiness checks answer 503; requests are still served"),
    "undrain": _said("ready again: readiness checks pass"),
    "stop": _said("stopping gracefully"),
    "help": _help,
}
