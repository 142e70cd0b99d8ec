"""The unit and socket files of docs/systemd.md, as systemd itself reads them.

`systemd-analyze verify` (Debian's systemd package) loads them as systemd would and warns about
anything it would ignore: a misspelt key, a value it cannot parse. The files are checked as a
reader of the docs installs them, with the installed maitred put where the example names a
virtualenv's (verify checks that the command exists); on a systemd older than 253, with the
two lines the docs give for it instead of Type=notify-reload, which that systemd cannot parse.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs" / "systemd.md"
UNIT_BLOCK = re.compile(r"^## /etc/systemd/system/(\S+)\n\n```ini\n(.*?)^```", re.M | re.S)
EXAMPLE_COMMAND = "/srv/mysite/venv/bin/maitred"
NOTIFY_RELOAD_SINCE = 253  # the systemd release that knows Type=notify-reload
OLDER_SYSTEMD = {  # what docs/systemd.md says to write before that release
    "Type=notify-reload\n": "#Type=notify-reload\n",
    "#Type=notify\n": "Type=notify\n",
    "#ExecReload=": "ExecReload=",
}
VERIFY_TIMEOUT = 60.0

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze (Debian's systemd package) is not installed",
)


def systemd_version() -> int:
    done = subprocess.run(
        ["systemd-analyze", "--version"], capture_output=True, text=True, check=True
    )
    match = re.match(r"systemd (\d+)", done.stdout)
    assert match is not None, done.stdout
    return int(match.group(1))


def documented_units(directory: Path) -> list[Path]:
    """The files of docs/systemd.md, written to `directory` as this machine's systemd needs."""
    older = systemd_version() < NOTIFY_RELOAD_SINCE
    written = []
    for name, text in UNIT_BLOCK.findall(DOCS.read_text()):
        text = text.replace(EXAMPLE_COMMAND, sys.executable)
        for old, new in OLDER_SYSTEMD.items() if older and name.endswith(".service") else ():
            assert old in text, f"docs/systemd.md no longer has {old!r} in {name}"
            text = text.replace(old, new)
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written


def test_the_documented_unit_and_socket_files_load_without_a_warning(tmp_path: Path) -> None:
    units = documented_units(tmp_path)
    assert sorted(p.name for p in units) == ["maitred.service", "maitred.socket"]
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=VERIFY_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0 and done.stderr == "" and done.stdout == "", done
