"""Atomic file writes and content hashes, shared by every part that writes into a run folder.

A file is written to a temporary name in its own folder, flushed to disk and renamed over the
target, so a reader (or a process killed mid-write) never sees half a file and a good file is
never replaced by a broken one.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from robustai.errors import RunFailure


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary path beside ``path``, fsync it, rename it to ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        try:
            write(Path(tmp))
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        except Exception as e:
            if is_disk_full(e):
                raise DiskFull(
                    f"no space left on the device of {path.parent} (writing {path.name}); free"
                    " some space, then resume the run with trainer.resume=<its folder> (its"
                    " last complete checkpoint is kept)"
                ) from e
            raise
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give what open() would
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class DiskFull(RunFailure):
    """A write failed for want of space (or quota): one line, exit status 1, not a traceback."""


def is_disk_full(e: BaseException) -> bool:
    """ENOSPC / EDQUOT, from Python's own writes or in the words of a library that reports it
    as text (safetensors: "No space left on device (os error 28)")."""
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(e)
    return "No space left on device" in text or "Disk quota exceeded" in text


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask sets it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_json(path: Path, payload: Any, indent: int | None = 2) -> None:
    text = json.dumps(payload, indent=indent, allow_nan=True)
    write_text(path, text + "\n" if indent is not None else text)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
