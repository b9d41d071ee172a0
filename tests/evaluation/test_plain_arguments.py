"""Plausible arguments from a notebook: NumPy eps lists, one check's name, a factory where an
attack belongs. Each works or is refused naming the argument."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustai.attacks import PGD
from robustai.evaluation import Evaluator, SanitySettings, accuracy, robust_accuracy


def test_eps_as_a_numpy_array_or_tensor() -> None:
    make = [lambda e: PGD(e, steps=2)]
    assert Evaluator(make, np.array([0.05, 0.1])).eps == [0.05, 0.1]
    assert Evaluator(make, torch.tensor([0.25])).eps == [0.25]


def test_one_sanity_check_by_name() -> None:
    assert SanitySettings(checks="gradients").checks == ("gradients",)  # not its letters


def test_a_factory_where_an_attack_belongs_is_named() -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    x, y = torch.rand(3, 1, 2, 2), torch.tensor([0, 1, 0])
    with pytest.raises(TypeError, match=r"attack must be an Attack.*a factory\?"):
        robust_accuracy(model, lambda e: PGD(e), x, y)  # type: ignore[arg-type]


def test_accuracy_refuses_labels_the_model_has_no_logit_for() -> None:
    """As the attacks do: such a sample was counted wrong, silently (accuracy 0.0)."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    x = torch.rand(3, 1, 2, 2)
    with pytest.raises(ValueError, match="label 10 is out of range for a model with 2 outputs"):
        accuracy(model, x, torch.tensor([0, 10, 1]))
    with pytest.raises(ValueError, match="class indices >= 0"):
        accuracy(model, x, torch.tensor([0, -1, 1]))
    assert 0.0 <= accuracy(model, x, torch.tensor([0, 1, 1])) <= 1.0


def test_numpy_inputs_are_named_before_the_model_sees_them() -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    x, y = torch.rand(3, 1, 2, 2), torch.tensor([0, 1, 0])
    with pytest.raises(TypeError, match=r"x must be a tensor.*torch\.as_tensor"):
        Evaluator([lambda e: PGD(e, steps=1)], [0.1]).run(model, x.numpy(), y)  # type: ignore[arg-type]


def test_a_float64_batch_into_a_float32_model_is_named() -> None:
    """``torch.as_tensor`` of a NumPy image array is float64: it failed inside the first layer
    with torch's "Input type (double) and bias type (float)". Narrower floats are widened by the
    model's normalization and stay accepted, as does float64 into a float64 model."""
    from robustai.models import build_model

    model = build_model("small_cnn", input_shape=(1, 8, 8), num_classes=3)
    x, y = torch.rand(4, 1, 8, 8, dtype=torch.float64), torch.tensor([0, 1, 2, 0])
    for call in (
        lambda: accuracy(model, x, y),
        lambda: robust_accuracy(model, PGD(0.1, steps=2), x, y),
        lambda: PGD(0.1, steps=2)(model, x, y),
    ):
        with pytest.raises(ValueError, match=r"x is torch.float64 but the model's parameters are"):
            call()
    assert 0.0 <= accuracy(model, x.half(), y) <= 1.0
    assert 0.0 <= accuracy(model.double(), x, y) <= 1.0


def test_a_path_or_swapped_arguments_where_the_model_belongs_are_named() -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    x, y = torch.rand(3, 1, 2, 2), torch.tensor([0, 1, 0])
    with pytest.raises(TypeError, match="the model and the attack are swapped"):
        robust_accuracy(PGD(0.1), model, x, y)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"got str \(robustai.models.load_model\(path\) loads"):
        accuracy("experiments/run", x, y)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module; got str"):
        robust_accuracy("experiments/run", PGD(0.1), x, y)  # type: ignore[arg-type]


class _Column(torch.nn.Module):
    """Logits of shape (batch, classes, 1): compared with the labels they broadcast into a
    (batch, batch) table, and accuracy came out a wrong number without an error."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.linear, self.kind = torch.nn.Linear(4, 3), kind

    def forward(self, x: torch.Tensor) -> object:
        out = self.linear(x.flatten(1))
        return {"column": out[..., None], "tuple": (out,), "flat": out[:, 0]}[self.kind]


@pytest.mark.parametrize("kind", ["column", "tuple", "flat"])
def test_a_model_output_that_is_not_batch_by_classes_is_named(kind: str) -> None:
    from robustai.evaluation import predict, predict_correct

    x, y = torch.rand(16, 4), torch.randint(0, 3, (16,))
    model = _Column(kind)
    for call in (
        lambda: accuracy(model, x, y),
        lambda: predict(model, x),
        lambda: predict_correct(model, x, y),
    ):
        with pytest.raises(TypeError, match=r"logits of shape \(batch, classes\)"):
            call()


@pytest.mark.parametrize("num_classes", [10.0, "10", None, 0])
def test_num_classes_is_checked_before_any_attack_runs(num_classes: object) -> None:
    """10.0 ran every attack, then failed inside bincount with a TypeError."""
    from robustai.evaluation import evaluate_model

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    x, y = torch.rand(3, 1, 2, 2), torch.tensor([0, 1, 0])
    ran = []

    def make(eps: float) -> PGD:
        ran.append(eps)
        return PGD(eps, steps=1)

    with pytest.raises(ValueError, match="num_classes must be a whole number >= 1"):
        evaluate_model(model, x, y, attacks=[make], eps=[0.1], num_classes=num_classes)  # type: ignore[arg-type]
    assert ran == []


def test_a_flag_given_as_text_is_refused() -> None:
    """early_stop="False" turned early stopping on."""
    from robustai.evaluation import evaluate_model

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    x, y = torch.rand(3, 1, 2, 2), torch.tensor([0, 1, 0])
    make = [lambda e: PGD(e, steps=1)]
    with pytest.raises(TypeError, match="early_stop must be True or False; got 'False'"):
        evaluate_model(model, x, y, attacks=make, eps=[0.1], num_classes=2, early_stop="False")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="early_stop must be True or False"):
        Evaluator(make, [0.1], early_stop="False")  # type: ignore[arg-type]
