"""Plausible arguments from a notebook: NumPy eps lists, one check's name, a factory where an
attack belongs. Each works or is refused naming the argument."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustai.attacks import PGD
from robustai.evaluation import Evaluator, SanitySettings, robust_accuracy


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
