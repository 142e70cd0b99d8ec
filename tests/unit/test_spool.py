"""A request body that cannot be written to its temp file (front/spool.py): one error line,
the partial file removed, and the status the client gets: 500, or 503 when out of descriptors."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from maitred.front import spool
from maitred.front.spool import Body, SpoolError

BUFFER = 1024
PAST_BUFFER = b"x" * (2 * BUFFER)
ENOSPC = OSError(errno.ENOSPC, "No space left on device")


class FullDisk:
    """A spool file on a disk that just filled up: writes fail, and so does the final flush."""

    def __init__(self, real: Any, fail_writes: bool = True) -> None:
        self.real = real
        self.name = real.name
        self.fail_writes = fail_writes

    def write(self, data: bytes) -> int:
        if self.fail_writes:
            raise ENOSPC
        return len(data)  # held in the buffer: the disk is only asked at the flush

    def flush(self) -> None:
        raise ENOSPC

    def close(self) -> None:
        self.real.close()
        raise ENOSPC


def spooled(tmp_path: Path, fail_writes: bool = True) -> tuple[Body, Path]:
    body = Body(BUFFER, str(tmp_path))
    body.add(PAST_BUFFER)
    path = Path(body.file.name)
    body.file = FullDisk(body.file, fail_writes)
    return body, path


def test_a_write_that_fails_mid_body_is_a_500_and_the_file_goes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    body, path = spooled(tmp_path)
    with pytest.raises(SpoolError) as failed:
        body.add(b"more")
    assert failed.value.status == 500
    assert not path.exists() and body.file is None
    (record,) = caplog.records
    assert record.levelno == logging.ERROR
    assert record.getMessage() == (
        f"cannot spool a request body in {tmp_path}: [Errno 28] No space left on device"
    )


def test_a_flush_that_fails_when_the_body_ends_is_a_500_and_the_file_goes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    body, path = spooled(tmp_path, fail_writes=False)
    body.add(b"more")  # buffered
    with pytest.raises(SpoolError) as failed:
        body.end()
    assert failed.value.status == 500
    assert not path.exists()
    assert len(caplog.records) == 1
    body.discard()  # what the connection does next: nothing left to do, nothing raised


def test_a_temp_dir_that_vanished_is_a_500(tmp_path: Path) -> None:
    body = Body(BUFFER, str(tmp_path / "gone"))
    with pytest.raises(SpoolError) as failed:
        body.add(PAST_BUFFER)
    assert failed.value.status == 500


def test_out_of_descriptors_is_a_503(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_descriptor(**kwargs: Any) -> Any:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(spool.tempfile, "NamedTemporaryFile", no_descriptor)
    body = Body(BUFFER, str(tmp_path))
    with pytest.raises(SpoolError) as failed:
        body.add(PAST_BUFFER)
    assert failed.value.status == 503
    assert list(tmp_path.iterdir()) == []


def test_a_body_that_ends_well_stays_for_the_worker(tmp_path: Path) -> None:
    body = Body(BUFFER, str(tmp_path))
    body.add(PAST_BUFFER)
    body.end()
    chunks, fd = body.finish()
    assert chunks == [] and os.pread(fd, 2 * len(PAST_BUFFER), 0) == PAST_BUFFER
    assert list(tmp_path.iterdir()) == []
    body.discard()  # the descriptor is the caller's now
    os.close(fd)
