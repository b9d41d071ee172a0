"""Seeded, stratified train/eval splits and per-channel statistics."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from robustai.argcheck import is_real


def stratified_split(y: Tensor, holdout: float, seed: int) -> tuple[Tensor, Tensor]:
    """Return (train_idx, eval_idx) holding out ``holdout`` of every class, the same for a seed."""
    if not is_real(holdout):  # "0.2" from a caller
        raise TypeError(
            f"holdout must be a number in (0, 1), e.g. 0.2; got {type(holdout).__name__}"
            f" {holdout!r}"
        )
    if not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout must be in (0, 1), got {holdout}")
    g = torch.Generator().manual_seed(seed)
    train, held = [], []
    for c in torch.unique(y):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        # at least one sample in eval and, when the class has two or more, at least one in train
        k = min(max(1, round(len(idx) * holdout)), max(1, len(idx) - 1))
        held.append(idx[:k])
        train.append(idx[k:])
    return torch.sort(torch.cat(train)).values, torch.sort(torch.cat(held)).values


def channel_stats(x: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of ``x`` (N, C, H, W), for the model's Normalize layer."""
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-6)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def take(x: Tensor, y: Tensor, n: int | None, seed: int) -> tuple[Tensor, Tensor]:
    """A seeded, stratified subset of ``n`` samples (all of them when ``n`` is None or too large).

    Every class keeps its share of the set (within one sample): a plain random subset of a few
    dozen images can miss whole classes, in training or, worse, in the accuracy measured on it.
    """
    if n is not None and n < 1:  # order[:-1] would silently keep all but one
        raise ValueError(f"a subset size must be >= 1 (or None for all); got {n}")
    if n is None or n >= len(x):
        return x, y
    g = torch.Generator().manual_seed(seed)
    # Spread each class's samples (in random order) evenly over [0, 1) and keep the first n by
    # position: class c then holds about n * share(c) of the subset, ties broken at random.
    position = torch.empty(len(y), dtype=torch.float64)
    for c in torch.unique(y):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        position[idx] = (torch.arange(len(idx), dtype=torch.float64) + 0.5) / len(idx)
    tie = torch.rand(len(y), generator=g, dtype=torch.float64)
    order = torch.from_numpy(np.lexsort((tie.numpy(), position.numpy())))
    idx = torch.sort(order[:n]).values
    return x[idx], y[idx]
