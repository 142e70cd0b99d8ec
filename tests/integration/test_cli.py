"""The command line: version, the bundled demo, and errors that stop the server cleanly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import requests

from harness import APPS_DIR, ServerFactory, run_cli, server_env

TIMEOUT = 10.0
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
