"""A full disk while a run writes a file: one line saying which device and what to do, the
file that was there kept, no temporary file left behind."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from robustai.errors import RunFailure
from robustai.fileio import DiskFull, atomic_write


def _fail_with(exc: BaseException):
    def write(tmp: Path) -> None:
        tmp.write_bytes(b"partial")
        raise exc

    return write


@pytest.mark.parametrize(
    "exc",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        OSError(errno.EDQUOT, "Disk quota exceeded"),
        # safetensors reports it as text, in its own exception type
        RuntimeError("Error while serializing: IoError(No space left on device (os error 28))"),
    ],
)
def test_a_full_disk_is_one_line_and_keeps_the_old_file(tmp_path: Path, exc: Exception) -> None:
    target = tmp_path / "epoch-0002.safetensors"
    target.write_bytes(b"complete")
    with pytest.raises(DiskFull, match=r"no space left on the device of .* \(writing epoch-0002"):
        atomic_write(target, _fail_with(exc))
    assert isinstance(DiskFull("x"), RunFailure)  # the CLI's one line and exit status 1
    assert target.read_bytes() == b"complete"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_other_errors_pass_through(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bad tensor"):
        atomic_write(tmp_path / "x", _fail_with(ValueError("bad tensor")))
    assert not list(tmp_path.iterdir())
