"""The after-test checks of tests/hygiene.py, on made-up snapshots and logs."""

from __future__ import annotations

import hygiene

ERROR = "[2026-01-01 10:00:00 +0000] [42] [ERROR] error handling GET /x\n"
TRACE = 'Traceback (most recent call last):\n  File "app.py", line 1\nRuntimeError: boom\n'
INFO = "[2026-01-01 10:00:01 +0000] [42] [INFO] Listening at: http://127.0.0.1:1 (42)\n"
WARNING = "[2026-01-01 10:00:02 +0000] [42] [WARNING] worker 1 exited\n"


def test_an_error_record_takes_its_traceback_along() -> None:
    assert hygiene.records(INFO + ERROR + TRACE + WARNING) == [INFO, ERROR + TRACE, WARNING]


def test_errors_and_tracebacks_are_unexpected_unless_declared() -> None:
    log = INFO + ERROR + TRACE + WARNING + TRACE
    assert hygiene.unexpected_errors(log, []) == [ERROR + TRACE, WARNING + TRACE]
    assert hygiene.unexpected_errors(log, ["RuntimeError: boom"]) == []
    assert hygiene.unexpected_errors(log, [r"GET /x"]) == [WARNING + TRACE]
    assert hygiene.unexpected_errors(INFO + WARNING, []) == []


def process(title: str, *targets: str) -> hygiene.Process:
    return hygiene.Process(1, title, dict(enumerate(targets)))


def test_a_file_or_a_connection_held_since_start_is_a_leak() -> None:
    start = {(1, 1): process("maitred: front", "/dev/null", "socket:[10]")}
    spool_file = {(1, 1): process("maitred: front", "/dev/null", "socket:[10]", "/tmp/s/1")}
    assert hygiene.leaks(start, spool_file)
    assert not hygiene.leaks(start, start)


def test_more_descriptors_leak_only_where_the_processes_are_the_same() -> None:
    start = {(1, 1): process("maitred: master", "pipe:[1]"), (2, 2): process("maitred: worker")}
    more = {(1, 1): process("maitred: master", "pipe:[1]", "pipe:[2]"), **{(2, 2): start[2, 2]}}
    assert hygiene.leaks(start, more)
    # A replaced worker (another start time) has its own pipe: not a leak of the master's.
    replaced = {(1, 1): more[1, 1], (3, 3): process("maitred: worker")}
    assert not hygiene.leaks(start, replaced)


def test_a_directory_kept_in_reserve_is_no_leak() -> None:
    start = {(1, 1): process("maitred: front", "/dev/null")}
    reserve = {(1, 1): process("maitred: front", "/dev/null", "/")}  # libuv, after EMFILE
    assert not hygiene.leaks(start, reserve)


def test_a_descriptor_moved_to_another_number_is_the_same_one() -> None:
    start = {(1, 1): process("maitred: front", "socket:[7]")}
    duplicated = {(1, 1): hygiene.Process(1, "maitred: front", {5: "socket:[7]"})}
    assert not hygiene.leaks(start, duplicated)
