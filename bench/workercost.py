"""Instructions a worker spends per request, counted by callgrind: a figure noise cannot move.

Theory of operation
-------------------
The worker's share of a request (the link's frames in and out, the hand-off from the reader
thread to an app thread, the environ, start_response, the app itself) is measured without a
front: this process plays the front on a link listener of its own and runs one real worker
(maitred.worker.main.Worker, its reader thread and its app threads) in a child under
``valgrind --tool=callgrind`` with instrumentation off. Once the worker says HELLO this sends
warm-up REQUEST frames, switches instrumentation on, sends an exact number of requests one at
a time (each after the previous one's END, FULL or ABORT, as a keep-alive client would),
switches it off and dumps. The figure is the worker's user-space instructions divided by the
number of requests; the front's work is not counted, nor are system calls.

callgrind reads its commands when the process next runs; the worker's main thread wakes every
second, so every switch waits a few seconds (bench.frontcost.COMMAND_WAIT), and a few
heartbeats are counted too.

``--tree`` measures another checkout (a git worktree of an older commit), so two versions are
compared with the same app and requests::

    git worktree add /tmp/old HEAD~1
    python -m bench.workercost --tree /tmp/old --path /hello
    python -m bench.workercost --path /hello

``--app`` names another WSGI app (``tests.apps.flaskapp:app``, with ``--path /``). The Django
page (``--path /django/``) uses a database this prepares as the benchmark does. Run from the
repository root; the worker is stopped by its pid.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import tempfile

from bench.frontcost import _control, last_dump, total, under_callgrind

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WARM_UP = 200  # requests before counting: caches filled, code paths specialised
REQUESTS = 1000
START_TIMEOUT = 600.0  # a worker importing Django under callgrind starts in minutes
HOST = "127.0.0.1"
ENDS = frozenset({5, 6, 7})  # END, FULL, ABORT (maitred.link.Kind): the thread is free


def solo_worker(link_path: str, app_spec: str, threads: int) -> int:
    """Run one worker of `app_spec` in this process, linked to `link_path`."""
    from maitred import cli
    from maitred.appload import load_app
    from maitred.worker.main import Worker

    cfg = cli.load_config(["--threads", str(threads), app_spec])
    _, status_fd = os.pipe()  # heartbeats for nobody: a few per second, far below a pipe's size
    return Worker(cfg, 1, link_path, load_app(app_spec), status_fd, os.getppid()).run()


def request_frame(rid: int, path: str) -> bytes:
    """A REQUEST as the front sends it for `GET path` from a keep-alive client."""
    from maitred import link

    headers = [(b"Host", f"{HOST}:8000".encode()), (b"User-Agent", b"wrk"), (b"Accept", b"*/*")]
    fields = (b"GET", path.encode(), "1.1", headers, b"", False, HOST, "40000", HOST, "8000",
              "http", 0.0, "", "", "")  # fmt: skip
    return b"".join(link.encode_request(rid, [], *fields))


def drive(sock: socket.socket, path: str, count: int, first_rid: int) -> dict[int, int]:
    """`count` requests one at a time; the frames of the last response, counted by type."""
    from maitred import link

    frames = link.FrameBuffer()
    kinds: dict[int, int] = {}
    for rid in range(first_rid, first_rid + count):
        sock.sendall(request_frame(rid, path))
        kinds = {}
        done = False
        while not done:
            data = sock.recv(1 << 20)
            if not data:
                raise SystemExit("the worker closed its link")
            for kind, got, _ in frames.feed(data):
                kinds[kind] = kinds.get(kind, 0) + 1
                done = done or (got == rid and kind in ENDS)
    return kinds


def measure(
    tree: str, app: str, path: str, count: int, threads: int, work: str
) -> tuple[int, str, str]:
    """Instructions per request of a worker of `tree`, the frames of one response, the dump."""
    link_path = os.path.join(work, "link")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(link_path)
    listener.listen()
    listener.settimeout(START_TIMEOUT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(tree, "src"), REPO_ROOT]))
    env.setdefault("BENCH_DJANGO_DB", _database(work))
    code = (
        "import sys; from bench.workercost import solo_worker; "
        f"sys.exit(solo_worker({link_path!r}, {app!r}, {threads}))"
    )
    worker = under_callgrind(code, env, work)
    try:
        sock, _ = listener.accept()
        with sock:
            sock.recv(1 << 16)  # HELLO
            drive(sock, path, WARM_UP, 1)
            _control(worker.pid, "-i", "on")
            kinds = drive(sock, path, count, WARM_UP + 1)
            _control(worker.pid, "-i", "off")
            _control(worker.pid, "-d")
    finally:
        worker.send_signal(signal.SIGQUIT)
        worker.wait(START_TIMEOUT)
        listener.close()
    from maitred import link

    frames = ", ".join(f"{link.kind_name(kind)} x{n}" for kind, n in sorted(kinds.items()))
    dump = last_dump(work)
    return total(dump) // count, frames, dump


def _database(work: str) -> str:
    from bench import machine

    return machine.prepare_database(work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", default=REPO_ROOT, help="the checkout to measure")
    parser.add_argument("--app", default="bench.app:application", help="the WSGI app")
    parser.add_argument("--path", default="/hello", help="what each request asks for")
    parser.add_argument("--requests", type=int, default=REQUESTS)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--keep", help="copy callgrind's dump here, for callgrind_annotate")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed")
    with tempfile.TemporaryDirectory(prefix="workercost-") as work:
        tree = os.path.abspath(args.tree)
        per_request, frames, dump = measure(
            tree, args.app, args.path, args.requests, args.threads, work
        )
        if args.keep:
            shutil.copy(dump, args.keep)
    print(f"{args.tree} {args.app} {args.path}: {per_request} instructions per request ({frames})")


if __name__ == "__main__":
    main()
