"""Instructions a front spends per request, counted by callgrind: a figure noise cannot move.

Theory of operation
-------------------
On a shared 2-core machine req/s and CPU seconds move by a third between runs, too much to
see a change of a few percent in the front. Instruction counts do not move: this runs one
front alone (no master, no workers: static files and the front's own answers need neither)
under ``valgrind --tool=callgrind`` with instrumentation off, warms it up, switches
instrumentation on, sends an exact number of keep-alive requests from one client, switches it
off and dumps. The figure is the front's user-space instructions (Python, uvloop, llhttp)
divided by the number of requests; system calls are the kernel's and are not counted.
``--close`` sends each request on a connection of its own (``Connection: close``): the
difference from a keep-alive figure is what a new connection costs the front, e.g. with
``--path /healthz -- --health-path /healthz`` (an answer the front gives itself).

callgrind reads its commands when the process next runs, and an idle front sleeps in epoll
until its sweep timer (one second): every switch waits ``COMMAND_WAIT`` seconds for that, so
a few sweeps are counted too (a few hundred instructions per request at 2,000 requests).

``--hit`` counts a response-cache hit: the lone front has no workers to fill its cache, so
:func:`solo_front` stores one entry itself, through the store's own API, as the app would
have it stored (``Cache-Control: s-maxage=60``, a body of ``HIT_BODY_SIZE`` bytes) for
``--path`` on this client's Host, before the front serves; every request then hits it. A
request that missed would go to a worker that never comes: the client would wait, so the
last answer is checked to be a hit (its ``Age`` line).

``--tree`` measures another checkout, such as a git worktree of an older commit, so two
versions are compared with the same client and files::

    git worktree add /tmp/old e430dd6
    python -m bench.frontcost --tree /tmp/old
    python -m bench.frontcost            # this checkout

Run from the repository root; the child runs :func:`solo_front` with that tree's ``src`` first
on its path. Loopback only; the front is stopped by its pid.
"""

from __future__ import annotations

import argparse
import inspect
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import types

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = "127.0.0.1"
FILE_SIZE = 4096  # the bench's static-4k file
WARM_UP = 300  # requests before counting: caches filled, code paths specialised
REQUESTS = 2000
COMMAND_WAIT = 3.0  # seconds for callgrind to act on a command (see the docstring)
START_TIMEOUT = 600.0  # a front under callgrind on a busy machine starts in minutes
RECV_SIZE = 1 << 20
HIT_BODY_SIZE = 4096  # the stored body of --hit, as large as the static file
HIT_CACHE_SIZE = "16m"  # --cache-size of --hit: room for the one entry
HIT_LINES = (b"Content-Type: application/octet-stream", b"Cache-Control: s-maxage=60")


def solo_front(portfile: str, argv: list[str], hit: str = "") -> int:
    """Run one front in this process on a new listener; its port goes to `portfile`. With
    `hit` (a request target), its cache holds an entry for it before it serves."""
    from maitred import cli
    from maitred.front import main as front_main

    cfg = cli.load_config(argv)
    listener = socket.create_server((HOST, 0), backlog=128)
    listener.setblocking(False)
    if hit:
        seed_front(front_main, hit, listener.getsockname()[1])
    link_dir = tempfile.mkdtemp(prefix="frontcost-")
    link = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # no worker ever joins
    link.bind(os.path.join(link_dir, "link"))
    link.listen()
    link.setblocking(False)
    with open(portfile + ".tmp", "w") as out:
        out.write(str(listener.getsockname()[1]))
    os.rename(portfile + ".tmp", portfile)
    run = front_main.run_front
    try:
        if "links" in inspect.signature(run).parameters:
            from maitred import apps  # one front, several apps: after e430dd6

            found = apps.resolve(cfg)
            links = {app.name: link for app in found}
            return run(cfg, [listener], links, os.getppid(), found=found, protocols=("http",))
        return run(cfg, [listener], link, os.getppid())  # type: ignore[arg-type]  # before apps
    finally:
        shutil.rmtree(link_dir, ignore_errors=True)


def seed_front(front_main: types.ModuleType, target: str, port: int) -> None:
    """Make the front that `front_main.run_front` builds store `target`'s response in each
    app's cache as it starts serving (see the module docstring)."""
    base = front_main.Front

    class SeededFront(base):  # type: ignore[misc,valid-type]
        async def serve(self, *args: object, **kwargs: object) -> object:
            for cache in self.router.caches.values():
                store_hit(cache, target.encode(), f"{HOST}:{port}".encode())
            return await super().serve(*args, **kwargs)

    front_main.Front = SeededFront


def store_hit(cache: object, target: bytes, host: bytes) -> None:
    """Store in `cache` (a maitred.front.cache.ResponseCache) the answer to a GET of `target`
    on `host`, made as a fetch from the app would make it."""
    from maitred.front.cachefetch import replayed_lines
    from maitred.front.cachestore import Stored
    from maitred.http.caching import Policy, policy

    now = time.time()
    response = {b"cache-control": [b"s-maxage=60"]}
    decided = policy(b"GET", 200, {}, response, now, now)
    assert isinstance(decided, Policy), decided
    replayed, not_modified = replayed_lines(list(HIT_LINES), b"x-request-id")
    stored = Stored(
        200, b"HTTP/1.1 200 OK\r\n", replayed, os.urandom(HIT_BODY_SIZE), b"", b"",
        decided, cache.loop.time(), frozenset(), not_modified=not_modified,  # type: ignore[attr-defined]
    )  # fmt: skip
    primary = ("http", host, cache.app, target)  # type: ignore[attr-defined]
    assert cache.store.put(primary, {}, stored)  # type: ignore[attr-defined]


def fetch(port: int, path: str, count: int, close: bool = False) -> bytes:
    """`count` GETs of `path` on one keep-alive connection, one at a time, as wrk sends them;
    with `close`, each on a connection of its own with ``Connection: close``, read to its end.
    The last answer's head (empty with `close`)."""
    if close:
        fetch_closing(port, path, count)
        return b""
    last = b""
    request = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()
    with socket.create_connection((HOST, port)) as sock:
        buffered = b""
        for _ in range(count):
            sock.sendall(request)
            while True:
                end = buffered.find(b"\r\n\r\n")
                if end >= 0:
                    length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", buffered[: end + 2])
                    total = end + 4 + (int(length.group(1)) if length else 0)
                    if len(buffered) >= total:
                        last, buffered = buffered[:end], buffered[total:]
                        break
                data = sock.recv(RECV_SIZE)
                if not data:
                    raise SystemExit("the front closed the connection")
                buffered += data
    return last


def fetch_closing(port: int, path: str, count: int) -> None:
    """`count` GETs of `path`, each on a new connection that the front closes after answering."""
    request = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n"
    for _ in range(count):
        with socket.create_connection((HOST, port)) as sock:
            sock.sendall(request.encode())
            while sock.recv(RECV_SIZE):
                pass


def measure(
    tree: str,
    path: str,
    count: int,
    extra: list[str],
    work: str,
    close: bool = False,
    hit: bool = False,
) -> int:
    """Instructions per request of a front of `tree` answering `path` (with `hit`, from
    its response cache)."""
    files = os.path.join(work, "files")
    os.makedirs(files, exist_ok=True)
    with open(os.path.join(files, "4k.bin"), "wb") as out:
        out.write(os.urandom(FILE_SIZE))
    portfile = os.path.join(work, "port")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(tree, "src"), REPO_ROOT]))
    cached = ["--cache-size", HIT_CACHE_SIZE] if hit else []
    argv = ["-w", "1", "--static", f"/static={files}", *cached, *extra, "bench.app:application"]
    seeded = path if hit else ""
    code = (
        "import sys; from bench.frontcost import solo_front; "
        f"sys.exit(solo_front({portfile!r}, {argv!r}, {seeded!r}))"
    )
    front = under_callgrind(code, env, work)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not os.path.exists(portfile):
            if front.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the front did not start")
            time.sleep(0.5)
        with open(portfile) as inp:
            port = int(inp.read())
        fetch(port, path, WARM_UP, close)
        _control(front.pid, "-i", "on")
        last = fetch(port, path, count, close)
        _control(front.pid, "-i", "off")
        _control(front.pid, "-d")
        if hit and b"\r\nage: " not in last.lower():
            raise SystemExit(f"not a cache hit: {last!r}")
    finally:
        front.send_signal(signal.SIGTERM)
        front.wait(START_TIMEOUT)
    return total(last_dump(work)) // count


def under_callgrind(code: str, env: dict[str, str], work: str) -> subprocess.Popen[bytes]:
    """`python -c code` under callgrind, instrumentation off; its dumps go to `work`."""
    out = os.path.join(work, "callgrind.out")
    return subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
         sys.executable, "-c", code],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def last_dump(work: str) -> str:
    """The path of callgrind's last dump in `work`."""
    dumps = sorted(name for name in os.listdir(work) if name.startswith("callgrind.out."))
    return os.path.join(work, dumps[-1])


def total(dump_path: str) -> int:
    """The instructions a callgrind dump counted."""
    with open(dump_path) as dump:
        totals = re.search(r"^totals: (\d+)", dump.read(), re.M)
    if totals is None:
        raise SystemExit("callgrind wrote no totals")
    return int(totals.group(1))


def _control(pid: int, *command: str) -> None:
    subprocess.run(["callgrind_control", *command, str(pid)], capture_output=True, check=True)
    time.sleep(COMMAND_WAIT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", default=REPO_ROOT, help="the checkout to measure")
    parser.add_argument(
        "--path", help="what each request asks for (default: the 4k file; with --hit, /cached)"
    )
    parser.add_argument("--requests", type=int, default=REQUESTS)
    parser.add_argument(
        "--close", action="store_true", help="a new connection per request (Connection: close)"
    )
    parser.add_argument(
        "--hit", action="store_true", help="each request a hit of the front's response cache"
    )
    parser.add_argument("extra", nargs="*", help="more maitred options (after --)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed")
    if args.path is None:
        args.path = "/cached" if args.hit else "/static/4k.bin"
    with tempfile.TemporaryDirectory(prefix="frontcost-") as work:
        tree = os.path.abspath(args.tree)
        per_request = measure(
            tree, args.path, args.requests, args.extra, work, args.close, args.hit
        )
    mode = ", a new connection each" if args.close else ""
    what = "hit" if args.hit else "request"
    print(f"{args.tree} {args.path}{mode}: {per_request} instructions per {what}")


if __name__ == "__main__":
    main()
