"""Fixtures shared by the test suites: real maitred servers started on demand."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from harness import APPS_DIR, ServerFactory, server_factory

# Tests import the fixture apps by the same bare names the server uses (to share constants such
# as expected bodies instead of copying them).
sys.path.insert(0, str(APPS_DIR))


@pytest.fixture
def servers() -> Iterator[ServerFactory]:
    """Start servers inside one test; all are stopped (and checked for strays) after it."""
    with server_factory() as factory:
        yield factory


@pytest.fixture(scope="module")
def module_servers() -> Iterator[ServerFactory]:
    """Start servers shared by the tests of one module; stopped after the module."""
    with server_factory() as factory:
        yield factory
