"""An evaluation draws its random numbers from seeded generators: the same model and data give
the same numbers whatever ran before, and the caller's random state is left alone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustai.attacks import build_attack
from robustai.data import DataBundle
from robustai.evaluation import evaluate_model


def _pgd_accuracies(model: nn.Module, digits: DataBundle, seed: int | None) -> dict[str, float]:
    x, y = digits.eval.x[:200], digits.eval.y[:200]
    ev = evaluate_model(
        model,
        x,
        y,
        # one PGD step from the random start: its accuracy depends on where the start falls
        attacks=[lambda eps: build_attack("pgd", eps=eps, steps=1, alpha=0.01)],
        eps=[0.2],
        num_classes=10,
        per_class=False,
        seed=seed,
    )
    return ev.result.robust_acc


def test_the_same_seed_gives_the_same_numbers_whatever_ran_before(
    digits_model: nn.Module, digits: DataBundle
) -> None:
    torch.manual_seed(1)
    first = _pgd_accuracies(digits_model, digits, seed=0)
    torch.rand(12345)  # work in between moves torch's generator on
    state = torch.get_rng_state()
    again = _pgd_accuracies(digits_model, digits, seed=0)
    assert again == first
    assert torch.equal(torch.get_rng_state(), state)  # the caller's state is left as it was
    # the draws do matter: unseeded, two evaluations in a row start from other points
    unseeded = {_pgd_accuracies(digits_model, digits, seed=None)["pgd1@0.2"] for _ in range(4)}
    assert len(unseeded) > 1, unseeded
    assert not torch.equal(torch.get_rng_state(), state)


def test_a_seed_that_is_not_an_integer_is_named(
    digits_model: nn.Module, digits: DataBundle
) -> None:
    with pytest.raises(ValueError, match=r"seed must be an integer or None; got 0\.5"):
        _pgd_accuracies(digits_model, digits, seed=0.5)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [2**70, -1])
def test_a_seed_torch_cannot_take_is_named_before_any_attack(
    digits_model: nn.Module, digits: DataBundle, seed: int
) -> None:
    # 2**70 was torch's "Overflow when unpacking long long"; -1 would draw as 2**64 - 1 does
    with pytest.raises(ValueError, match=rf"seed must be in \[0, 2\*\*64\) or None; got {seed}"):
        _pgd_accuracies(digits_model, digits, seed=seed)
