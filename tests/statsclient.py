"""A client of --stats-bind for tests: its port, /metrics parsed by prometheus_client, and
/status.json."""

from __future__ import annotations

import json
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from harness import Server, wait_until
from rawhttp import fetch

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
STATS = ("--stats-bind", "127.0.0.1:0")
REQUESTS = "maitred_requests_total"


def stats_port(server: Server) -> int:
    match = server.wait_for_log(r"Stats at: http://127\.0\.0\.1:(\d+)")
    assert match is not None, server.stderr
    return int(match.group(1))


def scrape(port: int) -> Samples:
    """Every sample of /metrics, parsed by prometheus_client."""
    response = fetch(port, "GET", "/metrics")
    assert response.status == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(response.body.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples named `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def wait_count(port: int, count: float, name: str = REQUESTS, **labels: str) -> Samples:
    """The samples once `name` (with `labels`) reached `count`; fails if it goes past."""
    wait_until(lambda: value(scrape(port), name, **labels) >= count, what=f"{name} = {count}")
    samples = scrape(port)
    assert value(samples, name, **labels) == count
    return samples


def status(port: int) -> dict[str, Any]:
    """The status document (maitred.statusdoc)."""
    response = fetch(port, "GET", "/status.json")
    assert response.status == 200, response.status
    assert response.header("content-type") == "application/json"
    document: dict[str, Any] = json.loads(response.body)
    return document
