"""Evaluating a model leaves the train/eval flag of every submodule as it found it.

A model being fine-tuned with frozen BatchNorm (``model.train(); model.bn.eval()``) must come
back from an evaluation with its BatchNorm still in eval mode, or the next training step would
update the running statistics the user froze.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from robustai.attacks import FGSM, PGD
from robustai.evaluation import (
    CurveSettings,
    Evaluator,
    SanitySettings,
    accuracy,
    attack_outcome,
    evaluate_model,
    predict,
    predict_correct,
    robust_accuracy,
    robust_correct,
)


def frozen_bn_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Dropout(0.1),
        nn.Linear(4 * 8 * 8, 10),
    )
    model.train()
    model[1].eval()  # frozen BatchNorm, as when fine-tuning
    return model


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand((12, 1, 8, 8), generator=g), torch.randint(0, 10, (12,), generator=g)


def pgd(eps: float) -> PGD:
    return PGD(eps, steps=2)


CALLS: dict[str, Callable[[nn.Module, torch.Tensor, torch.Tensor], Any]] = {
    "predict": lambda m, x, y: predict(m, x),
    "predict_correct": predict_correct,
    "accuracy": accuracy,
    "robust_correct": lambda m, x, y: robust_correct(m, FGSM(0.1), x, y),
    "robust_accuracy": lambda m, x, y: robust_accuracy(m, FGSM(0.1), x, y),
    "attack_outcome": lambda m, x, y: attack_outcome(m, FGSM(0.1), x, y, predict(m, x)),
    "Evaluator.run": lambda m, x, y: Evaluator([pgd], [0.1]).run(m, x, y),
    "evaluate_model": lambda m, x, y: evaluate_model(
        m,
        x,
        y,
        attacks=[pgd],
        eps=[0.1],
        num_classes=10,
        curve=CurveSettings(eps=[0.05, 0.1]),
        sanity=SanitySettings(samples=12),
    ),
}


@pytest.mark.parametrize("call", list(CALLS))
def test_submodule_modes_restored(call: str) -> None:
    model = frozen_bn_model()
    before = [m.training for m in model.modules()]
    x, y = data()
    CALLS[call](model, x, y)
    assert [m.training for m in model.modules()] == before


class _Counting(nn.Module):
    """The frozen-BatchNorm model, counting its forward passes."""

    def __init__(self) -> None:
        super().__init__()
        self.net = frozen_bn_model()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.net(x)


def _train_mode_pgd(eps: float) -> PGD:
    return PGD(eps, steps=2, model_mode="train")


@pytest.mark.parametrize(
    ("call", "clean_passes"),
    [
        (lambda m, x, y: robust_accuracy(m, _train_mode_pgd(0.1), x, y), 0),
        (lambda m, x, y: robust_correct(m, _train_mode_pgd(0.1), x, y), 0),
        # the clean predictions given to attack_outcome are the test's own pass
        (lambda m, x, y: attack_outcome(m, _train_mode_pgd(0.1), x, y, predict(m, x)), 1),
        (lambda m, x, y: Evaluator([pgd, _train_mode_pgd], [0.1]).run(m, x, y), 0),
        (
            lambda m, x, y: evaluate_model(
                m, x, y, attacks=[_train_mode_pgd], eps=[0.1], num_classes=10
            ),
            0,
        ),
    ],
    ids=["robust_accuracy", "robust_correct", "attack_outcome", "Evaluator", "evaluate_model"],
)
def test_an_attack_in_train_mode_is_refused_where_robust_accuracy_is_counted(
    call: Callable[[nn.Module, torch.Tensor, torch.Tensor], Any], clean_passes: int
) -> None:
    """Robust accuracy is counted in eval mode; a train-mode attack picks its examples against
    dropout draws or batch statistics (PGD's restarts, APGD's best iterate, Square's accepted
    queries), so the count would read high. Refused before the model is attacked."""
    model = _Counting()
    x, y = data()
    with pytest.raises(ValueError, match="runs the model in train mode, but robust accuracy"):
        call(model, x, y)
    assert model.calls == clean_passes
