"""The response cache in the front (--cache-size): hits without the app, what is never stored,
stampedes, stale entries, the access log and the metrics.

The app (tests/apps/cacheable.py) writes each call to a file, so a test counts the requests that
reached the app; the query says which caching headers it answers with.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cacheable import calls

import procs
from harness import APPS_DIR, Server, ServerFactory, run_cli, wait_until
from rawhttp import Response, fetch

CACHED = ("--cache-size", "1M", "--cache-status-header")
S_MAXAGE = "/page?cc=s-maxage%3D60"
# What the server logs when the app hangs past --timeout or its worker dies.
# A stale page's refresh takes SWR_REFRESH s in the app; a client served the stale page at once
# answers well within SWR_AT_ONCE even on a loaded machine, one that waited for it could not.
SWR_REFRESH = 6
SWR_AT_ONCE = 2.0
APP_FAILURES = (r"timed out", r"died handling GET", r"exited with status 1; restarting it")


def start(
    servers: ServerFactory, tmp_path: Path, *args: str, expect_errors: tuple[str, ...] = ()
) -> Server:
    return servers.start(
        "cacheable:application",
        "-w",
        "1",
        *CACHED,
        *args,
        env={"CACHE_APP_DIR": str(tmp_path)},
        expect_errors=expect_errors,
    )


def get(server: Server, path: str, *headers: tuple[str, str]) -> Response:
    response = fetch(server.port, "GET", path, list(headers))
    assert response.status in (200, 304), response
    return response


def test_a_cacheable_page_is_answered_by_the_front(servers: ServerFactory, tmp_path: Path) -> None:
    server = start(servers, tmp_path)
    first = get(server, S_MAXAGE, ("X-Request-ID", "first-one"))
    assert first.header("Cache-Status") == "maitred; fwd=miss; fwd-status=200; stored"
    second = get(server, S_MAXAGE, ("X-Request-ID", "second-one"))
    assert second.body == first.body
    assert second.header("Cache-Status").startswith("maitred; hit; ttl=")  # type: ignore[union-attr]
    assert second.header("Age") is not None
    # the request id is the request's own, never the stored one; one Date, one length
    assert second.header_values("X-Request-ID") == ["second-one"]
    assert len(second.header_values("Date")) == 1
    assert second.header_values("Content-Length") == [str(len(first.body))]
    assert calls(tmp_path) == ["/page?cc=s-maxage%3D60"]
    # HEAD is answered from the GET's entry
    head = fetch(server.port, "HEAD", S_MAXAGE)
    assert head.status == 200 and head.body == b"" and len(calls(tmp_path)) == 1


def age_of(response: Response) -> int:
    return int(response.header("Age") or "-1")


def test_hits_say_their_own_date_and_age_as_seconds_pass(
    servers: ServerFactory, tmp_path: Path
) -> None:
    """A hit's Date, Age and Cache-Status are made once a second per entry: the Date moves
    with the clock, Age grows, and an entry stored later has its own, smaller Age."""
    server = start(servers, tmp_path)
    older, newer = S_MAXAGE, S_MAXAGE + "&other=1"
    get(server, older)
    first = get(server, older)
    # Two seconds: a later entry's answer may have been slower to come (its initial Age).
    wait_until(lambda: age_of(get(server, older)) >= 2, what="an Age of 2")
    get(server, newer)
    new_hit = get(server, newer)
    old_hit = get(server, older)  # after new_hit: its Age is larger whatever the clock did
    assert old_hit.header("Date") != first.header("Date")
    assert 0 <= age_of(new_hit) < age_of(old_hit)
    ttl = int(old_hit.header("Cache-Status").rpartition("=")[2])  # type: ignore[union-attr]
    assert ttl == 60 - age_of(old_hit) - 1
    assert calls(tmp_path) == [older, newer]


def test_conditional_requests_are_answered_304_from_the_entry(
    servers: ServerFactory, tmp_path: Path
) -> None:
    server = start(servers, tmp_path)
    modified = "Thu, 01 Dec 1994 16:00:00 GMT"
    path = "/etag?cc=max-age%3D60&etag=%22v1%22&lm=" + modified.replace(" ", "%20")
    get(server, path)
    for asked in [("If-None-Match", '"v0", "v1"'), ("If-Modified-Since", modified)]:
        response = get(server, path, asked)
        assert response.status == 304 and response.body == b""
        assert response.header("ETag") == '"v1"'
        assert response.header("Content-Type") is None
    # no match: the whole page, from the entry
    assert get(server, path, ("If-None-Match", '"v0"')).status == 200
    assert len(calls(tmp_path)) == 1


MODIFIED = "Thu, 01 Dec 1994 16:00:00 GMT"


def conditions(directory: Path) -> list[str]:
    path = directory / "conditions"
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.parametrize(
    ("cc", "validator", "sent"),
    [
        ("no-cache", "etag=%22v1%22", '"v1"|'),
        ("max-age%3D0", "lm=" + MODIFIED.replace(" ", "%20"), f"|{MODIFIED}"),
        ("no-cache", "etag=%22v1%22&lm=" + MODIFIED.replace(" ", "%20"), f'"v1"|{MODIFIED}'),
    ],
)
def test_a_page_to_revalidate_is_kept_and_asked_for_conditionally(
    servers: ServerFactory, tmp_path: Path, cc: str, validator: str, sent: str
) -> None:
    server = start(servers, tmp_path)
    path = f"/reval?cc={cc}&{validator}"
    first = get(server, path)
    assert first.header("Cache-Status") == "maitred; fwd=miss; fwd-status=200; stored"
    # each use asks the app, with the stored validators; its 304 means the stored page
    for n in range(2, 4):
        again = get(server, path)
        assert again.status == 200 and again.body == first.body
        assert again.header("Content-Length") == str(len(first.body))
        assert again.header("Cache-Status").startswith("maitred; fwd=stale; fwd-status=304")  # type: ignore[union-attr]
        assert len(calls(tmp_path)) == n
        assert conditions(tmp_path) == [sent] * (n - 1)
    # a client's own conditions go to the app as they are: its 304 is the client's
    if "etag" in validator:
        mine = fetch(server.port, "GET", path, [("If-None-Match", '"v1"')])
        assert mine.status == 304 and mine.body == b""
        assert conditions(tmp_path)[-1] == '"v1"|'
    # a changed page replaces the stored one
    (tmp_path / "changed").touch()
    changed = get(server, path)
    assert changed.body != first.body
    assert changed.header("Cache-Status") == "maitred; fwd=stale; fwd-status=200; stored"


def test_a_stale_must_revalidate_page_is_revalidated(
    servers: ServerFactory, tmp_path: Path
) -> None:
    server = start(servers, tmp_path)
    path = "/mr?cc=max-age%3D1%2C%20must-revalidate&etag=%22v7%22"
    first = get(server, path)
    assert get(server, path).header("Cache-Status").startswith("maitred; hit")  # type: ignore[union-attr]
    wait_until(
        lambda: "fwd-status=304" in (get(server, path).header("Cache-Status") or ""),
        what="a revalidation once stale",
    )
    # revalidated, it is fresh again for its max-age: a hit, or one more 304
    assert get(server, path).body == first.body
    assert len(calls(tmp_path)) == 1 + len(conditions(tmp_path))
    assert set(conditions(tmp_path)) == {'"v7"|'}


def test_what_is_never_stored(servers: ServerFactory, tmp_path: Path) -> None:
    server = start(servers, tmp_path, "--cache-bypass-cookie", "sessionid")
    never = [
        "/cookie?cc=s-maxage%3D60&cookie=a%3Db",  # sets a cookie
        "/private?cc=private%2C%20max-age%3D60",
        "/nostore?cc=no-store",
        "/plain",  # says nothing: no rule, no lifetime
        "/star?cc=max-age%3D60&vary=%2A",
    ]
    for path in never:
        for _ in range(2):
            response = get(server, path)
            assert "stored" not in (response.header("Cache-Status") or ""), path
    assert len(calls(tmp_path)) == 2 * len(never)
    # a bypass cookie always goes to the app, and never sees the anonymous page
    get(server, S_MAXAGE)
    logged_in = get(server, S_MAXAGE, ("Cookie", "theme=dark; sessionid=abc"))
    assert b"sessionid=abc" in logged_in.body
    assert logged_in.header("Cache-Status") == "maitred; fwd=bypass; fwd-status=200"
    # Authorization: only a response that allows a shared cache
    auth = ("Authorization", "Bearer secret")
    get(server, "/auth?cc=max-age%3D60", auth)
    assert get(server, "/auth?cc=max-age%3D60").header("Cache-Status").startswith("maitred; fwd")  # type: ignore[union-attr]
    before = len(calls(tmp_path))
    get(server, "/shared?cc=s-maxage%3D60", auth)
    assert (
        get(server, "/shared?cc=s-maxage%3D60", auth)
        .header("Cache-Status")
        .startswith(  # type: ignore[union-attr]
            "maitred; hit"
        )
    )
    assert len(calls(tmp_path)) == before + 1


def test_keys_hold_host_and_vary(servers: ServerFactory, tmp_path: Path) -> None:
    server = start(servers, tmp_path)
    get(server, S_MAXAGE, ("Host", "a.example"))
    assert (
        get(server, S_MAXAGE, ("Host", "A.EXAMPLE"))
        .header("Cache-Status")
        .startswith(  # type: ignore[union-attr]
            "maitred; hit"
        )
    )
    assert "fwd=miss" in (get(server, S_MAXAGE, ("Host", "b.example")).header("Cache-Status") or "")
    varying = "/vary?cc=max-age%3D60&vary=Accept-Language"
    fr = get(server, varying, ("Accept-Language", "fr"))
    de = get(server, varying, ("Accept-Language", "de"))
    assert fr.body != de.body
    assert get(server, varying, ("Accept-Language", "fr")).body == fr.body
    assert len(calls(tmp_path)) == 4


def test_a_rule_for_an_app_that_sends_no_headers(servers: ServerFactory, tmp_path: Path) -> None:
    server = start(servers, tmp_path, "--cache-rule", "/news=60")
    get(server, "/news/today")
    assert get(server, "/news/today").header("Cache-Status").startswith("maitred; hit")  # type: ignore[union-attr]
    get(server, "/other")
    get(server, "/other")
    # still never a page that sets a cookie
    get(server, "/news/x?cookie=a%3Db")
    get(server, "/news/x?cookie=a%3Db")
    assert len(calls(tmp_path)) == 5


def test_a_stampede_of_misses_makes_one_app_call(servers: ServerFactory, tmp_path: Path) -> None:
    server = start(servers, tmp_path, "--threads", "8", "--cache-lock-timeout", "60")
    path = "/cold?cc=s-maxage%3D60&sleep=1"
    with ThreadPoolExecutor(200) as pool:
        answers = list(pool.map(lambda _: fetch(server.port, "GET", path, timeout=60), range(200)))
    assert {a.status for a in answers} == {200}
    assert {a.body for a in answers} == {answers[0].body}
    assert calls(tmp_path) == ["/cold?cc=s-maxage%3D60&sleep=1"]


def test_stale_while_revalidate_answers_at_once(servers: ServerFactory, tmp_path: Path) -> None:
    server = start(servers, tmp_path, "--threads", "4")
    path = f"/swr?cc=max-age%3D1%2C%20stale-while-revalidate%3D600&sleep={SWR_REFRESH}"
    first = get(server, path)
    # the first stale answer starts the refresh (it takes SWR_REFRESH s in the app)
    wait_until(lambda: "ttl=-" in (get(server, path).header("Cache-Status") or ""), what="stale")
    # meanwhile every client gets the stale page at once, and no second refresh starts
    for _ in range(10):
        started = time.monotonic()
        response = get(server, path)
        assert time.monotonic() - started < SWR_AT_ONCE
        assert response.body == first.body
        assert "stale-while-revalidate" in (response.header("Cache-Status") or "")
    assert len(calls(tmp_path)) == 2
    wait_until(
        lambda: get(server, path).body != first.body,
        timeout=SWR_REFRESH * 4,
        what="the refreshed page",
    )


@pytest.mark.parametrize("how", ["response", "setting", "streamed", "timeout", "killed"])
def test_stale_if_error_stands_in_for_a_failing_app(
    servers: ServerFactory, tmp_path: Path, how: str
) -> None:
    failure = {"timeout": "hang", "killed": "die"}.get(how, "fail")
    if how in ("timeout", "killed"):  # the front's own 504, or 502 for a dead worker
        server = start(servers, tmp_path, "--timeout", "1", expect_errors=APP_FAILURES)
        path = "/sie?cc=max-age%3D1%2C%20stale-if-error%3D600"
    elif how == "response":
        server = start(servers, tmp_path)
        path = "/sie?cc=max-age%3D1%2C%20stale-if-error%3D600"
    elif how == "streamed":  # the 500's head comes first, its body after
        server = start(servers, tmp_path)
        path = "/sie?cc=max-age%3D1%2C%20stale-if-error%3D600&stream=1"
    else:
        server = start(servers, tmp_path, "--cache-stale-if-error", "600")
        path = "/sie?cc=max-age%3D1"
    first = get(server, path)
    (tmp_path / failure).touch()
    wait_until(
        lambda: "stale-if-error" in (get(server, path).header("Cache-Status") or ""),
        what="the stale page in place of an error",
        timeout=60,
    )
    response = get(server, path)
    assert response.status == 200 and response.body == first.body
    # and a page without a stale entry gets the error
    expected = {"timeout": 504, "killed": 502}.get(how, 500)
    assert fetch(server.port, "GET", "/other?cc=max-age%3D1", timeout=30).status == expected


def test_access_log_and_metrics_say_what_the_cache_did(
    servers: ServerFactory, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    args = ("--access-logfile", str(log), "--access-log-format", "json")
    server = start(servers, tmp_path, *args, "--stats-bind", "127.0.0.1:0")
    get(server, S_MAXAGE)
    get(server, S_MAXAGE)
    fetch(server.port, "POST", "/form")
    wait_until(lambda: log.exists() and len(log.read_text().splitlines()) == 3, what="3 lines")
    outcomes = [json.loads(line)["cache_status"] for line in log.read_text().splitlines()]
    assert outcomes == ["miss", "hit", "bypass"]
    match = server.wait_for_log(r"Stats at: http://127\.0\.0\.1:(\d+)")
    assert match is not None
    port = int(match.group(1))

    def figures() -> str:
        return fetch(port, "GET", "/metrics").body.decode()

    wait_until(lambda: 'maitred_cache_hits_total{app="main"} 1.0' in figures(), what="a hit")
    text = figures()
    assert 'maitred_cache_misses_total{app="main"} 1.0' in text
    assert 'maitred_cache_bypass_total{app="main"} 1.0' in text
    stored = re.search(r'maitred_cache_stored_bytes\{app="main"\} (\d+)', text)
    assert stored is not None and int(stored.group(1)) > 0


def test_an_unsafe_method_drops_the_stored_page(servers: ServerFactory, tmp_path: Path) -> None:
    server = start(servers, tmp_path)
    get(server, S_MAXAGE)
    get(server, S_MAXAGE)
    assert fetch(server.port, "POST", S_MAXAGE).status == 200
    assert "fwd=miss" in (get(server, S_MAXAGE).header("Cache-Status") or "")
    assert len(calls(tmp_path)) == 3


def calls_of(data_dir: Path, view: str) -> int:
    path = data_dir / f"{view}-calls"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_django_pages_and_sessions(servers: ServerFactory, tmp_path: Path) -> None:
    server = servers.start(
        "mysite.wsgi:application",
        "-w",
        "1",
        *CACHED,
        "--cache-bypass-cookie",
        "sessionid",
        env={"MYSITE_DATA_DIR": str(tmp_path)},
    )
    # cache_control(s_maxage=60): the second request is answered by the front
    first = get(server, "/shared/")
    assert first.body == b"page for anonymous, call 1"
    assert first.header("Vary") == "Cookie"
    second = get(server, "/shared/")
    assert second.body == first.body
    assert second.header("Cache-Status").startswith("maitred; hit")  # type: ignore[union-attr]
    assert calls_of(tmp_path, "shared") == 1
    # a page that uses the session and says nothing of caching: never a hit
    for _ in range(3):
        assert get(server, "/account/").body.startswith(b"account of anonymous, visit 1")
    assert calls_of(tmp_path, "account") == 3
    # a logged-in user never gets the anonymous page, nor the anonymous user theirs
    login = get(server, "/login/?name=alice")
    cookie = login.header("Set-Cookie")
    assert cookie is not None and cookie.startswith("sessionid=")
    session = ("Cookie", cookie.split(";")[0])
    for _ in range(2):
        assert get(server, "/shared/", session).body.startswith(b"page for alice")
        assert get(server, "/shared/").body == first.body
        assert b"alice, visit" in get(server, "/account/", session).body
    assert calls_of(tmp_path, "shared") == 3  # alice's two, the anonymous page's first


def test_a_page_asked_again_at_once_is_a_hit(servers: ServerFactory, tmp_path: Path) -> None:
    """Django answers in frames (head, body, END): the client has the whole page, closes and
    asks again before the front may have read the END; the page is stored by then."""
    server = servers.start(
        "mysite.wsgi:application", "-w", "1", *CACHED, env={"MYSITE_DATA_DIR": str(tmp_path)}
    )
    for n in range(30):
        path = f"/shared/?n={n}"
        first = get(server, path)
        second = get(server, path)
        assert second.body == first.body, n
        assert second.header("Cache-Status").startswith("maitred; hit"), n  # type: ignore[union-attr]
    assert calls_of(tmp_path, "shared") == 30


def calls_to(directory: Path, path: str) -> int:
    return calls(directory).count(path)


def fill_both_fronts(server: Server, tmp_path: Path, path: str) -> None:
    """Requests on new connections until each of the two fronts has stored `path` (each
    front's first is a miss), then as many more that are all hits."""
    wait_until(
        lambda: get(server, path) and calls_to(tmp_path, path) == 2, what=f"{path} in 2 fronts"
    )
    for _ in range(20):
        get(server, path)
    assert calls_to(tmp_path, path) == 2


@pytest.mark.parametrize(
    ("path", "purge"),
    [
        ("/news/today?cc=s-maxage%3D600", ("--url", "/news/today?cc=s-maxage%3D600")),
        ("/shop/item?cc=s-maxage%3D600", ("--prefix", "/shop/")),
        ("/item?cc=s-maxage%3D600&tag=product-7%20catalog", ("--tag", "product-7")),
    ],
)
def test_a_purge_reaches_every_front(
    servers: ServerFactory, tmp_path: Path, path: str, purge: tuple[str, str]
) -> None:
    sock = tmp_path / "control.sock"
    server = start(servers, tmp_path, "-w", "2", "--fronts", "2", "--control-socket", str(sock))
    other = "/other?cc=s-maxage%3D600"
    fill_both_fronts(server, tmp_path, path)
    fill_both_fronts(server, tmp_path, other)
    result = run_cli(["ctl", "--socket", str(sock), "--json", "cache", "purge", *purge])
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["fronts"] == 2
    # the next request is a miss on each front: the app sees the page twice more
    wait_until(
        lambda: get(server, path) and calls_to(tmp_path, path) == 4, what="a miss on each front"
    )
    for _ in range(10):
        get(server, path)
        get(server, other)
    assert calls_to(tmp_path, path) == 4
    assert calls_to(tmp_path, other) == 2  # the rest stayed


def test_a_purge_refuses_what_it_cannot_do(servers: ServerFactory, tmp_path: Path) -> None:
    sock = tmp_path / "control.sock"
    start(servers, tmp_path, "--control-socket", str(sock))
    for words in (
        ["purge"],
        ["purge", "--url", "/", "--tag", "x"],
        ["purge", "--url", "/", "--app", "nope"],
    ):
        result = run_cli(["ctl", "--socket", str(sock), "cache", *words])
        assert result.returncode != 0
        assert (
            "usage" in result.stderr or "exactly one" in result.stderr or "no app" in result.stderr
        )


def test_a_wait_for_a_slow_fetch_is_bounded(servers: ServerFactory, tmp_path: Path) -> None:
    server = start(servers, tmp_path, "--threads", "4", "--cache-lock-timeout", "0.2")
    path = "/slow?cc=s-maxage%3D60&sleep=3"
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda _: fetch(server.port, "GET", path, timeout=30), range(3)))
    assert [a.status for a in answers] == [200] * 3
    # the two that waited went to the app themselves once the lock timed out
    assert calls_to(tmp_path, path) == 3


def test_a_file_sent_by_sendfile_is_not_stored_without_its_body(
    servers: ServerFactory, tmp_path: Path
) -> None:
    # the front sends a large wsgi.file_wrapper file itself, so its bytes never pass the cache
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * 1024)
    server = servers.start("filewrapper:application", "-w", "1", *CACHED, "--cache-rule", "/=60")
    for _ in range(2):
        response = get(server, f"/?path={big}")
        assert response.body == big.read_bytes()


# --cache-dir: a body past --cache-max-object (1 MiB by default) is kept in a file.
BIG = 5 << 20
BIG_PAGE = f"/big?cc=s-maxage%3D600&pad={BIG}"


def body_files(cache_dir: Path) -> list[Path]:
    return [path for path in cache_dir.rglob("*") if path.is_file()]


def test_a_large_body_is_kept_in_a_file_and_sent_from_it(
    servers: ServerFactory, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "bodies"
    server = start(servers, tmp_path, "--cache-dir", str(cache_dir))
    first = get(server, BIG_PAGE)
    assert first.header("Cache-Status") == "maitred; fwd=miss; fwd-status=200; stored"
    second = get(server, BIG_PAGE)
    assert second.header("Cache-Status").startswith("maitred; hit; ttl=")  # type: ignore[union-attr]
    assert len(first.body) > BIG
    assert hashlib.sha256(second.body).digest() == hashlib.sha256(first.body).digest()
    assert calls(tmp_path) == [BIG_PAGE]
    # the body is in a file of the front's own directory, which app users cannot read
    (stored,) = body_files(cache_dir)
    assert stored.read_bytes() == first.body
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stat.S_IMODE(stored.parent.stat().st_mode) == 0o700
    head = fetch(server.port, "HEAD", BIG_PAGE)
    assert head.status == 200 and head.body == b""
    assert head.header("Content-Length") == str(len(first.body))
    # a small page still lives in memory
    get(server, S_MAXAGE)
    assert get(server, S_MAXAGE).header("Cache-Status").startswith("maitred; hit")  # type: ignore[union-attr]
    assert len(body_files(cache_dir)) == 1
    # no file outlives its front
    server.stop()
    assert list(cache_dir.iterdir()) == []


def test_files_are_evicted_past_their_bound_and_purged(
    servers: ServerFactory, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "bodies"
    sock = tmp_path / "control.sock"
    bound = 12 << 20  # two bodies of 5 MiB, not three
    server = start(
        servers,
        tmp_path,
        *("--cache-dir", str(cache_dir), "--cache-dir-size", str(bound)),
        *("--control-socket", str(sock)),
    )
    pages = [f"{BIG_PAGE}&n={n}" for n in range(3)]
    for page in pages:
        get(server, page)
    # the last page is stored (its first file evicted) once its response is over
    wait_until(lambda: len(body_files(cache_dir)) == 2, what="two files left")
    assert sum(path.stat().st_size for path in body_files(cache_dir)) <= bound
    # the least recently used went, the others are hits
    for page in pages[1:]:
        assert get(server, page).header("Cache-Status").startswith("maitred; hit")  # type: ignore[union-attr]
    assert calls_to(tmp_path, pages[0]) == 1
    result = run_cli(["ctl", "--socket", str(sock), "cache", "purge", "--url", pages[1]])
    assert result.returncode == 0, result.stderr
    wait_until(lambda: len(body_files(cache_dir)) == 1, what="the purged page's file removed")


def test_each_app_has_its_own_cache_or_none(servers: ServerFactory, tmp_path: Path) -> None:
    """--cache-size per app ([apps.NAME] tables): one app's pages are stored and answered by
    the front, the other's all go to their app (same path and query, another app)."""
    config = tmp_path / "maitred.toml"
    config.write_text(
        f"""
chdir = "{APPS_DIR}"
pythonpath = ["{APPS_DIR}"]
workers = 1
cache_status_header = true
[apps.cached]
app = "cacheable"
path = "/a"
cache_size = "1M"
env = {{CACHE_APP_DIR = "{tmp_path / "a"}"}}
[apps.plain]
app = "cacheable"
path = "/b"
env = {{CACHE_APP_DIR = "{tmp_path / "b"}"}}
"""
    )
    for name in "ab":
        (tmp_path / name).mkdir()
    server = servers.start(None, "-c", str(config))
    cached = [get(server, "/a" + S_MAXAGE) for _ in range(3)]
    plain = [get(server, "/b" + S_MAXAGE) for _ in range(3)]
    assert [r.header("Cache-Status") is not None for r in cached] == [True] * 3
    assert cached[2].header("Cache-Status").startswith("maitred; hit")  # type: ignore[union-attr]
    assert [r.header("Cache-Status") for r in plain] == [None] * 3
    assert len(calls(tmp_path / "a")) == 1 and len(calls(tmp_path / "b")) == 3
    assert len({r.body for r in cached}) == 1 and len({r.body for r in plain}) == 3


@pytest.mark.expect_errors(r"front \(pid \d+\) exited with signal 9; restarting it")
def test_a_killed_fronts_files_are_removed_by_the_next_front(
    servers: ServerFactory, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "bodies"
    server = start(servers, tmp_path, "--cache-dir", str(cache_dir))
    get(server, BIG_PAGE)
    (killed_dir,) = cache_dir.iterdir()
    (killed,) = procs.children_titled(server.pid, "maitred: front")
    os.kill(killed, signal.SIGKILL)
    wait_until(
        lambda: set(procs.children_titled(server.pid, "maitred: front")) - {killed},
        what="a new front",
    )
    # the new front's first body makes its directory, and removes the dead one's
    wait_until(lambda: get(server, f"{BIG_PAGE}&n=1").status == 200, what="an answer")
    wait_until(lambda: not killed_dir.exists(), what="the killed front's files removed")
    assert len(body_files(cache_dir)) == 1
