"""TensorBoard logging with the project's tag names (slash-separated, stable across versions)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter

from robustai.training.trainer import EpochStats, Trainer

log = logging.getLogger(__name__)


class TensorBoardLogger:
    """Writes event files into the run folder; also a trainer callback for per-epoch scalars."""

    def __init__(
        self,
        log_dir: str | Path,
        robust_tag: str = "train/robust_acc/pgd",
        purge_step: int = 0,
    ) -> None:
        #: the step this writer's TensorBoard session starts at: a resumed run's first step,
        #: from which TensorBoard drops what earlier event files logged (after the checkpoint
        #: it resumed from), so no step appears twice. A new run starts a session at 0: only a
        #: session after the first one purges.
        self.purge_step = purge_step
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)
        #: the watchdog's per-epoch PGD accuracy: ``train/...`` on training images, ``val/...``
        #: where it watches eval images (DP-SGD runs)
        self.robust_tag = robust_tag

    def on_epoch_end(self, trainer: Trainer, stats: EpochStats) -> None:
        step = stats.epoch + 1
        w = self.writer
        w.add_scalar("train/loss", stats.loss, step)
        if trainer.objective.adversarial:
            w.add_scalar("train/adv_acc", stats.acc, step)
            if "train_clean_acc" in stats.extra:
                w.add_scalar("train/acc", stats.extra["train_clean_acc"], step)
        else:
            w.add_scalar("train/acc", stats.acc, step)
        if "val_clean_acc" in stats.extra:
            w.add_scalar("val/clean_acc", stats.extra["val_clean_acc"], step)
        if "watchdog_robust_acc" in stats.extra:
            w.add_scalar(self.robust_tag, stats.extra["watchdog_robust_acc"], step)
        if "privacy_epsilon" in stats.extra:  # DP-SGD: epsilon spent so far, at the run's delta
            w.add_scalar("privacy/epsilon", stats.extra["privacy_epsilon"], step)
        w.add_scalar("lr", stats.lr, step)
        w.add_scalar("perf/images_per_s", stats.images_per_s, step)
        w.add_scalar("perf/epoch_seconds", stats.seconds, step)
        w.flush()

    def log_eval(self, clean_acc: float, robust_acc: dict[str, float], step: int) -> None:
        """Final evaluation: ``eval/clean_acc`` and ``eval/robust_acc/<attack>@<eps>``."""
        self.writer.add_scalar("eval/clean_acc", clean_acc, step)
        for key, value in robust_acc.items():
            if not math.isnan(value):
                self.writer.add_scalar(f"eval/robust_acc/{key}", value, step)

    def log_image(self, tag: str, image: np.ndarray, step: int) -> None:
        """An RGB image (H, W, 3 uint8), e.g. a rendered plot such as the robustness curve."""
        self.writer.add_image(tag, image, step, dataformats="HWC")

    def log_adversarial_grid(
        self, clean: Tensor, adv: Tensor, eps: float, tag: str, step: int
    ) -> None:
        """Rows: clean images, adversarial images, perturbation (grey = 0, scaled to +-eps)."""
        scale = eps if eps > 0 else 1.0
        pert = (0.5 + (adv - clean) / (2 * scale)).clamp(0, 1)
        from torchvision.utils import make_grid  # imported here: torchvision takes seconds to load

        images = torch.cat([clean, adv, pert]).detach().cpu()
        grid = make_grid(images, nrow=len(clean), padding=1, pad_value=1.0)
        self.writer.add_image(tag, grid, step)

    def log_text(self, tag: str, text: str, step: int = 0) -> None:
        """Markdown text; the final report at the evaluation's step (a resumed run's purge
        reaches it there), the config at 0."""
        self.writer.add_text(tag, text, step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()
