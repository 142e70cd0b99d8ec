"""The command line: version, the bundled demo, errors that stop the server cleanly, and the
help it gives with the settings."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from harness import APPS_DIR, LISTENING, CliResult, ServerFactory, run_cli, server_env
from maitred import config

TIMEOUT = 10.0
# A worker that imported the app after a stop began waits up to 5 s for its front (gone by
# then) before it drains: 20 s is ample, and far below the --graceful-timeout the tests set.
STOP_WITHIN = 20.0
BIND = ["-b", "127.0.0.1:0"]
APP_PATH = ["--pythonpath", str(APPS_DIR)]


def maitred_version() -> str:
    code = "import maitred; print(maitred.__version__)"
    out = subprocess.run(
        [sys.executable, "-c", code], env=server_env(), capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_version() -> None:
    result = run_cli(["--version"])
    assert result.returncode == 0, result
    assert maitred_version() in result.stdout


def test_no_app_serves_the_bundled_demo(servers: ServerFactory, tmp_path: Path) -> None:
    server = servers.start(None, cwd=tmp_path)
    response = requests.get(server.url("/"), timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert "<html" in response.text.lower()


def test_app_that_cannot_import_stops_the_server(tmp_path: Path) -> None:
    result = run_cli([*BIND, "-w", "3", *APP_PATH, "nosuchmodule:app"], cwd=tmp_path)
    assert result.returncode == 1, result
    assert "nosuchmodule" in result.stderr
    # One clear error, not one per worker and not a respawn loop.
    assert result.stderr.count("Traceback") <= 1, result.stderr
    assert result.stderr.count("No module named 'nosuchmodule'") <= 2, result.stderr
    assert len(result.stderr.splitlines()) < 40, result.stderr


def test_bad_option_value_is_one_line_exit_2(tmp_path: Path) -> None:
    result = run_cli(["--workers", "abc", *APP_PATH, "hello"], cwd=tmp_path)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "workers" in lines[0] and "abc" in lines[0]


def test_unknown_config_key_is_named_exit_2(tmp_path: Path) -> None:
    (tmp_path / "maitred.toml").write_text('workerz = 2\nbind = ["127.0.0.1:0"]\n')
    result = run_cli([*APP_PATH, "hello"], cwd=tmp_path)
    assert result.returncode == 2, result
    assert "workerz" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_key_in_explicit_config_file_is_named_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "elsewhere.toml"
    config.write_text("threadz = 4\n")
    result = run_cli([*BIND, "--config", str(config), *APP_PATH, "hello"], cwd=tmp_path)
    assert result.returncode == 2, result
    assert "threadz" in result.stderr
    assert "Traceback" not in result.stderr


# --- startup: "Listening at" once the app imports; an app that cannot load ---

GATED_APP = """
import os, time
from pathlib import Path
here = Path(__file__).parent
(here / "importing").touch()
deadline = time.monotonic() + 30
while not (here / "go").exists() and time.monotonic() < deadline:
    time.sleep(0.02)
from hello import application
"""


def test_listening_is_said_once_the_first_worker_has_imported_the_app(
    servers: ServerFactory, tmp_path: Path
) -> None:
    (tmp_path / "gated.py").write_text(GATED_APP)
    spawned = servers.launch("gated:application", "--pythonpath", str(tmp_path))
    try:
        assert wait_for_file(tmp_path / "importing"), spawned.output()
        # The sockets are bound and a worker is importing the app: not serving yet.
        assert spawned.stderr.wait_for(LISTENING, 1.0) is None, spawned.output()
    finally:
        (tmp_path / "go").touch()  # whatever happened, the import ends and the server can stop
    server = servers.serving(spawned)
    assert requests.get(server.url("/"), timeout=TIMEOUT).text == "Hello, world!\n"


def test_a_stop_while_the_app_imports_starts_no_more_workers(
    servers: ServerFactory, tmp_path: Path
) -> None:
    (tmp_path / "gated.py").write_text(GATED_APP)
    args = ["-w", "3", "--graceful-timeout", "60", "--pythonpath", str(tmp_path)]
    spawned = servers.launch("gated:application", *args)
    try:
        assert wait_for_file(tmp_path / "importing"), spawned.output()
        spawned.proc.send_signal(signal.SIGTERM)
        # The import ends only once the master took the stop: a signal still on its way when
        # the app is imported would let the master say Listening first, rightly.
        assert spawned.stderr.wait_for(r"stopping: ", TIMEOUT), spawned.output()
    finally:
        (tmp_path / "go").touch()
    # Well before the graceful timeout: no worker was started that the stop would miss.
    assert spawned.proc.wait(STOP_WITHIN) == 0, spawned.output()
    assert "Listening at" not in spawned.stderr.text, spawned.output()


def wait_for_file(path: Path) -> bool:
    deadline = time.monotonic() + TIMEOUT
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return path.exists()


PRELOAD = pytest.mark.parametrize("preload", [[], ["--preload"]], ids=["workers", "preload"])


def assert_clear_stop(result: CliResult, line: str) -> None:
    """Exit 1 with `line` first, and no frame of maitred's or importlib's."""
    assert result.returncode == 1, result
    assert result.stderr.splitlines()[0] == line, result.stderr
    assert "importlib" not in result.stderr and "/maitred/" not in result.stderr, result.stderr


@PRELOAD
@pytest.mark.parametrize(
    ("app", "cause"),
    [
        ("nosuchmodule:app", "No module named 'nosuchmodule'"),
        ("hello:nosuchapp", "module 'hello' has no attribute 'nosuchapp'"),
    ],
)
def test_an_app_that_cannot_be_found_is_one_line(
    tmp_path: Path, preload: list[str], app: str, cause: str
) -> None:
    result = run_cli([*BIND, "-w", "3", *preload, *APP_PATH, app], cwd=tmp_path)
    assert_clear_stop(result, f"maitred: cannot import app {app!r}: {cause}")
    assert "Traceback" not in result.stderr, result.stderr


def test_a_chdir_that_does_not_exist_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "gone"
    result = run_cli([*BIND, "--chdir", str(missing), *APP_PATH, "hello"], cwd=tmp_path)
    line = f"maitred: cannot change to directory {str(missing)!r}: No such file or directory"
    assert_clear_stop(result, line)
    assert "Traceback" not in result.stderr, result.stderr


def test_a_pidfile_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    pidfile = tmp_path / "no" / "such" / "dir" / "maitred.pid"
    result = run_cli([*BIND, "--pidfile", str(pidfile), *APP_PATH, "hello"], cwd=tmp_path)
    assert result.returncode == 1, result
    assert f"cannot write the pidfile {pidfile}: No such file or directory" in result.stderr
    assert "Traceback" not in result.stderr and not LISTENING.search(result.stderr), result.stderr


@PRELOAD
def test_an_app_that_raises_at_import_shows_its_own_frames(
    tmp_path: Path, preload: list[str]
) -> None:
    result = run_cli([*BIND, "-w", "3", *preload, *APP_PATH, "brokenimport"], cwd=tmp_path)
    message = "RuntimeError: the settings module is missing a key"  # see brokenimport.py
    assert_clear_stop(result, f"maitred: cannot import app 'brokenimport': {message}")
    frames = re.findall(r'File "([^"]+)", line \d+, in (\S+)', result.stderr)
    assert [(Path(path).name, where) for path, where in frames] == [
        ("brokenimport.py", "<module>"),
        ("brokenimport.py", "configure"),
    ], result.stderr
    assert result.stderr.count("Traceback") == 1, result.stderr


@PRELOAD
@pytest.mark.parametrize("app", ["asgiapp:app", "asgiapp:instance"])
def test_an_asgi_app_is_refused_at_start(tmp_path: Path, preload: list[str], app: str) -> None:
    result = run_cli([*BIND, *preload, *APP_PATH, app], cwd=tmp_path)
    assert result.returncode == 1, result
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"maitred: cannot serve app {app!r}: "), result.stderr
    assert first.endswith("maitred runs WSGI apps, not ASGI"), result.stderr


# --- configuration help ---


def test_each_unknown_maitred_variable_is_one_warning_with_the_closest_setting(
    servers: ServerFactory,
) -> None:
    env = {"MAITRED_WORKRES": "3", "MAITRED_THREDS": "2", "MAITRED_WORKERS": "1"}
    server = servers.start("hello", env=env)
    warnings = [line for line in server.stderr.splitlines() if "warning:" in line]
    assert warnings == [
        "maitred: warning: unknown environment variable MAITRED_THREDS; "
        "did you mean MAITRED_THREADS?",
        "maitred: warning: unknown environment variable MAITRED_WORKRES; "
        "did you mean MAITRED_WORKERS?",
    ], server.stderr


def test_an_unknown_config_key_names_the_closest_setting(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.maitred]\nmax-request = 5\n")
    result = run_cli([*BIND, *APP_PATH, "hello"], cwd=tmp_path)
    assert result.returncode == 2, result
    assert "unknown setting 'max-request'; did you mean 'max-requests'?" in result.stderr


def test_help_shows_every_default() -> None:
    result = run_cli(["--help"])
    assert result.returncode == 0, result
    # argparse wraps lines anywhere, hyphens included: compare without whitespace.
    text = re.sub(r"\s+", "", result.stdout)
    assert text.count("(default:") >= len(config.SETTINGS), result.stdout
    for flag, default in [("--workers", "2"), ("--bind", "127.0.0.1:8000"), ("--chdir", "empty")]:
        shown = re.search(rf"{flag}.*?\(default:(.*?)\)", text)  # the first one is its option
        assert shown and shown[1] == default, (flag, result.stdout)
