"""Poisson sampling over in-memory tensors, and the random generators DP noise draws from.

DP-SGD's accounting assumes Poisson sampling: at every step each record joins the batch
independently with probability ``q``. Batch sizes therefore vary and may be 0. Opacus'
``DPDataLoader`` does this over a map-style dataset, one ``__getitem__`` per record; the data
sets here are tensors in memory, so one Bernoulli draw per record and one gather per step do the
same at a fraction of the cost.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

log = logging.getLogger(__name__)


def entropy_generator(
    device: torch.device | str = "cpu", seed: int | None = None
) -> torch.Generator:
    """A torch generator seeded from the operating system's entropy, or from ``seed``.

    DP noise and Poisson sampling must be unpredictable to whoever reads the run folder, which
    records ``trainer.seed``; so they never draw from the globally seeded generator. PyTorch's
    generators are not cryptographically secure (neither are Opacus' without ``secure_mode``):
    adequate for research, not against an adversary who can attack the generator itself.
    """
    g = torch.Generator(device=device)
    g.manual_seed(int.from_bytes(os.urandom(8), "little") if seed is None else int(seed))
    return g


class PoissonLoader:
    """Yields ``steps`` batches; each includes every record independently with prob. ``q``.

    ``q = batch_size / N`` (at most 1) and one epoch is ``ceil(N / batch_size)`` steps, the
    length of a plain loader over the same data, so learning-rate schedules line up. The expected
    batch size is ``q * N = batch_size``. Empty batches are yielded as tensors with 0 rows: the
    DP step still happens (noise only), as the accountant assumes.
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        batch_size: int,
        *,
        generator: torch.Generator | None = None,
        population: int | None = None,
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"x and y differ in length: {len(x)} != {len(y)}")
        if len(x) == 0:
            raise ValueError("Poisson sampling needs at least one record")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.x, self.y = x, y
        self.batch_size = batch_size
        #: a per-image transform of each batch's inputs (e.g. random crop and flip), or None
        self.augment: Callable[[Tensor], Tensor] | None = None
        self.generator = generator if generator is not None else entropy_generator()
        # Data-parallel DP-SGD: each rank samples its own shard of a ``population``-record data
        # set at the global rate; every record still joins each step's (global) batch
        # independently with probability q, so the accounting is that of one process.
        self.population = len(x) if population is None else int(population)
        self.sample_rate = min(1.0, batch_size / self.population)
        self.steps = math.ceil(self.population / batch_size)
        self._position = 0  # batches yielded in the current epoch
        #: batches yielded over the loader's life: DP-SGD checks each step drew a new one
        self.batches_drawn = 0
        self._resume_at = 0

    @property
    def num_samples(self) -> int:
        return len(self.x)

    @property
    def expected_batch_size(self) -> float:
        """Of this loader's batches (a rank's share of the global batch when sharded)."""
        return self.sample_rate * len(self.x)

    def __len__(self) -> int:
        return self.steps

    def to(self, device: torch.device | str) -> PoissonLoader:
        self.x, self.y = self.x.to(device), self.y.to(device)
        return self

    def state_dict(self) -> dict[str, int]:
        """Where an interrupted epoch stopped. The generator state is left out on purpose: it
        would let whoever reads a checkpoint reconstruct the sampling (and, for the noise
        generator, the noise); a resumed run draws from fresh entropy instead."""
        return {"position": self._position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume_at = int(state["position"])

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        n = len(self.x)
        gen_device = self.generator.device
        start, self._resume_at = self._resume_at, 0
        for i in range(start, self.steps):
            self._position = i + 1
            # float64: float32 draws are multiples of 2**-24 (and q would be rounded to float32),
            # so the rate would be off by up to 6e-8; the accountant assumes exactly q.
            u = torch.rand(n, generator=self.generator, device=gen_device, dtype=torch.float64)
            mask = u < self.sample_rate
            idx = mask.nonzero().squeeze(1)
            if idx.device != self.x.device:
                idx = idx.to(self.x.device)
            xb = self.x[idx]
            self.batches_drawn += 1
            yield (xb if self.augment is None else self.augment(xb)), self.y[idx]
        self._position = 0
