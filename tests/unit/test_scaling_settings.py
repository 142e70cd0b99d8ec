"""The scaling settings: their bounds checked together, one clear line and exit 2 if not."""

from __future__ import annotations

import pytest

from maitred import cli
from maitred.config import Config
from maitred.scaling import Bounds


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["-w", "2", "--min-workers", "3"], "min-workers (3) must not exceed workers (2)"),
        (["-w", "3", "--max-workers", "2"], "max-workers (2) must not be below workers (3)"),
        (["-w", "2", "--fronts", "2", "--min-workers", "1"], "min-workers (1) must not be below"),
        (["--warmup", "health"], "--warmup: invalid value 'health'"),
        (["--scale-down-after", "-1"], "scale-down-after"),
        (["--max-pool-memory", "lots"], "max-pool-memory"),
    ],
)
def test_bad_combinations_are_one_line_and_exit_2(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.load_config(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err, err


def test_the_bounds_default_to_the_workers_started() -> None:
    assert Bounds.of(Config(workers=3)) == Bounds(3, 3, 30.0, 4)
    assert not Bounds.of(Config(workers=3)).scaling
    cfg = cli.load_config(["-w", "2", "--max-workers", "6", "--min-workers", "1"])
    assert Bounds.of(cfg) == Bounds(1, 6, 30.0, 4) and Bounds.of(cfg).scaling
    cfg = cli.load_config(["--warmup", "/", "--warmup", "/health?deep=1"])
    assert cfg.warmup == ("/", "/health?deep=1")
    assert cli.load_config(["--max-pool-memory", "1G"]).max_pool_memory == 1 << 30
