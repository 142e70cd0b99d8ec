"""Real Flask and Django apps behind maitred, each in 2 workers x 2 threads."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from harness import Server, ServerFactory

TIMEOUT = 10.0
CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@pytest.fixture(scope="module")
def flask_server(module_servers: ServerFactory) -> Server:
    return module_servers.start("flaskapp:app", "-w", "2", "--threads", "2")


@pytest.fixture(scope="module", params=[[], ["--preload"]], ids=["", "preload"])
def django_server(
    module_servers: ServerFactory,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Server:
    """Django with its sqlite database shared by two workers (migrated in the master too)."""
    data_dir = tmp_path_factory.mktemp("mysite")
    return module_servers.start(
        "mysite.wsgi:application",
        "-w",
        "2",
        "--threads",
        "2",
        *request.param,
        env={"MYSITE_DATA_DIR": str(data_dir)},
    )


def test_flask_get(flask_server: Server) -> None:
    response = requests.get(flask_server.url("/"), timeout=TIMEOUT)
    assert (response.status_code, response.text) == (200, "Hello from Flask")


def test_flask_query_and_json(flask_server: Server) -> None:
    response = requests.get(flask_server.url("/json?x=1&y=two"), timeout=TIMEOUT)
    assert response.json() == {"args": {"x": "1", "y": "two"}, "path": "/json"}
    posted = requests.post(flask_server.url("/json"), json={"a": [1, 2]}, timeout=TIMEOUT)
    assert posted.json() == {"received": {"a": [1, 2]}}


def test_flask_form_post(flask_server: Server) -> None:
    form = {"name": "Zoë & co", "other": "x"}
    response = requests.post(flask_server.url("/form"), data=form, timeout=TIMEOUT)
    assert (response.status_code, response.text) == (200, "Hello, Zoë & co! (2 fields)")


def test_flask_not_found(flask_server: Server) -> None:
    assert requests.get(flask_server.url("/missing"), timeout=TIMEOUT).status_code == 404


def test_django_get(django_server: Server) -> None:
    response = requests.get(django_server.url("/hello/"), timeout=TIMEOUT)
    assert (response.status_code, response.text) == (200, "Hello from Django")


def sign_guestbook(server: Server, message: str) -> requests.Response:
    """GET the form, then POST it back with its CSRF cookie and hidden token."""
    with requests.Session() as session:
        form = session.get(server.url("/guestbook/"), timeout=TIMEOUT)
        assert form.status_code == 200
        assert "csrftoken" in session.cookies
        match = CSRF_INPUT.search(form.text)
        assert match, form.text
        data = {"csrfmiddlewaretoken": match.group(1), "message": message}
        return session.post(server.url("/guestbook/"), data=data, timeout=TIMEOUT)


def test_django_form_post_with_csrf_token(django_server: Server) -> None:
    response = sign_guestbook(django_server, "hello, guestbook")
    assert response.status_code == 200
    assert re.fullmatch(r"saved #\d+: hello, guestbook", response.text)


def test_django_post_without_csrf_token_is_forbidden(django_server: Server) -> None:
    response = requests.post(
        django_server.url("/guestbook/"), data={"message": "no token"}, timeout=TIMEOUT
    )
    assert response.status_code == 403


def test_django_post_with_wrong_csrf_token_is_forbidden(django_server: Server) -> None:
    with requests.Session() as session:
        assert session.get(django_server.url("/guestbook/"), timeout=TIMEOUT).ok
        data = {"csrfmiddlewaretoken": "x" * 64, "message": "forged"}
        response = session.post(django_server.url("/guestbook/"), data=data, timeout=TIMEOUT)
    assert response.status_code == 403


def test_django_concurrent_posts_across_workers(django_server: Server) -> None:
    messages = [f"concurrent {i}" for i in range(8)]
    with ThreadPoolExecutor(max_workers=len(messages)) as pool:
        responses = list(pool.map(lambda m: sign_guestbook(django_server, m), messages))
    assert [r.status_code for r in responses] == [200] * len(messages)
    ids = {re.match(r"saved #(\d+)", r.text).group(1) for r in responses}  # type: ignore[union-attr]
    assert len(ids) == len(messages)
