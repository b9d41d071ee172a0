"""Stopping a sweep whose members run in worker processes (``hydra/launcher=joblib``).

SIGTERM to the launching process alone (a scheduler's, or ``kill``) ended it and left the
workers training as orphans; SIGINT made joblib kill them mid-step. While such a sweep runs,
the launching process instead forwards SIGINT/SIGTERM to the members that are running, waits
until each has finished its step, saved a checkpoint and said how to resume (as a single run
does), and exits with 128 + the signal; members not started yet are not started.

Only workers running a member are signalled: an idle worker would die of the signal, and joblib
would then kill the busy ones. The members say which they are through a private folder named in
``$ROBUSTAI_SWEEP_SIGNALS`` (``<pid of the launching process>:<folder>``): one empty file per
running member, named by its pid.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from robustai.cli.common import fail

log = logging.getLogger(__name__)

ENV = "ROBUSTAI_SWEEP_SIGNALS"
STOP_FILE = "stop"  # in the folder once a signal came: members not started yet do not start
_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# A member that got the signal itself too (Ctrl-C in a terminal, a scheduler that signals every
# process of the job) takes the forwarded one, this soon after, as the same request.
REPEAT_WINDOW_S = 2.0


class NotStarted(BaseException):
    """A member whose sweep was stopped before it began: it ends without writing anything."""


@dataclass
class _Sweep:
    """The launching process's side of one sweep."""

    command: str
    sweep_dir: Path
    search: bool  # an Optuna search: its trials resume one by one, not as a sweep
    previous: dict[int, Any] = field(default_factory=dict)
    signum: int | None = None
    ending: bool = False  # the members have stopped: this process is on its way out


_FOLDER: Path | None = None  # this process's member folder, kept for its lifetime
_ACTIVE: _Sweep | None = None


def _is_joblib(config: DictConfig) -> bool:
    target = str(config.hydra.launcher.get("_target_", ""))
    return target.startswith("hydra_plugins.hydra_joblib_launcher.")


def _folder() -> Path:
    """The member folder, made once per process: a worker that joblib reuses for a later sweep
    of the same process still names it. Removed when the process ends."""
    global _FOLDER
    if _FOLDER is None:
        import atexit

        _FOLDER = Path(tempfile.mkdtemp(prefix="robustai-sweep-"))
        atexit.register(shutil.rmtree, _FOLDER, ignore_errors=True)
    return _FOLDER


def _members_folder() -> Path | None:
    """In a worker: the folder of the launching process (its parent), else None."""
    value = os.environ.get(ENV, "")
    owner, _, path = value.partition(":")
    if not path or not owner.isdigit() or int(owner) != os.getppid():
        return None
    folder = Path(path)
    return folder if folder.is_dir() else None


def _running(folder: Path) -> set[int]:
    """Pids of the members running now (a member whose process died no longer counts)."""
    pids = set()
    for entry in folder.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            entry.unlink(missing_ok=True)
            continue
        except PermissionError:
            pass
        pids.add(pid)
    return pids


def _forward(folder: Path, signum: int, done: set[int]) -> set[int]:
    """Send ``signum`` to each running member not in ``done``; returns the running ones."""
    running = _running(folder)
    for pid in sorted(running - done):
        with suppress(ProcessLookupError):
            os.kill(pid, signum)
        done.add(pid)
    return running


def _resume(sweep: _Sweep) -> str:
    if sweep.command == "evaluate":  # evaluations keep nothing to resume: they start over
        where = shlex.quote(f"hydra.sweep.dir={sweep.sweep_dir}")
        return f"run the same command again with {where}"
    if sweep.search:
        return "resume each interrupted trial alone, as its line above says"
    where = shlex.quote(f"hydra.sweep.dir={sweep.sweep_dir}")
    return f"resume the sweep with the same command and {where}"


def _handler(signum: int, frame: FrameType | None) -> None:
    """First signal: forward it to the running members and wait until each has saved its
    checkpoint; then end the sweep. A second one: forward it and end now (joblib then kills the
    workers, whatever they were doing)."""
    sweep, folder = _ACTIVE, _FOLDER
    if sweep is None or folder is None:  # pragma: no cover - restored before the sweep ended
        return
    name = signal.Signals(signum).name
    if sweep.ending:  # the sweep is over and said so; joblib is putting its workers away
        return
    if sweep.signum is not None:
        _forward(folder, signum, set())
        fail(sweep.command, f"{name} again: sweep aborted; {_resume(sweep)}", 128 + signum)
    sweep.signum = signum
    (folder / STOP_FILE).touch()
    log.warning(
        "%s received: the running sweep members %s (again to abort)",
        name,
        "stop" if sweep.command == "evaluate" else "finish their step and save a checkpoint",
    )
    signalled: set[int] = set()
    while _forward(folder, signum, signalled):
        time.sleep(0.05)
    sweep.ending = True
    stopped = len(signalled)
    kept = "what to do" if sweep.command == "evaluate" else "what it kept"
    said = f"{stopped} running member(s) stopped, each saying above {kept}; " if stopped else ""
    fail(sweep.command, f"sweep interrupted ({name}); {said}{_resume(sweep)}", 128 + signum)


def release() -> None:
    """Put the launching process's signal handlers back (the sweep ended, or ended early)."""
    global _ACTIVE
    sweep, _ACTIVE = _ACTIVE, None
    if sweep is None:
        return
    for s, h in sweep.previous.items():
        signal.signal(s, h)
    # set for the sweep only: processes this one starts later (a sweep run from a notebook, then
    # other work) are no members
    os.environ.pop(ENV, None)
    if _FOLDER is not None:
        (_FOLDER / STOP_FILE).unlink(missing_ok=True)


class SweepSignals(Callback):
    """Hydra callback: the launching process of a joblib sweep hands SIGINT/SIGTERM to the
    running members (see the module's docstring); a member of a stopped sweep does not start."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global _ACTIVE
        release()
        if not _is_joblib(config) or threading.current_thread() is not threading.main_thread():
            return
        folder = _folder()
        (folder / STOP_FILE).unlink(missing_ok=True)
        os.environ[ENV] = f"{os.getpid()}:{folder}"  # inherited by the workers it starts
        sweeper = str(config.hydra.sweeper.get("_target_", ""))
        _ACTIVE = _Sweep(
            command=str(config.hydra.job.name),
            sweep_dir=Path(str(config.hydra.sweep.dir)).absolute(),
            search="optuna" in sweeper,
            previous={s: signal.getsignal(s) for s in _SIGNALS},
        )
        for s, h in _ACTIVE.previous.items():
            if h is not signal.SIG_IGN:  # ignored from the start (a shell's background job)
                signal.signal(s, _handler)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        release()

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Listed first among the callbacks: a member of a stopped sweep leaves no folder."""
        folder = _members_folder()
        if folder is None or not (folder / STOP_FILE).exists():
            return
        run_dir = Path(str(config.hydra.runtime.output_dir))
        with suppress(OSError):
            run_dir.rmdir()  # Hydra made it a moment ago; nothing else is in it yet
        raise NotStarted(f"{run_dir}: the sweep was stopped before this member started")


@contextmanager
def member() -> Iterator[None]:
    """Around a member's task in a worker of a joblib sweep: while it runs, the launching process
    forwards it SIGINT/SIGTERM, which it may also get directly: the same signal twice at once is
    one request. Elsewhere (a single run, another launcher) it does nothing."""
    folder = _members_folder()
    entry = folder / str(os.getpid()) if folder is not None else None
    if entry is None:
        yield
        return
    from robustai.training.signals import one_request_per_signal  # loads torch: not at start-up

    with one_request_per_signal(REPEAT_WINDOW_S):
        try:
            entry.touch()
        except OSError:  # the sweep is over; nothing will forward a signal
            entry = None
        try:
            yield
        finally:
            if entry is not None:
                entry.unlink(missing_ok=True)
