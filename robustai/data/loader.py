"""Batching of in-memory tensors.

Small and medium data sets (digits, MNIST, CIFAR-10) fit in memory as one tensor. Batching them by
tensor indexing costs one gather per batch instead of one Python call per sample, which is what a
``torch.utils.data.DataLoader`` over a map-style dataset would cost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from robustai.argcheck import is_integer


class TensorLoader:
    """Iterate over ``(x, y)`` batches of in-memory tensors; shuffling is seeded and repeatable.

    ``min_batch``: a last batch that would hand some process fewer samples is left out of every
    pass (the training pipeline sets 2 for a model whose BatchNorm sees one value per channel
    per image, which cannot train on a batch of one: otherwise a data set one sample longer than
    a multiple of the batch size fails at the end of the first epoch).
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        min_batch: int = 1,
        augment: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        if not isinstance(x, Tensor) or not isinstance(y, Tensor):
            raise TypeError(
                "x and y must be tensors (torch.as_tensor converts NumPy arrays); got"
                f" {type(x).__name__} and {type(y).__name__}"
            )
        if len(x) != len(y):
            raise ValueError(f"x and y differ in length: {len(x)} != {len(y)}")
        if not is_integer(batch_size) or batch_size < 1:
            raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
        if min_batch < 1:
            raise ValueError(f"min_batch must be >= 1, got {min_batch}")
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.min_batch = min_batch
        self.augment = augment  # applied to each batch's inputs as it is handed out
        self.generator = torch.Generator().manual_seed(seed)
        # Resumable position: the generator state at the start of the current pass and how many
        # batches of it were handed out, so a pass interrupted mid-way can be replayed exactly.
        self._pass_start: Tensor | None = None
        self._position = 0
        self._skip = 0
        # Data-parallel training: this process's share of every global batch (see shard()).
        self.rank, self.world_size = 0, 1
        self.global_batch = 0  # size of the global batch the last yielded shard belongs to

    @property
    def num_samples(self) -> int:
        return len(self.x)

    def __len__(self) -> int:
        n, b = len(self.x), self.batch_size
        steps = n // b if self.drop_last else -(-n // b)
        last = min(b, n - (steps - 1) * b)
        if steps and last // self.world_size < self.min_batch:
            steps -= 1  # too small to give every rank min_batch samples (at least one)
        return steps

    def shard(self, rank: int, world_size: int) -> TensorLoader:
        """Yield only ``rank``'s part of every batch, for data-parallel training.

        Every rank draws the same shuffled order (same seed), cuts each global batch of
        ``batch_size`` into ``world_size`` parts of nearly equal size and keeps part ``rank``.
        The global batches are exactly those of the single-process loader, so ``batch_size``
        (and the learning rate that goes with it) keeps its meaning on any number of processes.
        ``global_batch`` tells the trainer how to weight uneven parts (DDP averages ranks equally).
        """
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        if self.batch_size < world_size:
            raise ValueError(
                f"batch_size={self.batch_size} is smaller than the {world_size} processes; "
                "every process needs at least one sample per batch"
            )
        self.rank, self.world_size = rank, world_size
        return self

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
            if self.world_size > 1:
                lo, hi = i * b, min((i + 1) * b, n)
                self.global_batch = hi - lo
                # np.array_split's cut points: the first (hi - lo) % world parts get one more.
                per, extra = divmod(hi - lo, self.world_size)
                lo += self.rank * per + min(self.rank, extra)
                hi = lo + per + (1 if self.rank < extra else 0)
            else:
                lo, hi = i * b, (i + 1) * b
                self.global_batch = min(hi, n) - lo
            if order is None:
                xb, yb = self.x[lo:hi], self.y[lo:hi]
            else:
                idx = order[lo:hi]
                xb, yb = self.x[idx], self.y[idx]
            yield (xb if self.augment is None else self.augment(xb)), yb
        self._pass_start, self._position = None, 0

    def state_dict(self) -> dict[str, Any]:
        """Where the loader stands: between passes, or ``position`` batches into a pass."""
        if self._pass_start is not None and 0 < self._position < len(self):
            return {"generator": self._pass_start.clone(), "position": self._position}
        return {"generator": self.generator.get_state(), "position": 0}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """The next pass replays the saved one from ``position`` on (same order, same batches)."""
        position = int(state["position"])
        if not 0 <= position < max(1, len(self)):
            raise ValueError(f"position {position} is outside a pass of {len(self)} batches")
        self.generator.set_state(state["generator"])
        self._skip = position
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
