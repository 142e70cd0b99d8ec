"""A spooled body's file travels with its REQUEST frame (maitred.link.files): in order, even
when the link's socket is full and frames wait in the front."""

from __future__ import annotations

import array
import asyncio
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from maitred import link
from maitred.front import dispatcher
from maitred.front.main import new_event_loop

HEADERS = [(b"Host", b"h")]
# Past the link's send buffer, which Linux doubles: the transport must hold some of it.
BIG = 4 * dispatcher.LINK_SEND_BUFFER
SPOOLED = b"the spooled body" * 1000


def request_frame(rid: int, body: bytes, spooled: bool) -> list[bytes]:
    return link.encode_request(
        rid, [body], b"POST", b"/", "1.1", HEADERS, b"", spooled,
        "1.2.3.4", "1", "127.0.0.1", "80", "http", 0.0, "", "", "",
    )  # fmt: skip


def read_requests(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """(rid, body read from its file or its frame) of the first `count` REQUESTs."""
    receiver = link.Receiver(sock)
    reader = link.FrameReader(receiver.recv_into)
    got: list[tuple[int, bytes]] = []
    while len(got) < count:
        for kind, rid, payload in reader.read():
            request = link.decode(kind, payload)
            assert isinstance(request, link.Request)
            if request.spooled:
                with open(receiver.take(), "rb") as body:
                    got.append((rid, body.read()))
            else:
                got.append((rid, request.body))
    assert not receiver.files
    return got


@pytest.mark.parametrize("make_loop", [asyncio.new_event_loop, new_event_loop])
def test_a_file_waits_behind_what_a_full_link_holds(
    tmp_path: Path, make_loop: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    spool = tmp_path / "body"
    spool.write_bytes(SPOOLED)
    fd = os.open(spool, os.O_RDONLY)
    spool.unlink()
    front, worker = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    loop = make_loop()
    conn = dispatcher.WorkerConnection(dispatcher.Dispatcher(loop))
    big = os.urandom(BIG)

    async def send() -> None:
        await loop.connect_accepted_socket(lambda: conn, front)
        try:
            await check_order()
        finally:
            conn.close()
            await asyncio.sleep(0.01)  # the transport closes

    async def check_order() -> None:
        conn.send(*request_frame(1, big, False))  # fills the socket; the transport keeps the rest
        await asyncio.sleep(0.05)
        assert conn.transport is not None and conn.transport.get_write_buffer_size()
        conn._files.append(fd)  # as start() does for a spooled body
        conn.send(*request_frame(2, b"", True))
        await asyncio.sleep(0.05)
        assert conn._files == [fd]  # held: its bytes must not pass the ones waiting
        received: list[tuple[int, bytes]] = []
        reading = threading.Thread(target=lambda: received.extend(read_requests(worker, 2)))
        reading.start()
        while conn._files or reading.is_alive():
            await asyncio.sleep(0.01)
        assert received == [(1, big), (2, SPOOLED)]

    try:
        loop.run_until_complete(asyncio.wait_for(send(), 30))
    finally:
        loop.close()
        worker.close()
    with pytest.raises(OSError):
        os.fstat(fd)  # the front's copy is closed once sent


def test_files_cut_short_by_the_kernel_stop_the_link(monkeypatch: pytest.MonkeyPatch) -> None:
    """More files than the reader made room for (the kernel says MSG_CTRUNC): the ones cut
    off are lost, so the link cannot go on."""
    from maitred.link import files

    monkeypatch.setattr(files, "ANCILLARY_SIZE", socket.CMSG_SPACE(array.array("i").itemsize))
    front, worker = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with front, worker, open(os.devnull, "rb") as null:
        # Three: the room for one is rounded up to a multiple of 8 bytes, room for two.
        link.send_with_files(front.fileno(), [b"x"], [null.fileno()] * 3)
        receiver = link.Receiver(worker)
        with pytest.raises(link.ProtocolViolation, match="files with one write"):
            receiver.recv_into(memoryview(bytearray(16)))
        receiver.close()
