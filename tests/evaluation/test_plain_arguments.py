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
