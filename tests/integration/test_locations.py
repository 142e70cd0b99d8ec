"""Locations in a real server: who may enter, how big a body may be, which headers every answer
carries, redirects, and requests kept out of the access log.

The client connects from 127.0.0.1 or 127.0.0.2 (both loopback); the default
--forwarded-allow-ips trusts 127.0.0.1 only, so 127.0.0.2 is an untrusted client.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from harness import APPS_DIR, Server, ServerFactory, wait_until
from rawhttp import RawConnection, Response, request_bytes

WAIT = 10.0
PASSWORD = "correct horse"
UPLOAD = 50 * 1024 * 1024
HSTS = "max-age=63072000; includeSubDomains"
CSP = "default-src 'self'"
CONFIG = """
limit-request-body = "1M"

[[locations]]
path = "/admin/"
allow = ["127.0.0.1"]
auth-basic = "{htpasswd}"
auth-basic-realm = "Staff"

[[locations]]
path = "/"
headers = {{ Strict-Transport-Security = "{hsts}", Content-Security-Policy = "{csp}" }}

[[locations]]
path = "/upload/"
max-body-size = "100M"

[[locations]]
path = "= /old"
redirect = "https://$host/new$request_uri"

[[locations]]
path = "/moved/"
redirect = "$scheme://example.com$request_uri"
redirect-status = 308

[[locations]]
path = "= /ping"
access-log = false
"""


def openssl_sha512(password: str) -> str:
    """The password hashed as `openssl passwd -6` writes it (what htpasswd -5 writes too)."""
    done = subprocess.run(
        ["openssl", "passwd", "-6", "-salt", "Hx7.pQsalt", password],
        capture_output=True,
        text=True,
        check=True,
        timeout=WAIT,
    )
    return done.stdout.strip()


@pytest.fixture(scope="module")
def site(module_servers: ServerFactory, tmp_path_factory: pytest.TempPathFactory) -> Server:
    where = tmp_path_factory.mktemp("locations")
    htpasswd = where / "admin.htpasswd"
    htpasswd.write_text(f"alice:{openssl_sha512(PASSWORD)}\n")
    static = where / "static"
    static.mkdir()
    (static / "site.css").write_text("body {}\n")
    config = where / "maitred.toml"
    config.write_text(CONFIG.format(htpasswd=htpasswd, hsts=HSTS, csp=CSP))
    log = where / "access.log"
    return module_servers.start(
        "echo:application",
        "-c",
        str(config),
        "-w",
        "1",
        "--static",
        f"/static={static}",
        "--access-logfile",
        str(log),
    )


def basic(user: str, password: str) -> tuple[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return ("Authorization", f"Basic {token}")


def get(server: Server, path: str, *headers: tuple[str, str], source: str = "") -> Response:
    with RawConnection(server.port, source=source) as conn:
        return conn.request("GET", path, list(headers))


def test_the_admin_takes_an_allowed_address_with_the_right_password(site: Server) -> None:
    answer = get(site, "/admin/users")
    assert answer.status == 401
    assert answer.header("WWW-Authenticate") == 'Basic realm="Staff"'
    assert get(site, "/admin/users", basic("alice", "wrong")).status == 401
    assert get(site, "/admin/users", basic("bob", PASSWORD)).status == 401
    ok = get(site, "/admin/users", basic("alice", PASSWORD))
    assert ok.status == 200
    assert json.loads(ok.body)["path"] == "/admin/users"
    # The rule guards the path however it is spelled.
    assert get(site, "/%61dmin/users").status == 401
    assert get(site, "/static/../admin/").status == 401


def test_the_admin_refuses_another_address_whatever_its_password(site: Server) -> None:
    for headers in ((), (basic("alice", PASSWORD),)):
        answer = get(site, "/admin/", *headers, source="127.0.0.2")
        assert answer.status == 403


def test_a_spoofed_forwarded_for_is_judged_by_the_real_address(site: Server) -> None:
    spoof = ("X-Forwarded-For", "127.0.0.1")
    answer = get(site, "/admin/", spoof, basic("alice", PASSWORD), source="127.0.0.2")
    assert answer.status == 403
    # From the trusted proxy the header is the client: one it names outside the list is refused.
    proxied = ("X-Forwarded-For", "127.0.0.2")
    assert get(site, "/admin/", proxied, basic("alice", PASSWORD)).status == 403


def test_a_refusal_keeps_the_connection_and_the_next_request_is_served(site: Server) -> None:
    with RawConnection(site.port) as conn:
        assert conn.request("GET", "/admin/").status == 401
        assert conn.request("GET", "/admin/", [basic("alice", PASSWORD)]).status == 200


def test_a_big_upload_is_refused_on_slash_before_its_body_and_taken_on_upload(
    site: Server,
) -> None:
    head = [("Content-Length", str(UPLOAD)), ("Content-Type", "application/octet-stream")]
    with RawConnection(site.port) as conn:
        conn.send(request_bytes("POST", "/", head))  # the head alone: no body byte sent
        answer = conn.read_response()
        assert answer.status == 413
        assert answer.header("Strict-Transport-Security") == HSTS  # the location's error too
        assert answer.header("Connection") == "close"
    payload = bytes(range(256)) * (UPLOAD // 256)
    with RawConnection(site.port, timeout=60) as conn:
        answer = conn.request("POST", "/upload/file", head, payload)
        assert answer.status == 200
        report = json.loads(answer.body)
        assert report["body_length"] == UPLOAD
        assert report["body_sha256"] == hashlib.sha256(payload).hexdigest()


def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(site: Server) -> None:
    head = [("Transfer-Encoding", "chunked")]
    piece = b"x" * (256 * 1024)
    with RawConnection(site.port) as conn:
        conn.send(request_bytes("POST", "/echo", head))
        for _ in range(5):  # 1.25 MiB: past the 1M limit, and the body never ends
            conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        answer = conn.read_response()
        assert answer.status == 413
    with RawConnection(site.port) as conn:
        conn.send(request_bytes("POST", "/upload/x", head))
        for _ in range(5):
            conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        conn.send(b"0\r\n\r\n")
        assert json.loads(conn.read_response().body)["body_length"] == 5 * len(piece)


def test_the_locations_headers_are_on_app_static_and_error_responses(site: Server) -> None:
    app = get(site, "/hello")
    static = get(site, "/static/site.css")
    missing = get(site, "/static/nothing.css")
    assert (app.status, static.status, missing.status) == (200, 200, 404)
    for answer in (app, static, missing):
        assert answer.header("Strict-Transport-Security") == HSTS
        assert answer.header("Content-Security-Policy") == CSP
    # Another location has its own headers (none here): a location's keys are not merged.
    assert get(site, "/upload/").header("Strict-Transport-Security") is None


def test_redirects_substitute_the_requests_host_scheme_and_uri(site: Server) -> None:
    old = get(site, "/old?x=1", ("Host", "Shop.Example.com:8000"))
    assert old.status == 301
    assert old.header("Location") == "https://shop.example.com/new/old?x=1"
    moved = get(site, "/moved/a%20b?q")
    assert moved.status == 308
    assert moved.header("Location") == "http://example.com/moved/a%20b?q"
    assert get(site, "/old/").status == 200  # "= /old" is that path only


def test_a_location_with_access_log_off_is_not_logged(site: Server) -> None:
    log = Path(site.spawned.proc.args[site.spawned.proc.args.index("--access-logfile") + 1])
    get(site, "/ping")
    get(site, "/after-ping")
    wait_until(lambda: "/after-ping" in log.read_text(), WAIT, "the request after /ping logged")
    assert " /ping " not in log.read_text()


REFUSING = """
[[locations]]
path = "/closed/"
deny = ["all"]

[[locations]]
path = "/small/"
max-body-size = "1M"

[[locations]]
path = "/quiet-closed/"
deny = ["all"]
access-log = false

[[locations]]
path = "/quiet-small/"
max-body-size = "1M"
access-log = false
"""


@pytest.fixture(scope="module")
def refusing(
    module_servers: ServerFactory, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Server, Path]:
    """A server whose locations refuse uploads before their bodies, logging in json."""
    where = tmp_path_factory.mktemp("refusing")
    config = where / "maitred.toml"
    config.write_text(REFUSING)
    log = where / "access.log"
    args = ["--access-logfile", str(log), "--access-log-format", "json"]
    return module_servers.start("echo:application", "-c", str(config), "-w", "1", *args), log


def refused_upload(server: Server, path: str) -> Response:
    """POST the head of a big upload, no body byte, and read the answer it gets at once."""
    head = [("Content-Length", str(UPLOAD)), ("Content-Type", "application/octet-stream")]
    with RawConnection(server.port) as conn:
        conn.send(request_bytes("POST", path, head))
        return conn.read_response("POST")


def refusal_logged(server: Server, log: Path, path: str) -> tuple[Response, list[str]]:
    """Refuse an upload to `path`, then GET a page after it: the answer, and the access log
    lines written since, up to the page's (a refusal is logged as its answer goes out)."""
    before = len(log.read_text().splitlines()) if log.exists() else 0
    answer = refused_upload(server, path)
    after = f"/after{path}"
    assert get(server, after).status == 200
    wait_until(lambda: after in log.read_text(), WAIT, f"{after} logged")
    lines = log.read_text().splitlines()[before:]
    assert after in lines[-1]
    return answer, lines[:-1]


@pytest.mark.parametrize(("path", "status"), [("/closed/up", 403), ("/small/up", 413)])
def test_an_upload_refused_before_its_body_is_logged_with_its_request(
    refusing: tuple[Server, Path], path: str, status: int
) -> None:
    answer, lines = refusal_logged(*refusing, path)
    assert answer.status == status
    (record,) = (json.loads(line) for line in lines)
    assert (record["method"], record["path"], record["status"]) == ("POST", path, status)
    assert record["request"] == f"POST {path} HTTP/1.1"
    assert record["request_id"] == answer.header("X-Request-ID")  # the answer's own


@pytest.mark.parametrize(("path", "status"), [("/quiet-closed/up", 403), ("/quiet-small/up", 413)])
def test_an_upload_refused_in_a_location_with_access_log_off_is_not_logged(
    refusing: tuple[Server, Path], path: str, status: int
) -> None:
    answer, lines = refusal_logged(*refusing, path)
    assert answer.status == status
    assert lines == []  # neither with its request line nor without


def test_redirect_https_sends_plain_requests_to_the_same_url_over_https(
    servers: ServerFactory,
) -> None:
    server = servers.start(
        "echo:application", "-w", "1", "--redirect-https", "--health-path", "/healthz"
    )
    answer = get(server, "/a/b?c=d", ("Host", "example.com:8080"))
    assert answer.status == 301
    assert answer.header("Location") == "https://example.com/a/b?c=d"
    # A trusted proxy that received it over https: served as it is.
    https = ("X-Forwarded-Proto", "https")
    assert get(server, "/a", https).status == 200
    assert get(server, "/healthz").status == 200


def test_allow_on_the_command_line_guards_every_path(servers: ServerFactory) -> None:
    server = servers.start("echo:application", "-w", "1", "--allow", "127.0.0.2")
    assert get(server, "/").status == 403
    assert get(server, "/", source="127.0.0.2").status == 200


PER_APP = f"""
chdir = "{APPS_DIR}"
pythonpath = ["{APPS_DIR}"]
workers = 1
[[locations]]
path = "/"
headers = {{ X-Frame-Options = "DENY" }}
[[locations]]
path = "/private/"
deny = ["all"]
[apps.shop]
app = "whoami"
hosts = ["shop.test"]
[[apps.shop.locations]]
path = "/private/"
allow = ["127.0.0.1"]
headers = {{ X-Shop = "1" }}
[apps.blog]
app = "whoami"
hosts = ["blog.test"]
"""


def test_an_apps_own_location_replaces_the_servers_for_its_requests_only(
    servers: ServerFactory, tmp_path: Path
) -> None:
    config = tmp_path / "maitred.toml"
    config.write_text(PER_APP)
    server = servers.start(None, "-c", str(config))
    shop = get(server, "/private/x", ("Host", "shop.test"))
    assert shop.status == 200
    assert shop.header("X-Shop") == "1" and shop.header("X-Frame-Options") is None
    blog = get(server, "/private/x", ("Host", "blog.test"))
    assert blog.status == 403
    assert get(server, "/", ("Host", "blog.test")).header("X-Frame-Options") == "DENY"
    # A Host no app takes: the server's locations still judge it.
    nobody = get(server, "/private/x", ("Host", "other.test"))
    assert nobody.status == 403
