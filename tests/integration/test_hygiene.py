"""The after-test checks themselves: they catch what they are for, and spare what is declared."""

from __future__ import annotations

import pytest

import hygiene
from harness import ServerFactory
from rawhttp import RawConnection, fetch

QUIET_FOR_THIS_TEST = 0.5  # the connection stays open on purpose: no need to wait long


def test_an_undeclared_error_and_an_open_connection_fail_the_checks(
    servers: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = servers.start("failing:application", "-w", "1", "--threads", "1")
    assert fetch(server.port, "GET", "/before").status == 500
    assert server.wait_for_log("boom-before-head")
    monkeypatch.setattr(hygiene, "QUIET_TIMEOUT", QUIET_FOR_THIS_TEST)
    with RawConnection(server.port) as conn:
        assert conn.request("GET", "/ok").status == 200
        with pytest.raises(AssertionError) as failed:
            servers.check()
    assert "leaked descriptors" in str(failed.value) and "socket:[" in str(failed.value)
    assert "RuntimeError: boom-before-head" in str(failed.value)


@pytest.mark.expect_errors(r"RuntimeError: boom-before-head")
def test_a_declared_error_passes(servers: ServerFactory) -> None:
    server = servers.start("failing:application", "-w", "1", "--threads", "1")
    assert fetch(server.port, "GET", "/before").status == 500
    assert server.wait_for_log("boom-before-head")
