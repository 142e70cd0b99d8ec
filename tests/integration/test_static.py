"""Static files served by the front: headers, conditionals, ranges, encodings, and safety.

Every request goes over a real socket to a real server (`--static /static=ROOT`), with the raw
client, so the target reaches the server exactly as written: `..` and percent-encodings are not
normalised away by a client library first. The app behind the server is the gated streaming
app with one thread, which answers anything it gets with 200: a static answer (404 included) is
therefore the front's own.
"""

from __future__ import annotations

import email.utils
import gzip
import os
import socket
import threading
import time
from pathlib import Path

import pytest
import streaming

from harness import SRC_DIR, TESTS_DIR, Server, ServerFactory
from rawhttp import RawConnection, Response, fetch, request_bytes

TEXT = b"hello static\n"
BIG_SIZE = 3 * 1024 * 1024 + 17  # past the in-memory limit: sendfile
# More than the socket buffers between the front and a client that does not read (a few MiB on
# loopback), so sendfile meets a full socket and must wait for it to drain.
HUGE_SIZE = 16 * 1024 * 1024
CSS = b"body { color: #333; }\n" * 50
BR_BYTES = b"not really brotli, but only the server's choice is tested\n"
SECRET = b"outside the static root\n"
INDEX = b"<h1>index</h1>\n"
# tests/shadow hides uvloop from the server, which then runs the standard asyncio loop.
LOOPS = {"uvloop": None, "asyncio": {"PYTHONPATH": f"{SRC_DIR}:{TESTS_DIR / 'shadow'}"}}
HASHED = "app.0123456789ab.css"  # as Django's ManifestStaticFilesStorage names files


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("static")
    root = base / "root"
    outside = base / "outside"
    (root / "sub").mkdir(parents=True)
    (root / ".git").mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    (root / "hello.txt").write_bytes(TEXT)
    (root / "big.bin").write_bytes(os.urandom(BIG_SIZE))
    (root / "huge.bin").write_bytes(os.urandom(HUGE_SIZE))
    (root / "app.css").write_bytes(CSS)
    (root / "app.css.gz").write_bytes(gzip.compress(CSS))
    (root / "app.css.br").write_bytes(BR_BYTES)
    (root / "only.js").write_bytes(b"let x = 1;\n")
    (root / "only.js.gz").write_bytes(gzip.compress(b"let x = 1;\n"))
    (root / HASHED).write_bytes(CSS)
    (root / "empty.txt").write_bytes(b"")
    (root / ".env").write_bytes(b"SECRET=1\n")
    (root / ".git" / "config").write_bytes(b"[core]\n")
    (root / "sub" / "inner.txt").write_bytes(TEXT)
    (root / "sub" / ".hidden").write_bytes(b"hidden\n")
    (root / "sub" / "index.html").write_bytes(INDEX)
    (root / "link_in.txt").symlink_to(root / "hello.txt")
    (root / "link_out.txt").symlink_to(outside / "secret.txt")
    (root / "dir_out").symlink_to(outside)
    os.mkfifo(root / "fifo")
    return root


@pytest.fixture(scope="module", params=sorted(LOOPS))
def server(module_servers: ServerFactory, tree: Path, request: pytest.FixtureRequest) -> Server:
    """On uvloop and on the asyncio fallback: sendfile and its waits differ between them."""
    return module_servers.start(
        "streaming:application",
        "-w",
        "1",
        "--threads",
        "1",
        "--static",
        f"/static={tree}",
        env=LOOPS[request.param],
    )


@pytest.fixture(scope="module")
def lenient(module_servers: ServerFactory, tree: Path) -> Server:
    """Symlinks followed, index files on, a longer max-age."""
    return module_servers.start(
        "hello:application",
        "-w",
        "1",
        "--static",
        f"/assets={tree}",
        "--static-follow-symlinks",
        "--static-index",
        "index.html",
        "--static-max-age",
        "120",
    )


def get(server: Server, path: str, *headers: tuple[str, str], method: str = "GET") -> Response:
    return fetch(server.port, method, path, list(headers))


# --- the file and its headers ---


def test_file_with_its_headers(server: Server, tree: Path) -> None:
    response = get(server, "/static/hello.txt")
    assert (response.status, response.body) == (200, TEXT)
    mtime = (tree / "hello.txt").stat().st_mtime
    assert response.header("Content-Type") == "text/plain; charset=utf-8"
    assert response.header("Content-Length") == str(len(TEXT))
    assert response.header("Last-Modified") == email.utils.formatdate(int(mtime), usegmt=True)
    assert (response.header("ETag") or "").startswith('"')
    assert response.header("Cache-Control") == "public, max-age=60"
    assert response.header("Accept-Ranges") == "bytes"


def test_content_types(server: Server) -> None:
    assert get(server, "/static/app.css").header("Content-Type") == "text/css; charset=utf-8"
    assert get(server, "/static/big.bin").header("Content-Type") == "application/octet-stream"


def test_query_string_is_ignored(server: Server) -> None:
    assert get(server, "/static/hello.txt?v=3").body == TEXT


def test_empty_file(server: Server) -> None:
    response = get(server, "/static/empty.txt")
    assert (response.status, response.header("Content-Length"), response.body) == (200, "0", b"")


def test_large_file_then_keep_alive(server: Server, tree: Path) -> None:
    with RawConnection(server.port) as conn:
        big = conn.request("GET", "/static/big.bin")
        after = conn.request("GET", "/static/hello.txt")
    assert big.status == 200 and big.complete
    assert big.body == (tree / "big.bin").read_bytes()
    assert after.body == TEXT


def test_large_file_to_a_client_that_reads_late(server: Server, tree: Path) -> None:
    """The socket fills before the client reads: sendfile meets EAGAIN and must resume."""
    with RawConnection(server.port) as conn:
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        conn.send(
            request_bytes("GET", "/static/huge.bin") + request_bytes("GET", "/static/hello.txt")
        )
        time.sleep(0.3)  # the stimulus: a client that reads late, once every buffer is full
        huge = conn.read_response()
        after = conn.read_response()
    assert huge.body == (tree / "huge.bin").read_bytes()
    assert after.body == TEXT


def test_head_has_the_get_headers_and_no_body(server: Server) -> None:
    with RawConnection(server.port) as conn:
        got = conn.request("GET", "/static/big.bin")
        head = conn.request("HEAD", "/static/big.bin")
        after = conn.request("GET", "/static/hello.txt")  # any stray body would land here

    def stable(response: Response) -> list[tuple[str, str]]:
        return sorted((k.lower(), v) for k, v in response.headers if k.lower() != "date")

    def without_id(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return [(k, v) for k, v in headers if k != "x-request-id"]

    assert head.status == 200 and head.body == b""
    assert without_id(stable(head)) == without_id(stable(got))
    assert after.body == TEXT


def test_static_needs_no_app_thread(server: Server, tmp_path: Path) -> None:
    """The only app thread is held by a gated request; static files are still served."""
    gate = tmp_path / "gate"
    with RawConnection(server.port) as busy:
        busy.send(request_bytes("GET", f"/?gate={gate}"))
        head = busy.read_head()
        assert busy.read_chunk() == streaming.FIRST  # the thread is now waiting on the gate
        started = time.monotonic()
        response = fetch(server.port, "GET", "/static/hello.txt", timeout=5.0)
        assert response.body == TEXT
        assert time.monotonic() - started < 5.0
        gate.touch()
        busy.read_body(head)
    assert head.status == 200


def test_responses_stay_in_request_order(server: Server) -> None:
    """A pipelined static request behind an app request waits for it, then goes out."""
    with RawConnection(server.port) as conn:
        conn.send(
            request_bytes("GET", "/?n=3&delay=0.05")
            + request_bytes("GET", "/static/hello.txt")
            + request_bytes("GET", "/?n=1")
        )
        first, second, third = (conn.read_response() for _ in range(3))
    assert first.body == b"chunk 0\nchunk 1\nchunk 2\n"
    assert second.body == TEXT
    assert third.body == b"chunk 0\n"


# --- conditional requests ---


def test_if_none_match(server: Server) -> None:
    etag = get(server, "/static/hello.txt").header("ETag") or ""
    not_modified = get(server, "/static/hello.txt", ("If-None-Match", etag))
    assert (not_modified.status, not_modified.body) == (304, b"")
    assert not_modified.header("ETag") == etag
    assert get(server, "/static/hello.txt", ("If-None-Match", f"W/{etag}")).status == 304
    assert get(server, "/static/hello.txt", ("If-None-Match", f'"x", {etag}')).status == 304
    assert get(server, "/static/hello.txt", ("If-None-Match", "*")).status == 304
    assert get(server, "/static/hello.txt", ("If-None-Match", '"other"')).status == 200


def test_if_modified_since(server: Server) -> None:
    last_modified = get(server, "/static/hello.txt").header("Last-Modified") or ""
    assert get(server, "/static/hello.txt", ("If-Modified-Since", last_modified)).status == 304
    later = email.utils.formatdate(time.time() + 3600, usegmt=True)
    assert get(server, "/static/hello.txt", ("If-Modified-Since", later)).status == 304
    assert (
        get(
            server, "/static/hello.txt", ("If-Modified-Since", "Thu, 01 Jan 1998 00:00:00 GMT")
        ).status
        == 200
    )
    # If-None-Match wins over If-Modified-Since (RFC 9110 section 13.2.2).
    both = get(
        server,
        "/static/hello.txt",
        ("If-None-Match", '"other"'),
        ("If-Modified-Since", last_modified),
    )
    assert both.status == 200


def test_if_match_and_if_unmodified_since(server: Server) -> None:
    etag = get(server, "/static/hello.txt").header("ETag") or ""
    assert get(server, "/static/hello.txt", ("If-Match", etag)).status == 200
    assert get(server, "/static/hello.txt", ("If-Match", '"other"')).status == 412
    old = "Thu, 01 Jan 1998 00:00:00 GMT"
    assert get(server, "/static/hello.txt", ("If-Unmodified-Since", old)).status == 412


# --- ranges ---


@pytest.mark.parametrize(
    ("spec", "first", "last"),
    [
        ("bytes=0-4", 0, 4),
        ("bytes=6-", 6, len(TEXT) - 1),
        ("bytes=-3", len(TEXT) - 3, len(TEXT) - 1),
        ("bytes=2-999", 2, len(TEXT) - 1),
    ],
)
def test_range(server: Server, spec: str, first: int, last: int) -> None:
    response = get(server, "/static/hello.txt", ("Range", spec))
    assert response.status == 206
    assert response.body == TEXT[first : last + 1]
    assert response.header("Content-Range") == f"bytes {first}-{last}/{len(TEXT)}"
    assert response.header("Content-Length") == str(last - first + 1)


def test_range_of_a_large_file_through_sendfile(server: Server, tree: Path) -> None:
    response = get(server, "/static/big.bin", ("Range", "bytes=1000000-2999999"))
    assert response.status == 206
    assert response.body == (tree / "big.bin").read_bytes()[1000000:3000000]


@pytest.mark.parametrize("spec", ["bytes=9999-", "bytes=13-20", "bytes=-0"])
def test_unsatisfiable_range(server: Server, spec: str) -> None:
    response = get(server, "/static/hello.txt", ("Range", spec))
    assert response.status == 416
    assert response.header("Content-Range") == f"bytes */{len(TEXT)}"


@pytest.mark.parametrize("spec", ["bytes=0-1,4-5", "bytes=5-2", "lines=1-2", "bytes=x-y"])
def test_multiple_or_invalid_ranges_get_the_whole_file(server: Server, spec: str) -> None:
    response = get(server, "/static/hello.txt", ("Range", spec))
    assert (response.status, response.body) == (200, TEXT)


def test_if_range(server: Server) -> None:
    full = get(server, "/static/hello.txt")
    etag, last_modified = full.header("ETag") or "", full.header("Last-Modified") or ""
    assert (
        get(server, "/static/hello.txt", ("Range", "bytes=0-1"), ("If-Range", etag)).status == 206
    )
    same_date = get(
        server, "/static/hello.txt", ("Range", "bytes=0-1"), ("If-Range", last_modified)
    )
    assert same_date.status == 206
    stale = get(server, "/static/hello.txt", ("Range", "bytes=0-1"), ("If-Range", '"old"'))
    assert (stale.status, stale.body) == (200, TEXT)


# --- precompressed siblings ---


def test_gzip_sibling(server: Server, tree: Path) -> None:
    response = get(server, "/static/app.css", ("Accept-Encoding", "gzip"))
    assert response.status == 200
    assert response.header("Content-Encoding") == "gzip"
    assert response.header("Vary") == "Accept-Encoding"
    assert response.body == (tree / "app.css.gz").read_bytes()
    assert gzip.decompress(response.body) == CSS
    assert response.header("Content-Type") == "text/css; charset=utf-8"
    plain = get(server, "/static/app.css")
    assert plain.header("ETag") != response.header("ETag")


def test_brotli_preferred_and_q_values_honoured(server: Server, tree: Path) -> None:
    both = get(server, "/static/app.css", ("Accept-Encoding", "gzip, deflate, br"))
    assert (both.header("Content-Encoding"), both.body) == ("br", BR_BYTES)
    weighted = get(server, "/static/app.css", ("Accept-Encoding", "br;q=0.5, gzip;q=0.9"))
    assert weighted.header("Content-Encoding") == "gzip"
    refused = get(server, "/static/app.css", ("Accept-Encoding", "br;q=0, gzip;q=0"))
    assert refused.header("Content-Encoding") is None and refused.body == CSS


def test_identity_without_accept_encoding(server: Server) -> None:
    response = get(server, "/static/app.css")
    assert response.header("Content-Encoding") is None
    assert response.body == CSS


def test_vary_when_a_sibling_exists_but_is_not_chosen(server: Server) -> None:
    response = get(server, "/static/only.js", ("Accept-Encoding", "br"))
    assert response.header("Content-Encoding") is None
    assert response.header("Vary") is None  # no .br sibling: nothing was negotiated
    gz = get(server, "/static/only.js", ("Accept-Encoding", "br, gzip"))
    assert (gz.header("Content-Encoding"), gz.header("Vary")) == ("gzip", "Accept-Encoding")


def test_conditional_on_the_compressed_variant(server: Server) -> None:
    gz = get(server, "/static/app.css", ("Accept-Encoding", "gzip"))
    etag = gz.header("ETag") or ""
    again = get(server, "/static/app.css", ("Accept-Encoding", "gzip"), ("If-None-Match", etag))
    assert again.status == 304
    other = get(server, "/static/app.css", ("If-None-Match", etag))
    assert other.status == 200  # the identity representation has another validator


# --- caching ---


def test_hashed_names_are_immutable(server: Server) -> None:
    response = get(server, f"/static/{HASHED}")
    assert response.header("Cache-Control") == "public, max-age=31536000, immutable"
    assert get(server, "/static/app.css").header("Cache-Control") == "public, max-age=60"


def test_static_max_age(lenient: Server) -> None:
    response = get(lenient, "/assets/hello.txt")
    assert response.header("Cache-Control") == "public, max-age=120"


# --- directories ---


def test_directories_are_not_served_by_default(server: Server) -> None:
    for path in ("/static", "/static/", "/static/sub", "/static/sub/"):
        assert get(server, path).status == 404, path


def test_index_files_when_enabled(lenient: Server) -> None:
    redirect = get(lenient, "/assets/sub?x=1")
    assert (redirect.status, redirect.header("Location")) == (301, "/assets/sub/?x=1")
    index = get(lenient, "/assets/sub/")
    assert (index.status, index.body) == (200, INDEX)


def test_a_file_with_a_trailing_slash_is_not_found(server: Server) -> None:
    assert get(server, "/static/hello.txt/").status == 404


def test_special_files_are_not_served(server: Server) -> None:
    assert get(server, "/static/fifo").status == 404  # and opening it did not hang


# --- safety ---


@pytest.mark.parametrize(
    "path",
    [
        "/static/.env",
        "/static/.git/config",
        "/static/sub/.hidden",
        "/static/%2eenv",
        "/static/%2Eenv",
    ],
)
def test_dotfiles_are_refused(server: Server, path: str) -> None:
    assert get(server, path).status == 404


@pytest.mark.parametrize(
    "path",
    [
        "/static/../outside/secret.txt",
        "/static/sub/../../outside/secret.txt",
        "/static/./../outside/secret.txt",
        "/static//../outside/secret.txt",
        "/static/%2e%2e/outside/secret.txt",
        "/static/%2E%2E/outside/secret.txt",
        "/static/.%2e/outside/secret.txt",
        "/static/..%2foutside%2fsecret.txt",
        "/static/..%2Foutside/secret.txt",
        "/static/sub/..%2f..%2foutside/secret.txt",
        "/static/%2e%2e%2foutside%2fsecret.txt",
        "/static/..%5coutside%5csecret.txt",
        "/static/..\\outside\\secret.txt",
        "/static/sub%2f..%2f..%2foutside/secret.txt",
        "/static/%252e%252e/outside/secret.txt",
        "/static/%2fetc/passwd",
        "/static/link_out.txt",
        "/static/dir_out/secret.txt",
    ],
)
def test_traversal_never_leaves_the_root(server: Server, path: str) -> None:
    response = get(server, path)
    assert response.status == 404
    assert SECRET not in response.body


@pytest.mark.parametrize("path", ["/static/sub%2finner.txt", "/static/sub%5Cinner.txt"])
def test_encoded_separators_are_refused(server: Server, path: str) -> None:
    """Even where the decoded path would be harmless: %2F is never a directory separator."""
    assert get(server, "/static/sub/inner.txt").status == 200
    assert get(server, path).status == 404


@pytest.mark.parametrize(
    "path", ["/static/%zz", "/static/hello%2", "/static/a%00b", "/static/hello.txt%00.css"]
)
def test_malformed_paths_are_bad_requests(server: Server, path: str) -> None:
    assert get(server, path).status == 400


def test_symlinks_inside_the_root_are_served(server: Server) -> None:
    assert get(server, "/static/link_in.txt").body == TEXT


def test_follow_symlinks_serves_links_leaving_the_root(lenient: Server) -> None:
    assert get(lenient, "/assets/link_out.txt").body == SECRET
    assert get(lenient, "/assets/dir_out/secret.txt").body == SECRET
    assert get(lenient, "/assets/../outside/secret.txt").status == 404  # `..` never


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
def test_only_get_and_head(server: Server, method: str) -> None:
    with RawConnection(server.port) as conn:
        refused = conn.request(
            method, "/static/hello.txt", body=b"x" if method != "OPTIONS" else b""
        )
        after = conn.request("GET", "/static/hello.txt")  # the connection is still usable
    assert refused.status == 405
    assert refused.header("Allow") == "GET, HEAD"
    assert after.body == TEXT


def test_prefix_must_end_at_a_segment(server: Server) -> None:
    """/staticfoo is not under /static: it goes to the app."""
    response = get(server, "/staticfoo/hello.txt?n=1")
    assert (response.status, response.body) == (200, b"chunk 0\n")


def test_concurrent_clients(server: Server, tree: Path) -> None:
    expected = (tree / "big.bin").read_bytes()
    results: list[bytes] = []

    def fetch_big() -> None:
        results.append(get(server, "/static/big.bin").body)

    threads = [threading.Thread(target=fetch_big) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [expected] * 4


def test_a_root_that_is_a_symlink_follows_a_deploy(servers: ServerFactory, tmp_path: Path) -> None:
    """`current -> releases/1`, then swapped to `releases/2`: the new files are served at once."""
    for release in ("1", "2"):
        (tmp_path / release).mkdir()
        (tmp_path / release / "v.txt").write_text(release)
        (tmp_path / release / "inner").symlink_to(tmp_path / release / "v.txt")
    current = tmp_path / "current"
    current.symlink_to(tmp_path / "1")
    server = servers.start("hello:application", "-w", "1", "--static", f"/s={current}")
    assert get(server, "/s/v.txt").body == b"1"
    assert get(server, "/s/inner").body == b"1"  # a link inside the (resolved) root
    swap = tmp_path / "swap"
    swap.symlink_to(tmp_path / "2")
    swap.replace(current)
    assert get(server, "/s/v.txt").body == b"2"
    assert get(server, "/s/inner").body == b"2"
