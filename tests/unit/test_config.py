"""The settings table: one declaration feeds the CLI, the env, both config files and the docs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from maitred import cli, config
from maitred.config import ConfigError, load


def test_defaults() -> None:
    cfg = load({}, {}, cwd="/nonexistent")
    assert cfg.workers == 2 and cfg.threads == 4
    assert cfg.bind == ("127.0.0.1:8000",)


def test_precedence_cli_over_env_over_file(tmp_path: Path) -> None:
    (tmp_path / "maitred.toml").write_text("workers = 3\nthreads = 5\nkeepalive = 7\n")
    env = {"MAITRED_WORKERS": "4", "MAITRED_THREADS": "6"}
    cfg = load({"workers": "9"}, env, cwd=str(tmp_path))
    assert (cfg.workers, cfg.threads, cfg.keepalive) == (9, 6, 7.0)


def test_pyproject_section_and_maitred_toml_wins(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.maitred]\nworkers = 3\nbacklog = 10\n")
    assert load({}, {}, cwd=str(tmp_path)).workers == 3
    (tmp_path / "maitred.toml").write_text("workers = 5\n")
    cfg = load({}, {}, cwd=str(tmp_path))
    assert (cfg.workers, cfg.backlog) == (5, 10)


def test_explicit_config_path_and_dashed_keys(tmp_path: Path) -> None:
    path = tmp_path / "other.toml"
    path.write_text('bind = ["127.0.0.1:1", "unix:/tmp/x.sock"]\nbody-buffer-size = "64K"\n')
    cfg = load({"config": str(path)}, {}, cwd="/nonexistent")
    assert cfg.bind == ("127.0.0.1:1", "unix:/tmp/x.sock")
    assert cfg.body_buffer_size == 64 * 1024


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("wrokers = 3\n", "unknown setting 'wrokers'"),
        ('workers = "three"\n', "invalid value 'three' for 'workers': expected integer >= 1"),
        ("workers = 0\n", "expected integer >= 1"),
        ("preload = 1\n", "expected true or false"),
        ('bind = ["nope:port"]\n', "invalid value"),
    ],
)
def test_file_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "maitred.toml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load({}, {}, cwd=str(tmp_path))


def test_env_errors_name_the_variable() -> None:
    with pytest.raises(ConfigError, match="MAITRED_THREADS: invalid value 'x'"):
        load({}, {"MAITRED_THREADS": "x"}, cwd="/nonexistent")


def test_repeated_cli_flags_and_env_lists() -> None:
    cfg = load({"bind": ["127.0.0.1:1", "[::1]:2"], "env": ["A=1", "B=x=y"]}, {}, "/nonexistent")
    assert cfg.bind == ("127.0.0.1:1", "[::1]:2")
    assert cfg.env == (("A", "1"), ("B", "x=y"))
    cfg = load({}, {"MAITRED_BIND": "127.0.0.1:1,unix:/a"}, "/nonexistent")
    assert cfg.bind == ("127.0.0.1:1", "unix:/a")


def test_cli_parser_covers_every_setting() -> None:
    parser = cli.build_parser()
    dests = {action.dest for action in parser._actions}
    assert {f.name for f in config.SETTINGS} <= dests


def test_cli_bad_value_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.load_config(["--workers", "abc"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "workers" in err and "integer" in err


def test_generated_docs_are_current() -> None:
    docs = Path(__file__).parents[2] / "docs" / "settings.md"
    assert docs.read_text() == config.settings_markdown(), "run: python -m maitred.docs"


def test_sizes() -> None:
    f = {f.name: f for f in config.SETTINGS}["body_buffer_size"]
    assert config.parse_value(f, "1M", "x") == 1 << 20
    assert config.parse_value(f, "2KiB", "x") == 2048
    assert config.parse_value(f, 5, "x") == 5


def test_a_reload_applies_new_settings_but_those_of_the_start() -> None:
    running = config.Config(workers=2, static=(("/s", "/srv/a"),), bind=("127.0.0.1:8000",))
    loaded = config.Config(
        workers=3, threads=8, static=(("/s", "/srv/b"),), bind=("127.0.0.1:9000",)
    )
    cfg, kept, new_fronts = config.on_reload(running, loaded)
    assert (cfg.workers, cfg.threads, cfg.static) == (3, 8, (("/s", "/srv/b"),))
    assert cfg.bind == ("127.0.0.1:8000",) and kept == ["bind"]
    assert new_fronts  # static is a setting of the fronts: they are replaced too


def test_a_reload_of_worker_settings_keeps_the_fronts() -> None:
    cfg, kept, new_fronts = config.on_reload(config.Config(), config.Config(workers=5))
    assert cfg.workers == 5 and kept == [] and not new_fronts


def test_a_reload_that_breaks_a_rule_is_refused() -> None:
    # The fronts stay 2 while the new settings ask for 1 worker: fronts must not exceed workers.
    with pytest.raises(config.ConfigError, match="fronts"):
        config.on_reload(config.Config(fronts=2, workers=2), config.Config(fronts=1, workers=1))


def test_the_settings_the_fronts_read_are_theirs() -> None:
    # A setting the fronts read must replace them when a HUP changes it (or wait for a
    # restart): applied to the new workers alone, the two halves of the server would disagree.
    # And one marked as theirs must be read by them, or a HUP would replace them for nothing.
    src = Path(__file__).parents[2] / "src" / "maitred"
    # maitred.tls builds the fronts' TLS context (when they load the certificate again too).
    paths = [*(src / "front").glob("*.py"), src / "frontplan.py", src / "tls.py"]
    source = "\n".join(path.read_text() for path in paths)
    read = {f.name for f in config.SETTINGS if re.search(rf"\bcfg\.{f.name}\b", source)}
    kinds = {f.name: f.metadata["reloads"] for f in config.SETTINGS}
    assert {"static", "keepalive", "access_log_format", "body_temp_dir"} <= read  # it scans
    assert {name for name in read if kinds[name] == config.WORKERS} == set()
    # The master sets up logging, which the processes it forks (fronts included) inherit.
    inherited = {"log_level"}
    assert {name for name, kind in kinds.items() if kind == config.FRONTS} <= read | inherited


def test_with_fronts_of_takes_only_the_fronts_settings() -> None:
    mine = config.Config(workers=3, keepalive=9.0)
    theirs = config.Config(workers=1, keepalive=2.0)
    assert mine.with_fronts_of(theirs) == config.Config(workers=3, keepalive=2.0)


def test_resolve_says_where_each_value_came_from(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.maitred]\nbacklog = 10\nworkers = 3\n")
    (tmp_path / "maitred.toml").write_text("workers = 4\nthreads = 2\n")
    env = {"MAITRED_THREADS": "6", "MAITRED_KEEPALIVE": "2"}
    resolved = config.resolve({"keepalive": "3"}, env, cwd=str(tmp_path))
    assert (resolved.cfg.backlog, resolved.cfg.workers, resolved.cfg.threads) == (10, 4, 6)
    assert {k: v for k, v in resolved.origins.items() if v != config.DEFAULT} == {
        "backlog": f"file {tmp_path}/pyproject.toml [tool.maitred]",
        "workers": f"file {tmp_path}/maitred.toml",
        "threads": "env MAITRED_THREADS",
        "keepalive": "command line",
    }


def test_a_config_file_named_by_the_environment_is_its_origin(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text("workers = 5\n")
    resolved = config.resolve({}, {"MAITRED_CONFIG": str(path)}, cwd="/nonexistent")
    assert resolved.cfg.config == str(path) and resolved.cfg.workers == 5
    assert resolved.origins["config"] == "env MAITRED_CONFIG"
    assert resolved.origins["workers"] == f"file {path}"


def test_unknown_environment_variables_are_warned_about_with_the_closest_name() -> None:
    env = {
        "MAITRED_WORKRES": "3",  # a typo
        "MAITRED_ZZZ": "1",  # nothing like it
        "MAITRED_THREADS": "2",  # a setting
        "MAITRED_LISTEN_FDS": "3",  # an upgrade's hand-over (maitred.upgrade), not a typo
        "MAITRED_UPGRADE_FD": "4",
        "OTHER_WORKRES": "1",
    }
    assert config.resolve({}, env, cwd="/nonexistent").warnings == [
        "unknown environment variable MAITRED_WORKRES; did you mean MAITRED_WORKERS?",
        "unknown environment variable MAITRED_ZZZ",
    ]


@pytest.mark.parametrize("name", ["maitred.toml", "pyproject.toml", "other.toml"])
def test_an_unknown_file_key_names_the_closest_setting(tmp_path: Path, name: str) -> None:
    section = "[tool.maitred]\n" if name == "pyproject.toml" else ""
    (tmp_path / name).write_text(f"{section}graceful_timout = 3\n")
    cli_args = {"config": str(tmp_path / name)} if name == "other.toml" else {}
    with pytest.raises(ConfigError, match="did you mean 'graceful-timeout'\\?"):
        load(cli_args, {}, cwd=str(tmp_path))
