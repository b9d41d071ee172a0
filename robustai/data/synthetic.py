"""A learnable synthetic image classification task for tests and benchmarks."""

from __future__ import annotations

import torch
from torch import Tensor


def make_synthetic(
    n: int, input_shape: tuple[int, int, int], num_classes: int, noise: float, seed: int
) -> tuple[Tensor, Tensor]:
    """Class prototypes in [0, 1] plus Gaussian noise, clamped to [0, 1].

    Separable enough to learn in a few steps, noisy enough that accuracy is not trivially 1.
    """
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(f"input_shape must be (channels, height, width), e.g. (1, 8, 8); got"
                         f" {tuple(input_shape)}")
    if num_classes < 2 or n < 1:
        raise ValueError(f"need num_classes >= 2 and num_samples >= 1; got {num_classes}, {n}")
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.rand((num_classes, *input_shape), generator=g)
    y = torch.randint(num_classes, (n,), generator=g)
    x = prototypes[y] + noise * torch.randn((n, *input_shape), generator=g)
    return x.clamp_(0.0, 1.0), y
