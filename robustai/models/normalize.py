"""Input normalization as the model's first layer, so every model takes inputs in [0, 1]."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn


class Normalize(nn.Module):
    """(x - mean) / std per channel.

    Living inside the model means attacks, eps and step sizes all work in [0, 1] pixel units,
    and a saved model cannot be used with the wrong statistics.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean and std differ in length: {len(mean)} != {len(std)}")
        if not all(s > 0 and math.isfinite(s) for s in std):  # NaN passes `s <= 0`
            raise ValueError(f"std must be positive and finite, got {list(std)}")
        if not all(math.isfinite(m) for m in mean):
            raise ValueError(f"mean must be finite, got {list(mean)}")
        self.register_buffer(
            "mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
        )
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        # Broadcasting would silently turn a grayscale batch into three identical channels for
        # a colour model (and fail deep inside it the other way round), and a single unbatched
        # image into a batch of one: refuse both here.
        channels = self.mean.shape[1]
        if x.ndim != 4 or x.shape[1] != channels:
            raise ValueError(
                f"the model takes (N, {channels}, H, W) inputs in [0, 1]; got {tuple(x.shape)}"
            )
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"
