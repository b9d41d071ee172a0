"""The training loop: flat on purpose. Variation lives in objectives and callbacks."""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, OneCycleLR
from tqdm import tqdm

from robustai.argcheck import is_integer
from robustai.attacks.base import class_indices
from robustai.distributed import all_reduce
from robustai.errors import RunFailure
from robustai.training.objectives import Objective

log = logging.getLogger(__name__)


@dataclass
class EpochStats:
    """What one epoch measured; callbacks add their own entries to ``extra``."""

    epoch: int
    loss: float
    acc: float  # accuracy on the inputs the optimizer saw (adversarial ones when adversarial)
    lr: float  # the learning rate of the epoch's last optimizer step
    seconds: float
    images: int
    extra: dict[str, float] = field(default_factory=dict)
    #: how the epoch's log line names an ``extra`` entry, where the callback that measured it
    #: knows more than its key says (the watchdog: its attack and the split it watches)
    labels: dict[str, str] = field(default_factory=dict)

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


class TrainingInterrupted(Exception):
    """A stop was requested (e.g. SIGTERM) and the current step has finished."""

    def __init__(self, epoch: int, step: int) -> None:
        super().__init__(f"interrupted at epoch {epoch + 1}, step {step}")
        self.epoch, self.step = epoch, step


class TrainingDiverged(RunFailure):
    """The loss became NaN or infinite."""


@dataclass
class _Progress:
    """Running sums of the epoch in progress: checkpointed when a run stops mid-epoch."""

    step: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0


class Trainer:
    """Runs ``epochs`` of ``objective`` over a loader; callbacks observe and may stop training.

    ``scheduler`` is stepped after every optimizer step, not once per epoch (the schedules of
    :mod:`robustai.training.schedules` count steps): give an epoch-based PyTorch scheduler such
    as ``StepLR`` its step counts (``step_size=2 * len(loader)``), or step it in a callback. An
    objective that replays each batch (free training's ``replays``) takes one optimizer step,
    and one scheduler step, per replay: size a schedule for ``epochs * len(loader) * replays``
    steps. A schedule that knows its length (OneCycleLR, robustai's ``cyclic``) and is shorter
    than the run is warned about once, at the start of :meth:`fit`.

    ``stop_event``, when set (by a signal handler, say), ends training after the current step
    with :class:`TrainingInterrupted`; the trainer's :meth:`state_dict` then describes the partial
    epoch, so a checkpoint taken at that moment resumes exactly.

    ``world_size > 1`` (data-parallel training, one trainer per process): the model is a
    DistributedDataParallel wrapper and the loader yields this rank's shard of each global batch.
    The trainer then weights uneven shards so the averaged gradient is the global batch's, sums
    the epoch's loss and accuracy over ranks, and agrees with the other ranks on every stop (a
    signal, a non-finite loss, a callback's request on rank 0) so that no rank is left waiting.
    """

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
        stop_event: threading.Event | None = None,
        world_size: int = 1,
    ) -> None:
        if not is_integer(epochs) or epochs < 0:  # 1.5 trained 2 epochs
            raise ValueError(f"epochs must be a whole number >= 0; got {epochs!r}")
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                "optimizer must be a torch.optim.Optimizer over the model's parameters, e.g."
                f" torch.optim.SGD(model.parameters(), lr=0.1); got {type(optimizer).__name__}"
            )
        own = {id(p) for p in model.parameters()}
        if own and not any(id(p) in own for g in optimizer.param_groups for p in g["params"]):
            raise ValueError(
                "the optimizer holds none of the model's parameters (built over another"
                " model?): training would change nothing; build it over model.parameters()"
            )
        self.model = model
        self.objective = objective
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.epochs = epochs
        self.callbacks = list(callbacks)
        self.progress = progress
        self.stop_event = stop_event
        self.world_size = world_size
        self._sync_device = torch.device("cpu")  # where collectives run: the loss's device
        self.stop_reason: str | None = None
        self.epoch = 0  # the next epoch to run
        self.history: list[EpochStats] = []
        self._partial = _Progress()
        self._schedule_checked = False

    def request_stop(self, reason: str) -> None:
        """Called by a callback: finish after the current epoch."""
        self.stop_reason = reason

    def fit(self, train_loader: Iterable[tuple[Tensor, Tensor]]) -> FitResult:
        """Train for the remaining epochs over ``train_loader``, any re-iterable of ``(x, y)``
        batches already on the model's device (robustai's loaders, a ``DataLoader``, a list).
        Without ``len()`` (an ``IterableDataset``, say) there is no progress bar total, and the
        objective's fractional epoch (eps warm-up) advances once per epoch instead of per step.
        """
        self._check_schedule_length(train_loader)
        while self.epoch < self.epochs and self.stop_reason is None:
            stats = self.train_epoch(train_loader, self.epoch)
            self.history.append(stats)
            self.epoch += 1
            for cb in self.callbacks:
                cb.on_epoch_end(self, stats)
            log.info(_epoch_line(stats, self.epochs, self.objective.adversarial))
            requested, interrupted = self._agree(
                self.stop_reason is not None, self._stop_requested()
            )
            if requested and self.stop_reason is None:
                self.stop_reason = "stopped by rank 0"  # its callbacks decided; it logs why
            if self.stop_reason is not None:
                log.warning("stopped after epoch %d: %s", stats.epoch + 1, self.stop_reason)
            elif interrupted and self.epoch < self.epochs:
                raise TrainingInterrupted(self.epoch, 0)
        seconds = sum(s.seconds for s in self.history)
        images = sum(s.images for s in self.history)
        return FitResult(
            epochs=len(self.history),
            train_seconds=seconds,
            images_per_s=images / seconds if seconds > 0 else float("nan"),
            history=list(self.history),
            stopped_early=self.stop_reason is not None,
            stop_reason=self.stop_reason,
        )

    def _check_schedule_length(self, loader: Iterable[Any]) -> None:
        """Warn once when the scheduler ends before the run does: a cyclic schedule sized by
        ``len(loader)`` for free training ended in the first epoch and trained the rest at a
        rate of 0 (OneCycleLR fails at the step past its end)."""
        if self._schedule_checked or self.scheduler is None:
            return
        self._schedule_checked = True
        total = getattr(self.scheduler, "total_steps", None)
        n_batches = _length(loader)
        if not is_integer(total) or n_batches is None:
            return
        replays = getattr(self.objective, "replays", 1)
        run = self.epochs * n_batches * replays
        if total < run:
            log.warning(
                "the learning-rate schedule ends after %d steps but this run takes %d (%d epochs"
                " x %d batches x %d replays per batch, one scheduler step each); it trains the"
                " rest at the schedule's final rate%s: size it epochs * len(loader) * replays",
                total,
                run,
                self.epochs,
                n_batches,
                replays,
                " (OneCycleLR stops with an error)"
                if isinstance(self.scheduler, OneCycleLR)
                else "",
            )

    def train_epoch(self, loader: Iterable[tuple[Tensor, Tensor]], epoch: int) -> EpochStats:
        model, opt = self.model, self.optimizer
        model.train()
        n_batches = _length(loader)
        done = self._partial  # non-zero only when resuming in the middle of this epoch
        self._partial = _Progress()
        if self.world_size > 1 and torch.distributed.get_rank() != 0:
            done = _Progress(step=done.step, seconds=done.seconds)  # the sums count once, on rank 0
        loss_sum = torch.tensor(done.loss_sum, dtype=torch.float64)
        correct = torch.tensor(done.correct, dtype=torch.long)
        seen = done.seen
        # Checking the loss every step costs a device sync on accelerators: check less often there.
        check_every = 1
        bar = tqdm(
            total=n_batches,
            initial=done.step,
            desc=f"epoch {epoch + 1}/{self.epochs}",
            leave=False,
            disable=not (self.progress and sys.stderr.isatty()),
        )
        start = time.perf_counter()
        step = done.step
        replays = getattr(self.objective, "replays", 1)  # > 1 only for "free" training
        # The rate the epoch's last step used: after it the scheduler has already moved on to
        # the next step's (0 at the end of a cyclic schedule), a rate no step of this epoch saw.
        lr = opt.param_groups[0]["lr"]
        for x, y in loader:
            y = _batch_labels(x, y)
            # DDP averages the ranks' gradients with equal weights; a shard smaller or larger
            # than its fair share of the global batch is weighted so the result is the global
            # batch's mean gradient.
            global_batch = getattr(loader, "global_batch", 0) if self.world_size > 1 else 0
            weight = len(y) * self.world_size / global_batch if global_batch else 1.0
            for _ in range(replays):
                progress = epoch + step / n_batches if n_batches else float(epoch)
                loss, logits = self.objective(model, x, y, progress)
                opt.zero_grad(set_to_none=True)
                (loss * weight if weight != 1.0 else loss).backward()
                lr = opt.param_groups[0]["lr"]
                opt.step()
                if self.scheduler is not None:
                    self.scheduler.step()
            step += 1
            # Accumulate on the device; one sync at the end of the epoch instead of one per batch.
            if loss_sum.device != loss.device:
                loss_sum, correct = loss_sum.to(loss.device), correct.to(loss.device)
                check_every = 1 if loss.device.type == "cpu" else 25
                self._sync_device = loss.device
            loss_sum.add_(loss.detach(), alpha=len(y))  # float64 sum, one kernel
            correct += (logits.detach().argmax(1) == y).sum()
            seen += len(y)
            bar.update(1)
            if self.world_size > 1:  # a collective: every rank checks at the same steps
                if step % check_every != 0:
                    continue
                diverged, stop = self._agree(
                    not bool(torch.isfinite(loss_sum)), self._stop_requested()
                )
            else:
                diverged = step % check_every == 0 and not bool(torch.isfinite(loss_sum))
                stop = self._stop_requested()
            if diverged:
                bar.close()
                raise TrainingDiverged(_divergence_message(model, epoch, step))
            if stop and (n_batches is None or step < n_batches):
                bar.close()
                if self.world_size > 1:  # the checkpoint (rank 0's) holds every rank's sums
                    totals = torch.stack([loss_sum, correct.double(), loss_sum.new_tensor(seen)])
                    all_reduce(totals)
                    loss_sum, correct, seen = totals[0], totals[1].long(), int(totals[2])
                self._partial = _Progress(
                    step,
                    float(loss_sum),
                    int(correct),
                    seen,
                    done.seconds + time.perf_counter() - start,
                )
                raise TrainingInterrupted(epoch, step)
        seconds = done.seconds + time.perf_counter() - start
        bar.close()
        if seen == 0 and step == 0:
            log.warning(
                "epoch %d saw no batches: the loader is empty, or a one-shot iterator used up by"
                " an earlier epoch (pass a list, a DataLoader or robustai's TensorLoader)",
                epoch + 1,
            )
        if self.world_size > 1:  # the epoch's loss and accuracy over every rank's samples
            totals = torch.stack([loss_sum, correct.double(), loss_sum.new_tensor(seen)])
            all_reduce(totals)
            loss_sum, correct, seen = totals[0], totals[1].long(), int(totals[2])
        if not bool(torch.isfinite(loss_sum)):
            raise TrainingDiverged(_divergence_message(model, epoch, step))
        # No image seen: no loss and no accuracy (NaN, as the evaluator reports for empty
        # inputs), not a perfect loss of 0.0 with an accuracy of 0.0.
        return EpochStats(
            epoch=epoch,
            loss=float(loss_sum) / seen if seen else float("nan"),
            acc=float(correct) / seen if seen else float("nan"),
            lr=lr,
            seconds=seconds,
            images=seen,
        )

    def _stop_requested(self) -> bool:
        return self.stop_event is not None and self.stop_event.is_set()

    def _agree(self, first: bool, second: bool) -> tuple[bool, bool]:
        """Two flags, each true on any rank made true on all (a no-op in one process)."""
        if self.world_size <= 1:
            return first, second
        flags = torch.tensor([first, second], dtype=torch.int32, device=self._sync_device)
        all_reduce(flags, "max")
        return bool(flags[0]), bool(flags[1])

    def state_dict(self) -> dict[str, Any]:
        """Epoch counter, history and the partial epoch (model and optimizer save themselves)."""
        return {
            "epoch": self.epoch,
            "stop_reason": self.stop_reason,
            "history": [dataclasses.asdict(s) for s in self.history],
            "partial": dataclasses.asdict(self._partial),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        epoch, partial = int(state["epoch"]), _Progress(**state["partial"])
        history = [EpochStats(**s) for s in state["history"]]
        if not 0 <= epoch <= self.epochs or len(history) != epoch or partial.step < 0:
            raise ValueError(
                f"epoch {epoch} (with {len(history)} epochs of history, step {partial.step}) is"
                f" no point of a run of {self.epochs} epochs"
            )
        self.epoch, self.stop_reason = epoch, state["stop_reason"]
        self.history, self._partial = history, partial


def _batch_labels(x: Tensor, y: Tensor) -> Tensor:
    """``y`` as int64 class indices, one per input (int32 / uint8 ones from NumPy or image files
    are widened), or a one-line ValueError: float (one-hot) labels were taken by the loss as
    class probabilities while the accuracy compared them with the predictions by broadcasting
    (a train accuracy above 1), and labels of another shape failed inside the loss."""
    y = class_indices(y)
    if len(y) != len(x):
        raise ValueError(
            f"a training batch has {len(x)} inputs but {len(y)} labels; the loader must yield"
            " (x, y) with one class index per input"
        )
    return y


def _length(loader: Iterable[Any]) -> int | None:
    """Batches per epoch, or None for an iterable without a length."""
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:  # no __len__, or a DataLoader over an IterableDataset
        return None


def _divergence_message(model: nn.Module, epoch: int, step: int) -> str:
    bad = next(
        (
            name
            for name, p in model.named_parameters()
            if not torch.isfinite(p).all()
            or (p.grad is not None and not torch.isfinite(p.grad).all())
        ),
        None,
    )
    where = f"; first non-finite parameter or gradient: {bad}" if bad else ""
    return (
        f"the loss became NaN or infinite at epoch {epoch + 1}, step {step}{where}; "
        "lower trainer.lr or check the data (checkpoints saved before it, if any, are kept)"
    )


def _epoch_line(s: EpochStats, epochs: int, adversarial: bool) -> str:
    """One log line per epoch, its names those of the TensorBoard tags: the loop's accuracy is
    ``adv_acc`` (train/adv_acc) on adversarial batches, ``train_acc`` (train/acc) on clean ones;
    the watchdog's figure says its attack and split, as it is no validation robust accuracy."""
    acc = "adv_acc" if adversarial else "train_acc"
    parts = [f"epoch {s.epoch + 1}/{epochs}", f"loss {s.loss:.4f}", f"{acc} {s.acc:.3f}"]
    for key, name in (("val_clean_acc", "val_clean_acc"), ("watchdog_robust_acc", "watchdog")):
        value = s.extra.get(key)
        if value is not None and not math.isnan(value):
            parts.append(f"{s.labels.get(key, name)} {value:.3f}")
    parts += [f"lr {s.lr:.3g}", f"{s.seconds:.1f}s", f"{s.images_per_s:.0f} img/s"]
    return " | ".join(parts)
