"""TensorBoard logging with the project's tag names (slash-separated, stable across versions)."""

from __future__ import annotations

import functools
import logging
import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter

from robustai.errors import RunFailure
from robustai.fileio import DiskFull, is_disk_full
from robustai.training.trainer import EpochStats, Trainer

log = logging.getLogger(__name__)

_F = TypeVar("_F", bound=Callable[..., Any])


def _guarded(method: _F) -> _F:
    """The method, with a failed write to the event file turned into one line (see
    :meth:`TensorBoardLogger.writing`)."""

    @functools.wraps(method)
    def wrapper(self: TensorBoardLogger, *args: Any, **kwargs: Any) -> Any:
        with self.writing():
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def quiet_writer_thread_errors() -> None:
    """Keep TensorBoard's writer thread from printing a traceback when a write fails (a full
    disk, a file made read-only): the same error reaches the next call on the main thread,
    where :class:`TensorBoardLogger` turns it into one line. Other threads' errors are printed
    as before. For command-line programs; idempotent."""
    previous = threading.excepthook
    if getattr(previous, "_robustai_quiet", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        if type(args.thread).__name__ == "_AsyncWriterThread" and isinstance(
            args.exc_value, OSError
        ):
            return
        previous(args)

    hook._robustai_quiet = True  # type: ignore[attr-defined]
    threading.excepthook = hook


class TensorBoardLogger:
    """Writes event files into the run folder; also a trainer callback for per-epoch scalars."""

    def __init__(
        self,
        log_dir: str | Path,
        robust_tag: str = "train/robust_acc/pgd",
        purge_step: int = 0,
        retry: str = "run it again",
    ) -> None:
        #: the step this writer's TensorBoard session starts at: a resumed run's first step,
        #: from which TensorBoard drops what earlier event files logged (after the checkpoint
        #: it resumed from), so no step appears twice. A new run starts a session at 0: only a
        #: session after the first one purges.
        self.purge_step = purge_step
        self.log_dir = Path(log_dir)
        #: what to do once a failed write is mended (the one line says it)
        self.retry = retry
        with self.writing():
            self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)
        #: the watchdog's per-epoch PGD accuracy: ``train/...`` on training images, ``val/...``
        #: where it watches eval images (DP-SGD runs)
        self.robust_tag = robust_tag

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Writes to the event file inside: a failed one (no space left, a file or folder that
        is not writable) ends with one line instead of a traceback from TensorBoard's writer
        thread: :class:`~robustai.fileio.DiskFull` or :class:`~robustai.errors.RunFailure`."""
        try:
            yield
        except OSError as e:
            reason = e.strerror or str(e)
            fix = "free some space" if is_disk_full(e) else f"make {self.log_dir} writable"
            message = (
                f"TensorBoard could not write its event file in {self.log_dir} ({reason}); {fix}"
                f" or pass logger=none, then {self.retry}"
            )
            raise (DiskFull if is_disk_full(e) else RunFailure)(message) from e

    @_guarded
    def log_scalar(self, tag: str, value: float, step: int) -> None:
        self.writer.add_scalar(tag, value, step)

    @_guarded
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

    @_guarded
    def log_eval(self, clean_acc: float, robust_acc: dict[str, float], step: int) -> None:
        """Final evaluation: ``eval/clean_acc`` and ``eval/robust_acc/<attack>@<eps>``."""
        self.writer.add_scalar("eval/clean_acc", clean_acc, step)
        for key, value in robust_acc.items():
            if not math.isnan(value):
                self.writer.add_scalar(f"eval/robust_acc/{key}", value, step)

    @_guarded
    def log_image(self, tag: str, image: np.ndarray, step: int) -> None:
        """An RGB image (H, W, 3 uint8), e.g. a rendered plot such as the robustness curve."""
        self.writer.add_image(tag, image, step, dataformats="HWC")

    @_guarded
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

    @_guarded
    def log_text(self, tag: str, text: str, step: int = 0) -> None:
        """Markdown text; the final report at the evaluation's step (a resumed run's purge
        reaches it there), the config at 0."""
        self.writer.add_text(tag, text, step)

    @_guarded
    def close(self) -> None:
        self.writer.flush()
        self.writer.close()
