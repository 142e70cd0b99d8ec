"""Each process holds only what it uses: the front's modules live in the front alone, and the
master imports prometheus_client only for --stats-bind (idle memory: the master and the
workers would otherwise carry them for nothing)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import procs
from harness import CLI_TIMEOUT, ServerFactory, server_env

# The HTTP parser's C extension: only the front parses HTTP. Read from /proc/PID/maps, which
# lists every shared object a process has loaded, so this holds for a running server.
PARSER_EXTENSION = "httptools/parser/parser"
# What the master imports to run: the command line and the arbiter.
MASTER_MODULES = "import maitred.cli, maitred.arbiter"
# Modules only a front (asyncio, uvloop, the parser) or --stats-bind (prometheus_client) needs.
# The rate limits' table, shared memory the master makes for its fronts (front/limittable.py).
LIMITS_TABLE = "memfd:maitred-limits"
NOT_IN_MASTER = ("asyncio", "uvloop", "httptools", "prometheus_client", "maitred.front.main")
# Modules only a config file or an apps directory (the TOML reader) or a misspelled setting
# (difflib's suggestions) needs: the master reads them on demand, and every process forked from
# it would otherwise hold them too.
NOT_IN_MASTER_STARTED_FROM_ARGS = ("tomllib", "tomli", "difflib")
# What a front serving plain HTTP, with no cache, no password and no static mount, does not
# import: the front imports them only when a listener, --cache-size, auth_basic or --static
# asks for them.
FRONT_MODULES = "import maitred.cli, maitred.arbiter, maitred.front.main"
NOT_IN_PLAIN_FRONT = (
    "maitred.front.gateway",
    "maitred.gateway.uwsgi",
    "maitred.front.tls",
    "maitred.front.cache",
    "maitred.front.cachefetch",
    "maitred.htpasswd",
    "maitred.front.static",
    "mimetypes",
)


def maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def test_only_the_front_loads_the_http_parser(servers: ServerFactory) -> None:
    server = servers.start("hello", "--workers", "1")
    master = server.pid
    # Listening is said once the worker has imported the app: both children are there.
    (front,) = procs.children_titled(master, "maitred: front")
    (worker,) = procs.children_titled(master, "maitred: worker")
    assert PARSER_EXTENSION in maps(front)
    assert PARSER_EXTENSION not in maps(master)
    assert PARSER_EXTENSION not in maps(worker)


def test_only_the_master_and_the_fronts_map_the_limits_table(servers: ServerFactory) -> None:
    server = servers.start("hello", "--workers", "1", "--rate", "50r/s")
    master = server.pid
    (front,) = procs.children_titled(master, "maitred: front")
    (worker,) = procs.children_titled(master, "maitred: worker")
    assert LIMITS_TABLE in maps(master) and LIMITS_TABLE in maps(front)
    assert LIMITS_TABLE not in maps(worker)  # an app cannot write the fronts' counts


def imported(modules: str, names: tuple[str, ...]) -> list[str]:
    """Which of `names` a fresh interpreter holds once it ran `modules` (an import line)."""
    check = f"import sys; {modules}; print(*(m for m in {names!r} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", check],
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=True,
    )
    return result.stdout.split()


def test_the_master_imports_neither_the_front_nor_prometheus_client() -> None:
    assert imported(MASTER_MODULES, NOT_IN_MASTER) == []


def test_a_plain_front_imports_no_gateway_tls_cache_password_or_static_code() -> None:
    assert imported(FRONT_MODULES, NOT_IN_PLAIN_FRONT) == []


def test_a_master_configured_from_its_command_line_holds_no_toml_reader_nor_difflib(
    tmp_path: Path,
) -> None:
    """Settings from the command line and the environment alone, in a directory without a
    config file: what ``maitred --workers 4 app:application`` does before it forks."""
    load = f"config.load({{'app': 'app:application', 'workers': 4}}, {{}}, {str(tmp_path)!r})"
    modules = f"{MASTER_MODULES}; from maitred import config; {load}"
    assert imported(modules, NOT_IN_MASTER_STARTED_FROM_ARGS) == []
