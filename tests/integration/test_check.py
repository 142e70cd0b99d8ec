"""`maitred check`: the settings with their origins and the app's import, without serving."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from harness import APPS_DIR, CliResult, run_cli
from integration.test_apps_dir import SERVER, deploy, whoami
from maitred import config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

APP_PATH = ["--pythonpath", str(APPS_DIR)]


def origins(stdout: str) -> dict[str, str]:
    """key -> origin, from the `key = value  # origin` lines."""
    found = {}
    for line in stdout.splitlines():
        setting, _, origin = line.lstrip("# ").rpartition("  # ")
        found[setting.partition(" = ")[0]] = origin
    return found


def test_check_prints_each_setting_with_its_origin_and_binds_nothing(tmp_path: Path) -> None:
    (tmp_path / "maitred.toml").write_text("max-requests = 7\n")
    env = {"MAITRED_THREADS": "2"}
    with socket.create_server(("127.0.0.1", 0)) as taken:  # a server would fail to bind it
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        result = run_cli(["check", "-b", address, "-w", "3", *APP_PATH, "hello"], tmp_path, env)
    assert result.returncode == 0, result
    assert origins(result.stdout) == {
        **{config.key_of(f): "default" for f in config.SETTINGS},
        "app": "command line",
        "bind": "command line",
        "workers": "command line",
        "pythonpath": "command line",
        "threads": "env MAITRED_THREADS",
        "max-requests": "file maitred.toml",
    }, result.stdout
    assert result.stderr.splitlines()[-1].startswith("maitred: ok: "), result.stderr
    assert "Listening" not in result.stderr
    # The listing is TOML with the values a server would run with: it reads back the same.
    listing = tmp_path / "resolved.toml"
    listing.write_text(result.stdout)
    assert tomllib.loads(result.stdout)["workers"] == 3
    again = config.load({"config": str(listing)}, {}, cwd=str(tmp_path))
    expected = config.load(
        {"bind": [address], "workers": "3", "pythonpath": [str(APPS_DIR)], "app": "hello"},
        env,
        cwd=str(tmp_path),
    )
    assert again == expected.replace(config=str(listing))


def test_check_imports_the_app_in_a_child_with_its_env(tmp_path: Path) -> None:
    (tmp_path / "whoimports.py").write_text(
        "import os\n"
        "with open(os.environ['WHO_FILE'], 'w') as fh:\n"
        "    fh.write(f'{os.getpid()} {os.getppid()}')\n"
        "from hello import application\n"
    )
    who = tmp_path / "who.txt"
    args = ["check", "--pythonpath", str(tmp_path), *APP_PATH, "-e", f"WHO_FILE={who}"]
    result = run_cli([*args, "whoimports"], tmp_path)
    assert result.returncode == 0, result
    pid, parent = map(int, who.read_text().split())
    # Imported by a child of the checking process, not by the checking process (our child).
    assert parent != os.getpid() and pid != parent


def test_check_reports_an_app_that_cannot_import(tmp_path: Path) -> None:
    result = run_cli(["check", *APP_PATH, "brokenimport"], tmp_path)
    assert result.returncode == 1, result
    assert (
        "maitred: cannot import app 'brokenimport': "
        "RuntimeError: the settings module is missing a key"
    ) in result.stderr.splitlines(), result.stderr
    assert "brokenimport.py" in result.stderr and "importlib" not in result.stderr


def test_check_refuses_an_asgi_app(tmp_path: Path) -> None:
    result = run_cli(["check", *APP_PATH, "asgiapp:instance"], tmp_path)
    assert result.returncode == 1, result
    assert result.stderr.strip().endswith("maitred runs WSGI apps, not ASGI"), result.stderr


def test_check_bounds_a_hanging_import(tmp_path: Path) -> None:
    (tmp_path / "hangs.py").write_text("import time\ntime.sleep(600)\n")
    args = ["check", "--import-timeout", "1", "--pythonpath", str(tmp_path), "hangs"]
    result = run_cli(args, tmp_path)  # fails if the importing child is left behind
    assert result.returncode == 1, result
    assert "maitred: cannot import app 'hangs': the import did not finish within 1 s" in (
        result.stderr
    )


def test_check_reports_a_bad_setting_in_one_line(tmp_path: Path) -> None:
    result = run_cli(["check", "--workers", "abc", *APP_PATH, "hello"], tmp_path)
    assert result.returncode == 1, result
    assert result.stderr.count("\n") == 1 and "workers" in result.stderr, result.stderr
    assert result.stdout == ""


def check_apps_dir(tmp_path: Path, files: dict[str, str]) -> tuple[CliResult, Path]:
    """`maitred check` of the apps-dir tests' server, with `files` (NAME: text) in its DIR."""
    directory = tmp_path / "apps"
    directory.mkdir()
    for name, text in files.items():
        deploy(directory, name, text)
    (tmp_path / "maitred.toml").write_text(SERVER)
    return run_cli(["check", "--apps-dir", str(directory)], tmp_path), directory


def test_check_lists_and_imports_the_apps_of_the_apps_dir(tmp_path: Path) -> None:
    result, _ = check_apps_dir(tmp_path, {"shop": whoami("shop", path="/shop")})
    assert result.returncode == 0, result
    assert "[apps.shop]  # resolved" in result.stdout and "[apps.calm]" in result.stdout
    assert "'whoami' (app shop) imports" in result.stderr, result.stderr


def test_check_names_each_file_of_the_apps_dir_that_does_not_validate(tmp_path: Path) -> None:
    bad = {
        "calm": ("app = 'whoami'\npath = '/x'\n", "the config file has an app named calm"),
        "tea": (whoami("tea", path="/shop"), "apps shop and tea both serve"),
        "typo": ("app = 'whoami'\nwokers = 2\n", "unknown setting 'wokers'"),
        "toml": ("app = \n", "not valid TOML"),
    }
    files = {"shop": whoami("shop", path="/shop")} | {name: text for name, (text, _) in bad.items()}
    result, directory = check_apps_dir(tmp_path, files)
    assert result.returncode == 1, result
    said = [line for line in result.stderr.splitlines() if "apps-dir" in line]
    assert len(said) == len(bad), result.stderr  # one line per file, each naming it
    for line, (name, (_, error)) in zip(said, sorted(bad.items()), strict=True):
        assert line.startswith(f"maitred: apps-dir: {directory}/{name}.toml: "), line
        assert error in line, line
    assert "[apps.shop]  # resolved" in result.stdout  # the valid one is listed
    assert "[apps.tea]" not in result.stdout


def test_check_refuses_an_apps_dir_it_cannot_list(tmp_path: Path) -> None:
    (tmp_path / "maitred.toml").write_text(SERVER)
    result = run_cli(["check", "--apps-dir", str(tmp_path / "missing")], tmp_path)
    assert result.returncode == 1, result
    assert f"maitred: apps-dir: cannot list {tmp_path}/missing: " in result.stderr, result
