"""Epoch-end callbacks: measurements and the watchdog, kept out of the loop itself."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from robustai.distributed import unwrap_model
from robustai.evaluation.accuracy import accuracy
from robustai.training.checkpoint import (
    RankLocalState,
    RNGState,
    check_keep,
    list_checkpoints,
    save_checkpoint,
)
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
        model = unwrap_model(trainer.model)
        b = self.batch_size
        stats.extra["train_clean_acc"] = accuracy(model, self.train_x, self.train_y, b)
        stats.extra["val_clean_acc"] = accuracy(model, self.val_x, self.val_y, b)


class WatchdogCallback:
    """Runs the catastrophic-overfitting watchdog; on collapse, restores the best weights, stops."""

    def __init__(
        self,
        watchdog: CatastrophicOverfittingWatchdog,
        active: bool = True,
        split: str | None = None,
    ) -> None:
        self.watchdog = watchdog
        self.active = active  # measure only (e.g. standard training) when False
        #: the split its images come from ("train", or "eval" under DP-SGD), named in the log
        #: line so that its figure does not read as a validation robust accuracy
        self.split = split

    def on_epoch_end(self, trainer: Trainer, stats: EpochStats) -> None:
        model = unwrap_model(trainer.model)
        acc, collapsed = self.watchdog.check(model, stats.epoch)
        stats.extra["watchdog_robust_acc"] = acc
        # "off" where it only measures (trainer.watchdog.enabled=false, standard training): the
        # line read as a guard that would stop the run
        notes = ([self.split] if self.split else []) + ([] if self.active else ["off"])
        where = f" ({', '.join(notes)})" if notes else ""
        stats.labels["watchdog_robust_acc"] = f"watchdog {self.watchdog.attack.label}{where}"
        if collapsed and self.active:
            self.watchdog.restore_best(model)
            trainer.request_stop(
                f"catastrophic overfitting: PGD accuracy fell from {self.watchdog.best_acc:.3f} "
                f"(epoch {self.watchdog.best_epoch + 1}) to {acc:.3f}; best weights restored"
            )


class GatherRankStatesCallback:
    """Under DDP, on every rank, after the callbacks that may draw random numbers and before rank
    0's :class:`CheckpointCallback`: collects the ranks' own states (generators, free training's
    perturbation) into rank 0's checkpoint (see :class:`~robustai.training.checkpoint.RNGState`
    and :class:`~robustai.training.checkpoint.RankLocalState`). Runs every epoch, since only
    rank 0 knows whether its checkpoint is due (a stop its callbacks requested)."""

    def __init__(self, *states: RNGState | RankLocalState) -> None:
        self.states = states

    def on_epoch_end(self, trainer: Trainer, stats: EpochStats) -> None:
        for state in self.states:
            state.gather()


class CheckpointCallback:
    """Saves a resumable checkpoint every ``every`` epochs, after the final epoch and when training
    stops early. Must run after every other callback, so the saved RNG state is the one the next
    epoch starts from."""

    def __init__(
        self,
        folder: Path,
        components: Mapping[str, Any],
        every: int = 1,
        keep: int = 2,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        check_keep(keep)  # here, not at the first save
        self.folder = folder
        self.components = components
        self.every = every
        self.keep = keep
        self.info = dict(info or {})
        self.last: Path | None = None

    def save(self, trainer: Trainer, step: int = 0) -> Path:
        self.last = save_checkpoint(
            self.folder,
            self.components,
            epoch=trainer.epoch,
            step=step,
            info=self.info,
            keep=self.keep,
        )
        return self.last

    def on_epoch_end(self, trainer: Trainer, stats: EpochStats) -> None:
        final = trainer.epoch >= trainer.epochs or trainer.stop_reason is not None
        if self.every <= 0:
            # No checkpoints asked for; but one saved at an interrupt is the folder's newest
            # until replaced: the finished run would resume from it when started again and
            # train its last epochs over. A final checkpoint becomes the newest instead.
            if final and list_checkpoints(self.folder):
                self.save(trainer)
            return
        if final or trainer.epoch % self.every == 0:
            self.save(trainer)
