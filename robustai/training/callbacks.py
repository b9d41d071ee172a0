"""Epoch-end callbacks: measurements and the watchdog, kept out of the loop itself."""

from __future__ import annotations

from torch import Tensor

from robustai.evaluation.accuracy import accuracy
from robustai.training.trainer import EpochStats, Trainer
from robustai.training.watchdog import CatastrophicOverfittingWatchdog


class EpochAccuracy:
    """Clean accuracy on a fixed training subset and on the eval set, without gradients.

    The training subset gives a clean ``train/acc`` for adversarial runs too (the loop itself only
    sees the adversarial inputs), at the cost of one forward pass over a few hundred images.
    """

    def __init__(
        self, train_x: Tensor, train_y: Tensor, val_x: Tensor, val_y: Tensor, batch_size: int = 512
    ):
        self.train_x, self.train_y = train_x, train_y
        self.val_x, self.val_y = val_x, val_y
        self.batch_size = batch_size

    def on_epoch_end(self, trainer: Trainer, stats: EpochStats) -> None:
        stats.extra["train_clean_acc"] = accuracy(
            trainer.model, self.train_x, self.train_y, self.batch_size
        )
        stats.extra["val_clean_acc"] = accuracy(
            trainer.model, self.val_x, self.val_y, self.batch_size
        )


class WatchdogCallback:
    """Runs the catastrophic-overfitting watchdog; on collapse, restores the best weights, stops."""

    def __init__(self, watchdog: CatastrophicOverfittingWatchdog, active: bool = True) -> None:
        self.watchdog = watchdog
        self.active = active  # measure only (e.g. standard training) when False

    def on_epoch_end(self, trainer: Trainer, stats: EpochStats) -> None:
        acc, collapsed = self.watchdog.check(trainer.model, stats.epoch)
        stats.extra["val_robust_acc"] = acc
        if collapsed and self.active:
            self.watchdog.restore_best(trainer.model)
            trainer.request_stop(
                f"catastrophic overfitting: PGD accuracy fell from {self.watchdog.best_acc:.3f} "
                f"(epoch {self.watchdog.best_epoch + 1}) to {acc:.3f}; best weights restored"
            )
