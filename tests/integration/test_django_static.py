"""A Django project's `collectstatic` output served by `--static`: the admin's pages load their CSS.

`collectstatic` runs into a temporary STATIC_ROOT with ManifestStaticFilesStorage, which writes
each file also under a name carrying its content hash and rewrites the references between CSS
files to those names; the admin's templates link the hashed names. The front serves them all.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests

from harness import APPS_DIR, Server, ServerFactory, server_env

TIMEOUT = 10.0
LINKS = re.compile(r'(?:href|src)="(/static/[^"]+)"')
CSS_URLS = re.compile(r"""url\(\s*['"]?([^'")]+)['"]?\s*\)|@import\s+['"]([^'"]+)['"]""")
HASHED = re.compile(r"\.[0-9a-f]{12}\.\w+$")


@pytest.fixture(scope="module")
def django_static(
    module_servers: ServerFactory, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Server, Path]:
    data_dir = tmp_path_factory.mktemp("mysite")
    static_root = data_dir / "static"
    env = {"MYSITE_DATA_DIR": str(data_dir), "MYSITE_STATIC_ROOT": str(static_root)}
    subprocess.run(
        [sys.executable, "-m", "django", "collectstatic", "--noinput", "-v0"],
        cwd=APPS_DIR,
        env=server_env({**env, "DJANGO_SETTINGS_MODULE": "mysite.settings", "PYTHONPATH": "."}),
        check=True,
        timeout=120,
    )
    server = module_servers.start(
        "mysite.wsgi:application", "-w", "1", "--static", f"/static={static_root}", env=env
    )
    return server, static_root


def test_collectstatic_wrote_hashed_names(django_static: tuple[Server, Path]) -> None:
    _, root = django_static
    assert (root / "staticfiles.json").exists()
    assert any(HASHED.search(p.name) for p in (root / "admin" / "css").iterdir())


def test_admin_login_page_loads_its_css(django_static: tuple[Server, Path]) -> None:
    server, root = django_static
    page = requests.get(server.url("/admin/login/"), timeout=TIMEOUT)
    assert page.status_code == 200
    links = LINKS.findall(page.text)
    stylesheets = [link for link in links if link.endswith(".css")]
    assert any("admin/css/base." in link for link in stylesheets), links
    with requests.Session() as session:
        for link in links:
            assert HASHED.search(link), link  # the manifest's names, not the plain ones
            response = session.get(server.url(link), timeout=TIMEOUT)
            assert response.status_code == 200, link
            assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
            assert response.content == (root / link.removeprefix("/static/")).read_bytes()
            if link.endswith(".css"):
                assert response.headers["Content-Type"] == "text/css; charset=utf-8"
                check_css_references(session, server, link, response.text)


def check_css_references(session: requests.Session, server: Server, link: str, css: str) -> None:
    """Every url() and @import in a stylesheet resolves to a file the front serves."""
    for match in CSS_URLS.finditer(css):
        reference = match.group(1) or match.group(2)
        if reference.startswith(("data:", "#", "http:", "https:")):
            continue
        target = urljoin(link, reference.split("#")[0].split("?")[0])
        response = session.get(server.url(target), timeout=TIMEOUT)
        assert response.status_code == 200, (link, reference)


def test_unhashed_names_get_the_short_max_age(django_static: tuple[Server, Path]) -> None:
    server, _ = django_static
    response = requests.get(server.url("/static/admin/css/base.css"), timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "public, max-age=60"


def test_the_app_still_serves_everything_else(django_static: tuple[Server, Path]) -> None:
    server, _ = django_static
    response = requests.get(server.url("/hello/"), timeout=TIMEOUT)
    assert (response.status_code, response.text) == (200, "Hello from Django")
