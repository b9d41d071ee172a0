"""Which batch sizes a BatchNorm model can train on: measured from the model, not assumed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
from inprocess import robustai
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from robustai.cli.pipeline import batchnorm_min_batch
from robustai.models import build_model


@pytest.mark.parametrize(
    ("name", "shape", "need"),
    [
        ("preact_resnet18", (1, 8, 8), 2),  # its last BatchNorm sees a 1x1 feature map
        ("preact_resnet18", (3, 32, 32), 1),  # 4x4 there: one image has 16 values per channel
        ("small_cnn", (1, 8, 8), 1),  # no BatchNorm
    ],
)
def test_batch_of_one_needs_more_than_one_value_per_channel(
    name: str, shape: tuple[int, ...], need: int
) -> None:
    params = {"width": 4} if name == "preact_resnet18" else {}
    stats = {"mean": (0.5,) * shape[0], "std": (0.5,) * shape[0]}
    model = build_model(name, input_shape=shape, num_classes=3, **stats, **params)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert batchnorm_min_batch(model, torch.rand(1, *shape)) == need
    assert model.training  # its mode put back
    after = model.state_dict()  # and no running statistic moved
    assert all(torch.equal(before[k], after[k]) for k in before)
    model.train()
    with torch.no_grad():
        if need == 1:
            model(torch.rand(1, *shape))  # trains on one image
        else:
            with pytest.raises(ValueError, match="more than 1 value per channel"):
                model(torch.rand(1, *shape))


def _train(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    return robustai(
        "train", "data=synthetic", "model=preact_resnet18", "model.params.width=4", "attack=none",
        "evaluator.attacks=[]", "evaluator.sanity.enabled=false", "evaluator.curve.enabled=false",
        "trainer.progress=false", *overrides, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path,
    )  # fmt: skip


def test_the_schedule_counts_the_steps_the_loader_takes(tmp_path: Path) -> None:
    """383 training images in batches of 191: the last batch of one is left out (BatchNorm),
    so an epoch takes 2 steps, not 3; a one-cycle schedule sized for 3 would end a third of
    the way before its annealed end (the same happens when DDP shards leave a step out)."""
    proc = _train(tmp_path, "data.batch_size=191", "trainer.epochs=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    acc = EventAccumulator(str(tmp_path / "run"), size_guidance={"scalars": 0})
    acc.Reload()
    lrs = [e.value for e in acc.Scalars("lr")]
    assert len(lrs) == 2 and lrs[-1] < 1e-5  # the cycle's end (lr 0.1 at its peak)


def test_a_training_set_that_makes_no_step_is_refused(tmp_path: Path) -> None:
    proc = _train(tmp_path, "data.train_size=1", "trainer.epochs=1")
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("robustai train: error:")]
    assert errors == [
        "robustai train: error: 1 training image(s) make no training step: one needs at least "
        "2; use more training data"
    ]
    assert not (tmp_path / "run" / "weights.safetensors").exists()
