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


def _server(doc: dict[str, Any]) -> str:
    server = doc["server"]
    fronts = len(server["fronts"])
    return (
        f"maitred {server['version']}, master {server['pid']}: {server['state']}, "
        f"up {_age(server['uptime_seconds'])}, {fronts} front{'s' if fronts != 1 else ''}"
    )


def _age(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    return f"{seconds // 3600:.0f}h{seconds % 3600 // 60:02.0f}m"


def _size(value: int | None) -> str:
    return "-" if value is None else f"{value / (1 << 20):.0f}M"


def _known(value: Any) -> str:
    return "-" if value is None else str(value)


def _status(doc: dict[str, Any]) -> str:
    """The status document (maitred.statusdoc) as one screen: each pool and its workers."""
    lines = [_server(doc)]
    for name, app in doc["apps"].items():
        pool, queue, slots = app["pool"], app["queue"], app["slots"]
        scaling = f", scaling {pool['min']}..{pool['max']}" if pool["max"] > pool["min"] else ""
        lines += [
            "",
            f"{name}: {pool['size']} workers x {pool['threads']} threads{scaling}; "
            f"queue {queue['length']} (oldest {queue['oldest_seconds']:.1f}s); "
            f"slots busy {slots['busy']} of {slots['total']}; "
            f"{len(app['in_flight'])} in flight",
        ]
        rows = [["PID", "ID", "STATE", "REQUESTS", "IN FLIGHT", "RSS", "AGE"]]
        for w in sorted(app["workers"], key=lambda w: w["id"]):
            rows.append(
                [
                    str(w["pid"]),
                    str(w["id"]),
                    w["state"],
                    _known(w["requests"]),
                    _known(w["in_flight"]),
                    _size(w["rss_bytes"]),
                    _age(w["age_seconds"]),
                ]
            )
        lines += ["  " + line for line in _table(rows)]
    return "\n".join(lines) + "\n"


def _top(doc: dict[str, Any]) -> str:
    """The requests in flight of every app, oldest first."""
    requests = [(name, r) for name, app in doc["apps"].items() for r in app["in_flight"]]
    requests.sort(key=lambda item: -item[1]["age_seconds"])
    lines = [f"{_server(doc)}; {len(requests)} requests in flight"]
    if requests:
        rows = [["AGE", "APP", "PHASE", "WORKER", "REQUEST ID", "REQUEST"]]
        for name, r in requests:
            rows.append(
                [
                    _age(r["age_seconds"]),
                    name,
                    r["phase"],
                    _known(r["worker_pid"]),
                    r["request_id"] or "-",
                    f"{r['method']} {r['path']}",
                ]
            )
        lines += _table(rows)
    workers = [w for app in doc["apps"].values() for w in app["workers"]]
    if workers and all(w["requests"] is None for w in workers):
        lines.append("(no report from the fronts yet: they send one about every second)")
    return "\n".join(lines) + "\n"


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
