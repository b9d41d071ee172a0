"""scikit-learn's bundled 8x8 handwritten digits: the default, offline data set."""

from __future__ import annotations

import torch
from torch import Tensor


def load_digits_tensors() -> tuple[Tensor, Tensor]:
    """All 1797 digits as float (N, 1, 8, 8) in [0, 1] (raw values are 0..16) and int64 labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.int64)
    return x, y
