"""A Hydra callback that lets one process at a time work in a run folder.

Two commands given the same ``hydra.run.dir`` (or two started within the same second, whose
time-stamped folders coincide) would otherwise both write there: interleaved logs, duplicate
TensorBoard series, and the later one's ``.hydra/`` record over the earlier one's. The lock is
taken before anything is written into the folder and released when the job ends (or the process
dies); it is an advisory ``flock`` on the folder itself, so no file is added to the run folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from robustai.cli.common import fail
from robustai.distributed import process_rank

#: folder -> descriptor holding its lock, in this process. A job ended by an exception (Ctrl-C
#: in the final evaluation, say) never reaches on_job_end; a later job of the same process in
#: that folder (the resume a test or notebook runs next) takes the lock over instead of being
#: refused by its own process's leftover.
_HELD: dict[str, int] = {}


class RunLock(Callback):
    """Listed first among the callbacks: a refused job has written nothing yet."""

    def __init__(self) -> None:
        self._key: str | None = None
        self._sweep_key: str | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """A second sweep into a running sweep's folder is refused before its sweeper writes
        multirun.yaml over the first one's (its members would be refused one by one later).
        A member whose folder is the sweep folder itself takes the lock over."""
        sweep_dir = Path(str(config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)  # as the sweeper would, a moment later
        self._sweep_key = _lock(
            sweep_dir,
            str(config.hydra.job.name),
            f"hydra.sweep.dir={sweep_dir} is in use by another sweep; wait for it to end, or"
            " give another hydra.sweep.dir",
        )

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        _release(self._sweep_key)
        self._sweep_key = None

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if process_rank() > 0:  # the ranks of one DDP job share rank 0's folder
            return
        run_dir = Path(str(config.hydra.runtime.output_dir))
        self._key = _lock(
            run_dir,
            str(config.hydra.job.name),
            f"{run_dir} is in use by another run; wait for it to end, or give another"
            f" {_folder_key(config)}",
        )

    def on_job_end(self, config: DictConfig, job_return: Any = None, **kwargs: Any) -> None:
        _release(self._key)  # closing the descriptor releases its lock
        self._key = None


def _lock(folder: Path, command: str, busy: str) -> str | None:
    """Hold an exclusive advisory lock on ``folder`` (a lock this process left there is taken
    over); where another process holds it, ``busy`` is the one line and exit status 2. Returns
    the lock's key, or None where the platform has no flock."""
    try:
        import fcntl
    except ImportError:  # not on this platform: no lock
        return None
    key = os.path.realpath(folder)
    leftover = _HELD.pop(key, None)
    if leftover is not None:
        os.close(leftover)
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        fail(command, busy)
    _HELD[key] = fd
    return key


def _release(key: str | None) -> None:
    fd = _HELD.pop(key, None) if key is not None else None
    if fd is not None:
        os.close(fd)


def _folder_key(config: DictConfig) -> str:
    """The setting that names the folder: a sweep member's is under hydra.sweep.dir, where
    another hydra.run.dir would change nothing."""
    from hydra.types import RunMode

    return "hydra.sweep.dir" if config.hydra.mode == RunMode.MULTIRUN else "hydra.run.dir"
