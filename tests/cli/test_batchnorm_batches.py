"""Which batch sizes a BatchNorm model can train on: measured from the model, not assumed."""

from __future__ import annotations

import pytest
import torch

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
