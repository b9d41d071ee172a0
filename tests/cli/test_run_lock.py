"""One process at a time per run folder: a second command given a folder in use is refused in
one line before it writes anything there (it replaced the first run's .hydra/ record)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path


def train_while_locked(folder: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``robustai train *args`` while this process holds ``folder``'s lock, as a running
    command does."""
    fd = os.open(folder, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        return subprocess.run(
            [sys.executable, "-m", "robustai", "train", *args],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=cwd,
        )
    finally:
        os.close(fd)


def test_a_run_folder_in_use_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    record = run / ".hydra" / "overrides.yaml"
    record.write_text("- trainer.epochs=4\n")  # the record of the run holding the folder
    # as that run's process holds it
    proc = train_while_locked(run, "trainer.epochs=1", f"hydra.run.dir={run}", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [
        f"robustai train: error: {run} is in use by another run; wait for it to end, or give"
        " another hydra.run.dir"
    ]
    assert record.read_text() == "- trainer.epochs=4\n"
    assert [p.name for p in run.iterdir()] == [".hydra"]  # no train.log, not even an empty one


def test_a_sweep_member_folder_in_use_names_hydra_sweep_dir(tmp_path: Path) -> None:
    """hydra.run.dir does not move a sweep member: the way out is another hydra.sweep.dir."""
    sweep = tmp_path / "sweep"
    (sweep / "0").mkdir(parents=True)
    # as the running member 0 of another sweep holds it
    proc = train_while_locked(
        sweep / "0", "-m", "trainer.epochs=1", f"hydra.sweep.dir={sweep}", cwd=tmp_path
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [
        f"robustai train: error: {sweep / '0'} is in use by another run; wait for it to end, or"
        " give another hydra.sweep.dir"
    ]
    assert list((sweep / "0").iterdir()) == []


def test_a_sweep_folder_in_use_is_refused_before_multirun_yaml_is_written(tmp_path: Path) -> None:
    """A second sweep into a running sweep's folder: its sweeper wrote multirun.yaml over the
    running one's before the member locks refused its jobs."""
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    record = sweep / "multirun.yaml"
    record.write_text("hydra: {overrides: {task: [trainer.seed=0,1]}}\n")  # the running sweep's
    # as the running sweep's process holds it
    proc = train_while_locked(
        sweep,
        "-m",
        "trainer.seed=5,6",
        "trainer.epochs=1",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [
        f"robustai train: error: hydra.sweep.dir={sweep} is in use by another sweep; wait for it"
        " to end, or give another hydra.sweep.dir"
    ]
    assert record.read_text() == "hydra: {overrides: {task: [trainer.seed=0,1]}}\n"
    assert [p.name for p in sweep.iterdir()] == ["multirun.yaml"]
