"""The training loop: flat on purpose. Variation lives in objectives and callbacks."""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from tqdm import tqdm

from robustai.training.objectives import Objective

log = logging.getLogger(__name__)


@dataclass
class EpochStats:
    """What one epoch measured; callbacks add their own entries to ``extra``."""

    epoch: int
    loss: float
    acc: float  # accuracy on the inputs the optimizer saw (adversarial ones when adversarial)
    lr: float
    seconds: float
    images: int
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")


class Callback(Protocol):
    def on_epoch_end(self, trainer: Trainer, stats: EpochStats) -> None: ...


@dataclass
class FitResult:
    epochs: int
    train_seconds: float
    images_per_s: float
    history: list[EpochStats]
    stopped_early: bool
    stop_reason: str | None


class Trainer:
    """Runs ``epochs`` of ``objective`` over a loader; callbacks observe and may stop training."""

    def __init__(
        self,
        model: nn.Module,
        objective: Objective,
        optimizer: Optimizer,
        scheduler: LRScheduler | None = None,
        *,
        epochs: int,
        callbacks: Sequence[Callback] = (),
        progress: bool = True,
    ) -> None:
        self.model = model
        self.objective = objective
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.epochs = epochs
        self.callbacks = list(callbacks)
        self.progress = progress
        self.stop_reason: str | None = None

    def request_stop(self, reason: str) -> None:
        """Called by a callback: finish after the current epoch."""
        self.stop_reason = reason

    def fit(self, train_loader: Iterable[tuple[Tensor, Tensor]]) -> FitResult:
        history: list[EpochStats] = []
        for epoch in range(self.epochs):
            stats = self.train_epoch(train_loader, epoch)
            for cb in self.callbacks:
                cb.on_epoch_end(self, stats)
            history.append(stats)
            log.info(_epoch_line(stats, self.epochs))
            if self.stop_reason is not None:
                log.warning("stopped after epoch %d: %s", epoch + 1, self.stop_reason)
                break
        seconds = sum(s.seconds for s in history)
        images = sum(s.images for s in history)
        return FitResult(
            epochs=len(history),
            train_seconds=seconds,
            images_per_s=images / seconds if seconds > 0 else float("nan"),
            history=history,
            stopped_early=self.stop_reason is not None,
            stop_reason=self.stop_reason,
        )

    def train_epoch(self, loader: Iterable[tuple[Tensor, Tensor]], epoch: int) -> EpochStats:
        model, opt = self.model, self.optimizer
        model.train()
        n_batches = len(loader)  # type: ignore[arg-type]
        loss_sum = torch.zeros(())
        correct = torch.zeros((), dtype=torch.long)
        seen = 0
        bar = tqdm(
            total=n_batches,
            desc=f"epoch {epoch + 1}/{self.epochs}",
            leave=False,
            disable=not (self.progress and sys.stderr.isatty()),
        )
        start = time.perf_counter()
        for i, (x, y) in enumerate(loader):
            loss, logits = self.objective(model, x, y, epoch + i / max(1, n_batches))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if self.scheduler is not None:
                self.scheduler.step()
            # Accumulate on the device; one sync at the end of the epoch instead of one per batch.
            loss_sum = loss_sum.to(loss.device) + loss.detach() * len(y)
            correct = correct.to(y.device) + (logits.detach().argmax(1) == y).sum()
            seen += len(y)
            bar.update(1)
        seconds = time.perf_counter() - start
        bar.close()
        return EpochStats(
            epoch=epoch,
            loss=float(loss_sum) / max(1, seen),
            acc=float(correct) / max(1, seen),
            lr=opt.param_groups[0]["lr"],
            seconds=seconds,
            images=seen,
        )


def _epoch_line(s: EpochStats, epochs: int) -> str:
    parts = [f"epoch {s.epoch + 1}/{epochs}", f"loss {s.loss:.4f}", f"train_acc {s.acc:.3f}"]
    for key in ("val_clean_acc", "val_robust_acc"):
        value = s.extra.get(key)
        if value is not None and not math.isnan(value):
            parts.append(f"{key.removeprefix('val_')} {value:.3f}")
    parts += [f"lr {s.lr:.3g}", f"{s.seconds:.1f}s", f"{s.images_per_s:.0f} img/s"]
    return " | ".join(parts)
