"""--stats-bind's pure parts: the METRICS message, the master's book, buckets, HTTP answers."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from maitred import status
from maitred.config import ConfigError, load
from maitred.front.metrics import AppCounters
from maitred.metrics import Collector, MetricsBook
from maitred.statsserver import Answers, respond
from maitred.status import BUCKETS, DURATIONS


def front_counts(app: str, gets: int, slow: int = 0) -> dict[str, object]:
    """What a front would send after `gets` GETs answered 200, `slow` of them in 2 s."""
    counts = [0] * (len(BUCKETS) + 1)
    counts[0] = gets - slow
    counts[BUCKETS.index(2.5)] = slow
    histograms = {name: [counts, 2.0 * slow] for name in ("queue", "app", "send", "total")}
    requests = [["2xx", "GET", gets]]
    return {"app": app, "requests": requests, "histograms": histograms, "shed": 0, "timed_out": 0}


def test_a_metrics_message_reads_back_whole_in_any_chunking() -> None:
    figures = front_counts("main", 7)
    message = status.encode_metrics(figures)
    assert message is not None
    data = message + status.encode(status.HEARTBEAT)
    reader = status.StatusReader()
    said = [m for i in range(len(data)) for m in reader.feed(data[i : i + 1])]
    assert said == [status.MetricsReport(figures), (status.HEARTBEAT, 0.0)]


def test_figures_past_one_atomic_write_are_not_encoded() -> None:
    assert status.encode_metrics({"app": "x" * status.PIPE_BUF}) is None


def test_a_malformed_metrics_payload_is_dropped_and_the_next_message_reads() -> None:
    bad = status.LOAD_HEAD.pack(status.METRICS, 3) + b"[1]"
    said = status.StatusReader().feed(bad + status.encode(status.READY))
    assert said == [(status.READY, 0.0)]


def test_a_value_on_a_bound_falls_in_that_bucket_and_labels_stay_few() -> None:
    counters = AppCounters()
    for took in (0.001, 0.0011, 30.0, 31.0):
        head = SimpleNamespace(method=b"BREW")
        exchange = SimpleNamespace(
            status=200,
            head=head,
            source="app",
            started=0.0,
            dispatched=0,
            app_done=0,
            cache="",
        )
        counters.count(exchange, took)  # type: ignore[arg-type]
    total = counters.buckets[DURATIONS.index("total")]
    assert (total[0], total[1], total[len(BUCKETS) - 1], total[-1]) == (1, 1, 1, 1)
    assert sum(counters.buckets[DURATIONS.index("queue")]) == 0  # it never reached a thread
    assert counters.requests == {("2xx", "OTHER"): 4}


def test_the_book_sums_fronts_and_keeps_those_that_exited() -> None:
    book = MetricsBook()
    book.front_said(10, front_counts("main", 5, slow=1))
    book.front_said(11, front_counts("main", 3))
    assert book.totals("main")["requests"] == {("2xx", "GET"): 8}
    book.front_exited(10)
    book.front_said(12, front_counts("main", 2))  # its replacement starts from zero
    total = book.totals("main")
    assert total["requests"] == {("2xx", "GET"): 10}
    assert sum(total["histograms"]["total"][0]) == 10
    assert total["histograms"]["total"][1] == 2.0


def test_a_scrape_writes_cumulative_buckets() -> None:
    book = MetricsBook()
    book.front_said(10, front_counts("main", 4, slow=1))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector(book, lambda: {}))
    assert b"maitred_connections" in generate_latest(registry)
    collector = Collector(book, dict)
    families = {f.name: f for f in collector._requests(["main"])}
    buckets = {
        s.labels["le"]: s.value
        for s in families["maitred_request_total_seconds"].samples
        if "le" in s.labels
    }
    assert buckets["0.001"] == 3
    assert buckets["2.5"] == 4
    assert buckets["+Inf"] == 4
    text = generate_latest(registry).decode()
    assert list(text_string_to_metric_families(text))


ANSWERS = Answers(
    metrics=lambda accept: ("text/plain", f"accept={accept}".encode()),
    alive=lambda: False,
    readiness=lambda: (503, b"starting\n"),
)


def test_routes_methods_and_bad_heads() -> None:
    def status_of(head: bytes) -> bytes:
        return respond(head, ANSWERS).split(b"\r\n", 1)[0]

    assert status_of(b"GET /livez HTTP/1.0\r\n\r\n") == b"HTTP/1.0 503 Service Unavailable"
    assert status_of(b"GET /readyz?x=1 HTTP/1.1\r\n\r\n") == b"HTTP/1.0 503 Service Unavailable"
    assert status_of(b"POST /metrics HTTP/1.1\r\n\r\n") == b"HTTP/1.0 405 Method Not Allowed"
    assert status_of(b"GET /stats HTTP/1.1\r\n\r\n") == b"HTTP/1.0 404 Not Found"
    assert status_of(b"garbage\r\n\r\n") == b"HTTP/1.0 400 Bad Request"
    answer = respond(
        b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text\r\n\r\n", ANSWERS
    )
    assert answer.endswith(b"accept=application/openmetrics-text")
    assert respond(b"HEAD /metrics HTTP/1.1\r\n\r\n", ANSWERS).endswith(b"\r\n\r\n")


@pytest.mark.parametrize("address", ["nope:port", "unix:", "1.2.3.4:99999"])
def test_a_bad_stats_address_is_refused_at_start(address: str) -> None:
    with pytest.raises(ConfigError, match=r"stats.bind"):
        load({"stats_bind": address}, {})


def test_stats_are_off_unless_asked() -> None:
    assert load({}, {}).stats_bind == ""
    assert load({"stats_bind": "unix:/tmp/s.sock"}, {}).stats_bind == "unix:/tmp/s.sock"
