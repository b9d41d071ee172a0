"""The evaluator's per-sample early stop (on by default) and its skipping of samples that are
wrong clean: never more robust than the plain attack, and far less work on a non-robust model."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
from torch import Tensor, nn

from robustai.attacks import PGD, build_attack
from robustai.data import DataBundle
from robustai.evaluation import (
    CurveSettings,
    Evaluator,
    SanitySettings,
    evaluate_model,
    predict,
)


class CountingPGD(PGD):
    """PGD that records how many samples each gradient step sees."""

    seen: ClassVar[list[int]] = []

    def _logits_and_input_grad(self, model: nn.Module, x_adv: Tensor, y: Tensor):  # type: ignore[override]
        self.seen.append(len(x_adv))
        return super()._logits_and_input_grad(model, x_adv, y)


def _suite(steps: int = 10):
    return [lambda eps: build_attack("pgd", eps=eps, steps=steps, random_start=False)]


def test_default_early_stop_is_never_more_robust(
    digits_model: nn.Module, digits: DataBundle
) -> None:
    x, y = digits.eval.x, digits.eval.y
    stop = Evaluator(_suite(), [0.1]).run(digits_model, x, y)
    plain = Evaluator(_suite(), [0.1], early_stop=False).run(digits_model, x, y)
    key = "pgd10@0.1"
    assert stop.attacks[key].early_stop and not plain.attacks[key].early_stop
    assert not (stop.outcomes[key].robust & ~plain.outcomes[key].robust).any()
    assert stop.robust_acc[key] <= plain.robust_acc[key]
    assert 0.0 < stop.robust_acc[key] < stop.clean_acc  # the attack does something


def test_clean_mistakes_are_not_attacked_and_fooled_samples_leave(
    digits_model: nn.Module, digits: DataBundle
) -> None:
    x, y = digits.eval.x, digits.eval.y
    right = int((predict(digits_model, x) == y).sum())
    assert right < len(y)
    for early_stop in (False, True):
        CountingPGD.seen = []
        Evaluator([lambda e: CountingPGD(e, steps=10)], [0.1], 4096, early_stop).run(
            digits_model, x, y
        )
        assert CountingPGD.seen[0] == right  # first step: only the samples right clean
        if early_stop:
            assert CountingPGD.seen[-1] < right and sum(CountingPGD.seen) < 10 * right
        else:
            assert CountingPGD.seen == [right] * 10


def test_evaluate_model_passes_the_setting_to_curve_and_checks(
    digits_model: nn.Module, digits: DataBundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The suite, the curve's new eps and the convergence check's stronger attack all run with
    the early-stop setting given to evaluate_model."""
    flags: list[bool] = []
    perturb = PGD.perturb

    def recording(self: PGD, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        flags.append(self.early_stop)
        return perturb(self, model, x, y)

    monkeypatch.setattr(PGD, "perturb", recording)
    x, y = digits.eval.x[:200], digits.eval.y[:200]
    kwargs = dict(
        attacks=_suite(5),
        eps=[0.1],
        num_classes=10,
        batch_size=512,
        curve=CurveSettings(eps=[0.05, 0.1]),
        sanity=SanitySettings(samples=200, checks=("convergence",)),
    )
    runs = {}
    for early_stop in (False, True):
        flags.clear()
        runs[early_stop] = evaluate_model(digits_model, x, y, early_stop=early_stop, **kwargs)
        # one batch each: the suite at 0.1, the curve at 0.05 (0.1 is reused), convergence
        assert flags == [early_stop] * 3
    plain, stop = runs[False], runs[True]
    key = "pgd5@0.1"
    assert stop.result.attacks[key].early_stop and not plain.result.attacks[key].early_stop
    assert stop.result.robust_acc[key] <= plain.result.robust_acc[key]
    assert torch.equal(stop.result.clean_pred, plain.result.clean_pred)
    for ev in (plain, stop):
        assert ev.curve is not None and ev.curve.eps == pytest.approx([0.0, 0.05, 0.1])
        assert ev.sanity is not None and [c.name for c in ev.sanity.checks] == ["convergence"]
    assert stop.curve.series["pgd5"][1] <= plain.curve.series["pgd5"][1]
