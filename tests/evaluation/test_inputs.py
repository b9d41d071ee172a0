"""What the evaluation entry points accept from a caller's own data, and what they refuse in one
line instead of failing deep inside a loss or a bincount."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from robustai.attacks import PGD, build_attack
from robustai.evaluation import (
    CurveSettings,
    Evaluator,
    SanitySettings,
    evaluate_model,
    predict_correct,
    robust_correct,
    run_sanity_checks,
)
from robustai.evaluation.accuracy import accuracy, attack_outcome, predict


def pgd(eps: float) -> PGD:
    return PGD(eps, steps=2)


def setup() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    g = torch.Generator().manual_seed(0)
    return model, torch.rand((20, 1, 8, 8), generator=g), torch.randint(0, 10, (20,), generator=g)


def full(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int = 10,
    per_class: bool = True,
):
    return evaluate_model(
        model,
        x,
        y,
        attacks=[pgd],
        eps=[0.1],
        num_classes=num_classes,
        curve=CurveSettings(eps=[0.05, 0.1]),
        sanity=SanitySettings(samples=20),
        per_class=per_class,
    )


@pytest.mark.parametrize("dtype", [torch.int32, torch.uint8])
def test_integer_labels_of_any_width(dtype: torch.dtype) -> None:
    model, x, y = setup()
    torch.manual_seed(1)
    reference = full(model, x, y)
    torch.manual_seed(1)
    ev = full(model, x, y.to(dtype))
    assert ev.result.robust_acc == reference.result.robust_acc
    assert repr(ev.per_class) == repr(reference.per_class)  # NaN for absent classes
    assert ev.sanity is not None and reference.sanity is not None
    assert [c.status for c in ev.sanity.checks] == [c.status for c in reference.sanity.checks]
    statuses = []
    for labels in (y, y.to(dtype)):
        torch.manual_seed(1)
        report = run_sanity_checks(model, x, labels, attacks=[pgd], eps=[0.1], num_classes=10)
        statuses.append([c.status for c in report.checks])
    assert statuses[0] == statuses[1]


def test_labels_of_another_length_refused() -> None:
    model, x, y = setup()
    with pytest.raises(ValueError, match=r"20 inputs but 5 labels"):
        full(model, x, y[:5])
    with pytest.raises(ValueError, match=r"20 inputs but 5 labels"):
        Evaluator([pgd], [0.1]).run(model, x, y[:5])


def test_the_batched_helpers_check_their_labels_and_batch_size() -> None:
    """A column of labels once broadcast into a (B, B) comparison and gave a wrong accuracy
    without a word; the helpers now refuse what the evaluator refuses."""
    model, x, y = setup()
    attack = PGD(0.1, steps=1)
    for call in (
        lambda labels: accuracy(model, x, labels),
        lambda labels: robust_correct(model, attack, x, labels),
        lambda labels: attack_outcome(model, attack, x, labels, predict(model, x)),
    ):
        with pytest.raises(ValueError, match=r"class indices of shape \(batch,\)"):
            call(y[:, None])
        with pytest.raises(ValueError, match=r"20 inputs but 5 labels"):
            call(y[:5])
    with pytest.raises(ValueError, match=r"batch_size must be a whole number >= 1; got 0"):
        accuracy(model, x, y, batch_size=0)
    with pytest.raises(ValueError, match=r"batch_size must be a whole number >= 1; got 0"):
        Evaluator([pgd], [0.1], batch_size=0)
    with pytest.raises(TypeError, match=r"eps must be a list of values, e\.g\. \[0\.1\]"):
        Evaluator([pgd], 0.1)  # type: ignore[arg-type]


def test_labels_beyond_num_classes_refused() -> None:
    model, x, y = setup()
    with pytest.raises(ValueError, match=rf"label {int(y.max())} .* num_classes=5"):
        full(model, x, y, num_classes=5)


def test_negative_labels_refused_before_any_attack() -> None:
    """A label of -1 ran the whole suite, then failed in the per-class table's bincount (or,
    without it, counted the sample as wrong)."""
    model, x, y = setup()
    y = y.clone()
    y[0] = -1
    for per_class in (True, False):
        with pytest.raises(ValueError, match=r"label -1 is out of range for num_classes=10"):
            full(model, x, y, per_class=per_class)


def test_num_classes_other_than_the_models_outputs_refused() -> None:
    """More classes than logits gave per-class rows of NaN for classes never predicted; fewer
    dropped the model's other classes from the table: one line instead, before any attack."""
    model, x, y = setup()
    y = y.clamp(max=4)
    for n in (5, 12):
        with pytest.raises(ValueError, match=rf"returns 10 logits .* num_classes is {n}"):
            full(model, x, y, num_classes=n)
    assert len(full(model, x, y).per_class["clean_acc"]) == 10


def test_attack_instances_instead_of_factories_refused() -> None:
    """The suite is a list of eps -> Attack factories; an Attack instance in their place used to
    fail with "Attack.__call__() missing 2 required positional arguments"."""
    model, x, y = setup()
    with pytest.raises(TypeError, match=r"lambda eps: PGD\(eps"):
        Evaluator([PGD(0.1, steps=2)], [0.1])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"lambda eps: PGD\(eps"):
        evaluate_model(model, x, y, attacks=[PGD(0.1)], eps=[0.1], num_classes=10)  # type: ignore[list-item]


def test_attack_factories_as_a_generator() -> None:
    """A generator of factories is read once: checking it used to use it up, and the suite, the
    sanity checks and the curve then silently ran no attack (robust_acc == {})."""
    model, x, y = setup()
    result = Evaluator((make for make in [pgd]), [0.1]).run(model, x, y)
    assert list(result.robust_acc) == ["pgd2@0.1"]
    ev = evaluate_model(
        model,
        x,
        y,
        attacks=(make for make in [pgd]),
        eps=[0.1],
        num_classes=10,
        curve=CurveSettings(eps=[0.05, 0.1]),
        sanity=SanitySettings(samples=4, checks=("fgsm_baseline",)),
    )
    assert list(ev.result.robust_acc) == ["pgd2@0.1"]
    assert ev.curve is not None and list(ev.curve.series) == ["pgd2"]
    assert ev.sanity is not None and ev.sanity.checks[0].status != "skip"


def test_a_single_factory_where_a_list_belongs_is_named() -> None:
    with pytest.raises(TypeError, match=r"a list of factories .* \[lambda eps: PGD"):
        Evaluator(pgd, [0.1])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"factories that build an attack .* got 'pgd'"):
        Evaluator(["pgd"], [0.1])  # type: ignore[list-item]


def test_empty_inputs() -> None:
    model, x, y = setup()
    assert predict_correct(model, x[:0], y[:0]).shape == (0,)
    assert robust_correct(model, PGD(0.1, steps=1), x[:0], y[:0]).shape == (0,)
    assert predict_correct(model, x[:0], y[:0]).dtype == torch.bool


def test_no_attacks_no_worst_case() -> None:
    """A suite without attacks reports clean accuracy only: its worst case is not available
    (NaN), not the clean accuracy passed off as a robust one."""
    model, x, y = setup()
    ev = evaluate_model(model, x, y, attacks=[], eps=[0.1, 0.2], num_classes=10)
    assert ev.result.robust_acc == {}
    assert list(ev.result.worst_case) == ["0.1", "0.2"]
    assert all(math.isnan(v) for v in ev.result.worst_case.values()), ev.result.worst_case
    assert ev.result.worst_robust == {}
    assert ev.per_class is not None and ev.per_class["worst_case_acc"] == {}
    assert not math.isnan(ev.result.clean_acc)


def test_attacks_sharing_a_metric_key_refused() -> None:
    """APGD at 5 and 2 steps are both apgd_ce@0.1: one row would silently replace the other."""
    model, x, y = setup()
    same = [
        lambda e: build_attack("apgd", eps=e, steps=5),
        lambda e: build_attack("apgd", eps=e, steps=2),
    ]
    with pytest.raises(ValueError, match=r"two attacks have the metric key apgd_ce@0\.1"):
        Evaluator(same, [0.1]).run(model, x, y)
    with pytest.raises(ValueError, match="metric key"):
        evaluate_model(model, x, y, attacks=same, eps=[0.1], num_classes=10)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        # the clean pass counted these as they were and returned a wrong accuracy
        (lambda x: (x * 255).round().to(torch.uint8), "x must be floating point inputs in"),
        (lambda x: x * 255, "inputs must be in \\[0,1\\].*divide by 255"),
        (lambda x: x - 0.5, "inputs must be in \\[0,1\\] \\(normalization belongs inside"),
        (lambda x: torch.full_like(x, math.nan), "inputs hold NaN"),
    ],
)
def test_inputs_the_attacks_refuse_are_refused_by_the_clean_pass(make, message: str) -> None:
    model, x, y = setup()
    bad = make(x)
    with pytest.raises(ValueError, match=message):
        pgd(0.1)(model, bad, y)  # the same words as the attacks
    for call in (
        lambda: accuracy(model, bad, y),
        lambda: predict(model, bad),
        lambda: predict_correct(model, bad, y),
        lambda: evaluate_model(model, bad, y, attacks=[], eps=[0.1], num_classes=10),
    ):
        with pytest.raises(ValueError, match=message):
            call()
