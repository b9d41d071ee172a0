"""Inputs at the edges of what the attacks take: gradients holding NaN or inf, eps warm-up
through 0, logits wider than the inputs, shrinking batches in train mode, flags and radii
outside their range."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from attacks.attack_helpers import N_CLASSES, make_batch
from robustai.attacks import APGD, APGDT, FGSM, PGD, Square
from robustai.attacks.base import l2_direction
from robustai.evaluation import robust_accuracy


class Sqrt(nn.Module):
    """sqrt of the input: its gradient at an input of 0 is inf (and NaN after a zero weight)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sqrt()


def _sqrt_net() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    net = nn.Sequential(Sqrt(), nn.Flatten(), nn.Linear(64, N_CLASSES)).eval()
    x = torch.rand(16, 1, 8, 8)
    x[:, :, 0, 0] = 0.0  # a pixel at 0: infinite input gradient there
    with torch.no_grad():
        y = net(x).argmax(1)
    return net, x, y


def test_l2_direction_of_gradients_with_nan_or_inf() -> None:
    grad = torch.tensor(
        [
            [3.0, float("nan"), 4.0],  # NaN counts as 0
            [float("inf"), 5.0, float("-inf")],  # along the infinite entries alone
            [0.0, 0.0, 0.0],  # stays zero
        ]
    )
    out = l2_direction(grad)
    assert torch.allclose(out[0], torch.tensor([0.6, 0.0, 0.8]))
    assert torch.allclose(out[1], torch.tensor([1.0, 0.0, -1.0]) / 2**0.5)
    assert torch.equal(out[2], torch.zeros(3))


@pytest.mark.parametrize(
    "make", [lambda: PGD(0.5, norm="l2", steps=5), lambda: APGD(0.5, norm="l2", steps=5)]
)
def test_l2_attacks_stay_finite_where_the_gradient_is_not(make) -> None:
    """A model with an infinite input gradient at some pixel made every L2 example NaN, and the
    robust accuracy 0: the NaN logits count as no prediction."""
    net, x, y = _sqrt_net()
    attack = make()
    x_adv = attack(net, x, y)
    assert torch.isfinite(x_adv).all()
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    assert float((x_adv - x).flatten(1).norm(dim=1).max()) <= 0.5 + 1e-5
    with torch.no_grad():
        assert torch.isfinite(net(x_adv)).all()
    # it still attacks: the model is a plain linear one past the square root
    assert 0.0 < robust_accuracy(net, attack, x, y) < 1.0


@pytest.mark.parametrize(
    ("make", "attr", "value"),
    [
        (lambda: PGD(0.3, alpha=0.05, steps=10), "alpha", 0.05),
        (lambda: PGD(0.3, steps=10), "alpha", 0.075),
        (lambda: FGSM(0.1, alpha=0.1), "alpha", 0.1),
    ],
)
def test_eps_warm_up_through_zero_keeps_the_step_size_ratio(make, attr, value) -> None:
    """with_eps(0) then with_eps(eps) is the attack again: an explicit step size scaled to 0 at
    eps 0 stayed 0, an attack that did nothing."""
    attack = make()
    back = attack.with_eps(0.0).with_eps(attack.eps)
    assert getattr(back, attr) == pytest.approx(getattr(attack, attr))
    assert getattr(back, attr) == pytest.approx(value)
    half = attack.with_eps(0.0).with_eps(attack.eps / 2)
    assert getattr(half, attr) == pytest.approx(getattr(attack, attr) / 2)
    x, y = make_batch(8, seed=3)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, N_CLASSES)).eval()
    assert not torch.equal(back(net, x, y), x)


class Float64Logits(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.f = nn.Linear(64, N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.f(x.flatten(1)).double()


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_square_with_logits_wider_than_the_inputs(norm: str) -> None:
    """float32 inputs into a model returning float64 logits (as a float64 model does, which the
    attacks take): Square failed writing float64 margins into a float32 tensor."""
    torch.manual_seed(0)
    net = Float64Logits().eval()
    x, _ = make_batch(8, seed=2)
    with torch.no_grad():
        y = net(x).argmax(1)
    eps = 0.1 if norm == "linf" else 1.0
    x_adv = Square(eps, norm=norm, n_queries=20)(net, x, y)
    assert x_adv.dtype == torch.float32 and x_adv.shape == x.shape


def _one_left_batch() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """Two samples and a model with batch norm over them: in train mode each feature is +-1
    whatever the inputs, so the second sample cannot be fooled; the first is misclassified from
    the start. An attack that goes on with the samples not yet fooled is left with one, which
    batch norm in train mode refuses."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 8), nn.BatchNorm1d(8), nn.Linear(8, N_CLASSES)
    ).eval()
    x = torch.full((2, 1, 8, 8), 0.25)
    x[1] = 0.75  # far apart: an eps of 0.001 flips no feature's sign between them
    with torch.no_grad():
        pred = net.train()(x).argmax(1)
    net.eval()
    y = torch.stack([(pred[0] + 1) % N_CLASSES, pred[1]])
    return net, x, y


@pytest.mark.parametrize(
    "make",
    [
        lambda: PGD(0.001, steps=2, restarts=3, model_mode="train"),
        lambda: APGD(0.001, steps=2, model_mode="train"),
        lambda: APGD(0.001, steps=2, restarts=2, model_mode="train"),
        lambda: APGDT(0.001, steps=2, n_target_classes=2, model_mode="train"),
    ],
)
def test_train_mode_attacks_keep_the_whole_batch(make) -> None:
    net, x, y = _one_left_batch()
    x_adv = make()(net, x, y)
    assert x_adv.shape == x.shape
    assert not net.training  # mode restored
    assert float((x_adv - x).abs().max()) <= 0.001 + 1e-6
    with torch.no_grad():  # the second sample was left alone and stayed unfooled
        assert int(net.train()(x_adv).argmax(1)[1]) == int(y[1])


@pytest.mark.parametrize(
    "make",
    [
        lambda: PGD(0.1, random_start="False"),
        lambda: PGD(0.1, early_stop="no"),
        lambda: FGSM(0.1, random_start=1),
    ],
)
def test_flags_given_as_text_or_numbers_are_refused(make) -> None:
    """bool("False") is True: a flag given as text silently meant the opposite."""
    with pytest.raises(TypeError, match="must be True or False"):
        make()


def test_numpy_bools_are_flags() -> None:
    assert PGD(0.1, early_stop=np.bool_(True)).early_stop is True
    assert FGSM(0.1, random_start=np.bool_(False)).random_start is False


@pytest.mark.parametrize("make", [lambda e: PGD(e, norm="l2"), lambda e: Square(e, norm="l2")])
def test_l2_radius_is_bounded(make) -> None:
    """Radii far past sqrt(d) overflowed float32: PGD returned x unchanged (robust accuracy =
    clean accuracy) and Square NaN."""
    with pytest.raises(ValueError, match=r"eps must be a number in \[0, 10000\]"):
        make(1e20)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, N_CLASSES)).eval()
    x, y = make_batch(8, seed=4)
    x_adv = make(1e4)(net, x, y)
    assert torch.isfinite(x_adv).all()


@pytest.mark.parametrize(
    "make", [lambda a: PGD(8 / 255, alpha=a), lambda a: FGSM(8 / 255, alpha=a)], ids=["pgd", "fgsm"]
)
def test_an_linf_step_in_0_to_255_units_is_refused(make) -> None:
    """alpha=2 (for 2/255) was taken: the projection cut every step to eps, without a word."""
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\] \(pixel units, e.g. 2/255\)"):
        make(2)
    assert make(1.0).alpha == 1.0
    assert PGD(1.0, norm="l2", alpha=2.0).alpha == 2.0  # an L2 step may exceed 1
