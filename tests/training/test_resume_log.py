"""The resume log line counts epochs as the rest of the log does (from 1)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from torch import nn

from robustai.cli import pipeline
from robustai.cli.common import config_dir
from robustai.cli.preflight import preflight
from robustai.config import TrainConfig, to_train_config
from robustai.training import save_checkpoint
from robustai.training.trainer import TrainingInterrupted


def _cfg(resume: Path) -> TrainConfig:
    """The default run's config, as the CLI composes it, resuming from ``resume``."""
    out: list[TrainConfig] = []
    preflight(config_dir(), "train", [], lambda c: out.append(to_train_config(c)))
    out[0].trainer.resume = str(resume)
    return out[0]


@pytest.mark.parametrize(
    ("step", "expected"), [(9, "at epoch 2, step 9"), (0, "at the end of epoch 1")]
)
def test_resume_names_the_epoch_as_the_interrupt_did(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, step: int, expected: str
) -> None:
    run = tmp_path / "run"
    cfg = _cfg(run)
    model = nn.Linear(2, 2)
    # One epoch done, then (for step > 0) stopped mid-way through the second, as a Ctrl-C does.
    save_checkpoint(
        run / pipeline.CHECKPOINT_DIR,
        {"model": model},
        epoch=1,
        step=step,
        info={"config": pipeline.resume_fingerprint(cfg)},
    )
    if step:
        assert str(TrainingInterrupted(1, step)) == "interrupted at epoch 2, step 9"
    with caplog.at_level(logging.INFO, logger=pipeline.log.name):
        pipeline.resume(cfg, tmp_path / "elsewhere", {"model": nn.Linear(2, 2)})
    (line,) = [r.getMessage() for r in caplog.records if "resumed from" in r.getMessage()]
    assert line.endswith(expected), line
