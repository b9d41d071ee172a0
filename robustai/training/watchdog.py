"""Catastrophic-overfitting watchdog for single-step adversarial training.

FGSM training can suddenly lose all robustness to PGD within an epoch while its training accuracy
keeps rising (Wong, Rice & Kolter 2020, Sec. 5). The remedy in that paper is early stopping on PGD
accuracy of a held-out batch; this class does exactly that and keeps the best weights.
"""

from __future__ import annotations

import copy
import logging

from torch import Tensor, nn

from robustai.attacks import Attack
from robustai.distributed import unwrapped_state
from robustai.evaluation.accuracy import robust_accuracy

log = logging.getLogger(__name__)


class CatastrophicOverfittingWatchdog:
    """Each epoch: PGD accuracy on a fixed batch; a fall of more than ``max_drop`` below the best
    seen so far means collapse: training stops and the best weights are restored."""

    def __init__(self, attack: Attack, x: Tensor, y: Tensor, max_drop: float = 0.2) -> None:
        self.attack = attack
        self.x, self.y = x, y
        self.max_drop = max_drop
        self.best_acc = -1.0
        self.best_epoch = -1
        self.best_state: dict[str, Tensor] | None = None
        self.history: list[float] = []
        self.collapsed_at: int | None = None

    def check(self, model: nn.Module, epoch: int) -> tuple[float, bool]:
        """Measure, remember the best weights, and return (PGD accuracy, collapsed?)."""
        acc = robust_accuracy(model, self.attack, self.x, self.y)
        self.history.append(acc)
        if acc > self.best_acc:
            self.best_acc, self.best_epoch = acc, epoch
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return acc, False
        if self.best_acc - acc > self.max_drop:
            self.collapsed_at = epoch
            return acc, True
        return acc, False

    def restore_best(self, model: nn.Module) -> None:
        if self.best_state is not None:
            # a checkpoint of an older version kept them under DDP's or Opacus' wrapper prefixes
            state = unwrapped_state(self.best_state, model.state_dict()) or self.best_state
            model.load_state_dict(copy.deepcopy(state))
            log.warning(
                "catastrophic overfitting: restored the weights of epoch %d (PGD acc %.3f)",
                self.best_epoch + 1,
                self.best_acc,
            )

    def summary(self) -> dict[str, object]:
        """What metrics.json reports about the watchdog. Epochs count from 1, as in the log and
        in metrics.json's ``epochs`` (``best_epoch: 3`` is the weights after the third epoch)."""
        return {
            "best_acc": self.best_acc,
            "best_epoch": self.best_epoch + 1 if self.best_epoch >= 0 else None,
            "history": list(self.history),
            "collapsed_at": None if self.collapsed_at is None else self.collapsed_at + 1,
        }

    def state_dict(self) -> dict[str, object]:
        return {
            "best_acc": self.best_acc,
            "best_epoch": self.best_epoch,  # 0-based here, as check() counts
            "history": list(self.history),
            "collapsed_at": self.collapsed_at,
            "best_state": self.best_state,
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.best_acc = float(state["best_acc"])  # type: ignore[arg-type]
        self.best_epoch = int(state["best_epoch"])  # type: ignore[call-overload]
        self.history = [float(v) for v in state["history"]]  # type: ignore[attr-defined]
        collapsed = state["collapsed_at"]
        self.collapsed_at = None if collapsed is None else int(collapsed)  # type: ignore[call-overload]
        self.best_state = state["best_state"]  # type: ignore[assignment]
