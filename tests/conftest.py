"""Fixtures shared by the test suites: real maitred servers started on demand.

Every integration test that started servers is followed by the checks of :mod:`hygiene` (no
leaked descriptor, no error in a server's log that the test did not declare with
``@pytest.mark.expect_errors(PATTERN, ...)`` or ``start(..., expect_errors=...)``) and, when
the servers stop, by the harness's check for stray processes. A test that failed already is
not checked further: its own failure is the one to read.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from harness import APPS_DIR, ServerFactory

# Tests import the fixture apps by the same bare names the server uses (to share constants such
# as expected bodies instead of copying them).
sys.path.insert(0, str(APPS_DIR))

CALL_PASSED = pytest.StashKey[bool]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "expect_errors(*patterns): regular expressions for the error-log records (ERROR level or "
        "a traceback) that this test's servers are expected to write",
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Iterator[None]:
    report = yield
    if report.when == "call":
        item.stash[CALL_PASSED] = report.passed
    return report


def _passed(request: pytest.FixtureRequest) -> bool:
    return request.node.stash.get(CALL_PASSED, False)


def _expected(request: pytest.FixtureRequest) -> tuple[str, ...]:
    marker = request.node.get_closest_marker("expect_errors")
    return tuple(marker.args) if marker else ()


@pytest.fixture
def servers(request: pytest.FixtureRequest) -> Iterator[ServerFactory]:
    """Start servers inside one test; all are checked and stopped after it."""
    factory = ServerFactory()
    factory.expect_errors = _expected(request)
    try:
        yield factory
        if _passed(request):
            factory.check()
    finally:
        factory.close(check=_passed(request))


@pytest.fixture(scope="module")
def module_servers() -> Iterator[ServerFactory]:
    """Start servers shared by the tests of one module; checked after each test that uses them,
    stopped after the module."""
    factory = ServerFactory()
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(autouse=True)
def _check_module_servers(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "module_servers" in request.fixturenames and _passed(request):
        factory: ServerFactory = request.getfixturevalue("module_servers")
        factory.expect_errors = _expected(request)
        try:
            factory.check()
        finally:
            factory.expect_errors = ()
