"""Batching of in-memory tensors.

Small and medium data sets (digits, MNIST, CIFAR-10) fit in memory as one tensor. Batching them by
tensor indexing costs one gather per batch instead of one Python call per sample, which is what a
``torch.utils.data.DataLoader`` over a map-style dataset would cost.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


class TensorLoader:
    """Iterate over ``(x, y)`` batches of in-memory tensors; shuffling is seeded and repeatable."""

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"x and y differ in length: {len(x)} != {len(y)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.generator = torch.Generator().manual_seed(seed)
        # Resumable position: the generator state at the start of the current pass and how many
        # batches of it were handed out, so a pass interrupted mid-way can be replayed exactly.
        self._pass_start: Tensor | None = None
        self._position = 0
        self._skip = 0

    @property
    def num_samples(self) -> int:
        return len(self.x)

    def __len__(self) -> int:
        n, b = len(self.x), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def to(self, device: torch.device | str) -> TensorLoader:
        """Move the whole data set to ``device`` once, so batches need no host-to-device copy."""
        self.x, self.y = self.x.to(device), self.y.to(device)
        return self

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        n, b = len(self.x), self.batch_size
        self._pass_start = self.generator.get_state()
        order = torch.randperm(n, generator=self.generator) if self.shuffle else None
        if order is not None and self.x.device.type != "cpu":
            order = order.to(self.x.device)
        start, self._skip = self._skip, 0
        for i in range(start, len(self)):
            self._position = i + 1
            if order is None:
                yield self.x[i * b : (i + 1) * b], self.y[i * b : (i + 1) * b]
            else:
                idx = order[i * b : (i + 1) * b]
                yield self.x[idx], self.y[idx]
        self._pass_start, self._position = None, 0

    def state_dict(self) -> dict[str, Any]:
        """Where the loader stands: between passes, or ``position`` batches into a pass."""
        if self._pass_start is not None and 0 < self._position < len(self):
            return {"generator": self._pass_start.clone(), "position": self._position}
        return {"generator": self.generator.get_state(), "position": 0}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """The next pass replays the saved one from ``position`` on (same order, same batches)."""
        self.generator.set_state(state["generator"])
        self._skip = int(state["position"])
        self._pass_start, self._position = None, 0


@dataclass
class DataBundle:
    """Everything a trainer needs to know about a data set. Inputs are always in [0, 1]."""

    name: str
    train: TensorLoader
    eval: TensorLoader
    input_shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
