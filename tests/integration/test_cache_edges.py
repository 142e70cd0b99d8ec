"""The response cache at its edges: a queue that sheds, the scheme in the key, the counters
of /metrics, and a stale page served to many clients at once while one refresh runs.

The app (tests/apps/cacheable.py) records each call, so a test counts what reached it.
"""

from __future__ import annotations

import http.client
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cacheable import calls

from certs import TestCA
from harness import ServerFactory, wait_until
from integration.test_cache import S_MAXAGE, get, start
from integration.test_tls import tls_args, tls_port
from rawhttp import Response, fetch
from statsclient import STATS, scrape, stats_port, value

SWR = "/swr?cc=max-age%3D1%2C%20stale-while-revalidate%3D600&sleep={delay}"
SIE = "/sie?cc=max-age%3D1%2C%20stale-if-error%3D600"
# How long the app takes to refresh the stale page: far longer than any client may wait.
REFRESH_DELAY = 6
# Each concurrent client's answer comes well within this, far below REFRESH_DELAY (a loaded
# 2-core machine included): it is answered from the entry, not after the app.
PROMPT = 2.0
CLIENTS = 40
# One Host on both listeners (a client would name the port of each otherwise).
HOST = ("Host", "www.example.test")


def cache_status(response: Response) -> str:
    return response.header("Cache-Status") or ""


def test_a_stale_page_stands_in_when_the_queue_sheds(
    servers: ServerFactory, tmp_path: Path
) -> None:
    # One thread; a request that waits for it past --queue-timeout is shed with a 503.
    server = start(servers, tmp_path, "--threads", "1", "--queue-timeout", "0.5")
    first = get(server, SIE)
    wait_until(
        lambda: "fwd=stale" in cache_status(fetch(server.port, "HEAD", SIE)), what="stale entry"
    )
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(fetch, server.port, "GET", "/busy?sleep=5", None, b"", "HTTP/1.1", 30)
        wait_until(lambda: "/busy?sleep=5" in calls(tmp_path), what="the thread taken")
        stale = fetch(server.port, "GET", SIE, timeout=30)
        shed = fetch(server.port, "GET", "/other?cc=max-age%3D60", timeout=30)
        assert busy.result().status == 200
    assert stale.status == 200 and stale.body == first.body
    assert "stale-if-error" in cache_status(stale)
    assert shed.status == 503  # no stale entry: the queue's own answer


def test_the_scheme_is_part_of_the_key(servers: ServerFactory, tmp_path: Path) -> None:
    """A page stored for http is never a hit for https, as a trusted proxy says it (the
    default trusts 127.0.0.1) or as the listener is."""
    server = start(servers, tmp_path)
    get(server, S_MAXAGE)
    assert cache_status(get(server, S_MAXAGE)).startswith("maitred; hit")
    proxied = ("X-Forwarded-Proto", "https")
    assert "fwd=miss" in cache_status(get(server, S_MAXAGE, proxied))
    assert cache_status(get(server, S_MAXAGE, proxied)).startswith("maitred; hit")
    assert len(calls(tmp_path)) == 2


def test_an_https_listener_has_its_own_entries(servers: ServerFactory, tmp_path: Path) -> None:
    ca = TestCA(tmp_path)
    cert = ca.issue("server", "127.0.0.1")
    server = start(servers, tmp_path, *tls_args(cert))
    get(server, S_MAXAGE, HOST)
    secure = http.client.HTTPSConnection(
        "127.0.0.1", tls_port(server), context=ca.client_context(), timeout=10
    )
    try:
        said = []
        for _ in range(2):
            secure.request("GET", S_MAXAGE, headers=dict([HOST]))
            response = secure.getresponse()
            response.read()
            said.append(response.getheader("Cache-Status") or "")
    finally:
        secure.close()
    assert "fwd=miss" in said[0] and said[1].startswith("maitred; hit")
    assert len(calls(tmp_path)) == 2


def test_metrics_count_stale_revalidated_and_evicted(
    servers: ServerFactory, tmp_path: Path
) -> None:
    # Room for one padded page, not two: the second evicts the first.
    server = start(servers, tmp_path, "--cache-size", "6K", *STATS)
    port = stats_port(server)
    swr = SWR.format(delay=0)
    get(server, swr)
    wait_until(lambda: "stale" in cache_status(get(server, swr)), what="a stale answer")
    reval = "/reval?cc=no-cache&etag=%22v1%22"
    get(server, reval)
    assert "fwd-status=304" in cache_status(get(server, reval))
    for n in range(2):
        get(server, f"/big?cc=s-maxage%3D60&pad=4000&n={n}")

    def counted(name: str) -> float:
        return value(scrape(port), f"maitred_cache_{name}_total", app="main")

    wait_until(lambda: counted("revalidated") == 1, what="one revalidation counted")
    wait_until(lambda: counted("evictions") >= 1, what="an eviction counted")
    assert counted("stale") >= 1


def test_stale_while_revalidate_answers_concurrent_clients_at_once(
    servers: ServerFactory, tmp_path: Path
) -> None:
    """While the one refresh runs in the app, every client, all at once, gets the stale page
    from the front: none waits for the app, and the app is asked once."""
    server = start(servers, tmp_path, "--threads", "4")
    path = SWR.format(delay=REFRESH_DELAY)
    first = get(server, path)  # takes REFRESH_DELAY in the app too
    # the first stale answer starts the refresh
    wait_until(lambda: "ttl=-" in cache_status(get(server, path)), what="stale")
    start_line = threading.Barrier(CLIENTS)

    def client(_: int) -> tuple[float, Response]:
        start_line.wait()
        started = time.monotonic()
        response = fetch(server.port, "GET", path, timeout=30)
        return time.monotonic() - started, response

    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = list(pool.map(client, range(CLIENTS)))
    assert len(calls(tmp_path)) == 2  # the first miss and the one refresh
    for took, response in answers:
        assert response.body == first.body
        assert "stale-while-revalidate" in cache_status(response)
        assert took < PROMPT, took
