"""The joblib sweep's signal hand-over (robustai.cli.sweep_signals) in the launching process:
the end-to-end SIGTERM test is in tests/integration/test_resume.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from robustai.cli import sweep_signals


def _config(tmp_path: Path, launcher: str) -> object:
    return OmegaConf.create(
        {
            "hydra": {
                "launcher": {"_target_": launcher},
                "sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"},
                "job": {"name": "train"},
                "sweep": {"dir": str(tmp_path)},
            }
        }
    )


def test_the_members_folder_is_named_to_child_processes_during_a_joblib_sweep_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweep run in-process (from a notebook, a test) left $ROBUSTAI_SWEEP_SIGNALS set, and
    every process it started afterwards inherited it as if it were a member."""
    monkeypatch.delenv(sweep_signals.ENV, raising=False)
    callback = sweep_signals.SweepSignals()
    joblib = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    callback.on_multirun_start(_config(tmp_path, joblib))
    try:
        value = os.environ.get(sweep_signals.ENV, "")
        assert value.startswith(f"{os.getpid()}:")
        child = subprocess.run(
            [sys.executable, "-c", f"import os; print(os.environ.get('{sweep_signals.ENV}'))"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert child.stdout.strip() == value  # a worker started now is told where to register
    finally:
        callback.on_multirun_end(_config(tmp_path, joblib))
    assert sweep_signals.ENV not in os.environ
    assert {s: signal.getsignal(s) for s in handlers} == handlers
    # another launcher: no folder named, no handler changed
    callback.on_multirun_start(_config(tmp_path, "hydra._internal.core_plugins.basic_launcher.X"))
    assert sweep_signals.ENV not in os.environ
    assert {s: signal.getsignal(s) for s in handlers} == handlers
    callback.on_multirun_end(_config(tmp_path, "x"))


def test_an_interrupted_evaluation_sweep_is_run_again_not_resumed(tmp_path: Path) -> None:
    """An evaluation keeps no checkpoint: its interrupted sweep said to "resume the sweep" and
    that each member "saved a checkpoint", as a training sweep's does."""
    evaluate = sweep_signals._Sweep(command="evaluate", sweep_dir=tmp_path, search=False)
    assert sweep_signals._resume(evaluate) == (
        f"run the same command again with hydra.sweep.dir={tmp_path}"
    )
    train = sweep_signals._Sweep(command="train", sweep_dir=tmp_path, search=False)
    assert sweep_signals._resume(train) == (
        f"resume the sweep with the same command and hydra.sweep.dir={tmp_path}"
    )
