"""Clean and robust accuracy for every attack at every eps, with a per-sample worst case."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from robustai.attacks import Attack
from robustai.evaluation.accuracy import predict_correct, robust_correct

log = logging.getLogger(__name__)

AttackFactory = Callable[[float], Attack]


def metric_key(attack: Attack) -> str:
    """The stable ``<attack>@<eps>`` key of metrics.json, e.g. ``pgd20@0.1``."""
    return f"{attack.label}@{attack.eps:g}"


@dataclass
class EvalResult:
    clean_acc: float
    robust_acc: dict[str, float]  # "<attack>@<eps>" -> accuracy
    worst_case: dict[str, float]  # "<eps>" -> accuracy under the per-sample worst attack
    samples: int
    seconds: float


class Evaluator:
    """Runs each attack factory at each eps on the same samples.

    A sample is robust at an eps only if the model is right on it clean and under every attack
    (the worst case), the standard way to report robust accuracy of a suite.
    """

    def __init__(
        self, attacks: Sequence[AttackFactory], eps: Sequence[float], batch_size: int = 512
    ) -> None:
        if not eps:
            raise ValueError("eps must list at least one value")
        self.attacks = list(attacks)
        self.eps = list(eps)
        self.batch_size = batch_size

    def run(self, model: nn.Module, x: Tensor, y: Tensor) -> EvalResult:
        start = time.perf_counter()
        clean = predict_correct(model, x, y, self.batch_size)
        robust: dict[str, float] = {}
        worst: dict[str, float] = {}
        for eps in self.eps:
            all_ok = clean.clone()
            for make in self.attacks:
                attack = make(eps)
                key = metric_key(attack)
                ok = robust_correct(model, attack, x, y, self.batch_size)
                robust[key] = float(ok.float().mean())
                all_ok &= ok
                log.info("robust accuracy %s: %.4f", key, robust[key])
            worst[f"{eps:g}"] = float(all_ok.float().mean())
        return EvalResult(
            clean_acc=float(clean.float().mean()),
            robust_acc=robust,
            worst_case=worst,
            samples=len(x),
            seconds=time.perf_counter() - start,
        )
