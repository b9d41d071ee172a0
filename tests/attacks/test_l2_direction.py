"""L2 steps follow the gradient's direction whatever its size (as a sign step does for L-inf).

A model whose logits are multiplied by a constant has the same predictions and the same true
robustness, but cross-entropy gradients that can fall below 1e-10; dividing by the norm + 1e-10
(torchattacks' PGDL2) then shrinks every step to nothing, and the attack reports robustness that
is not there (a digits CNN with logits times 4.5: PGD-20 L2 at eps 1 kept 0.78 accuracy, 0.065
without the factor).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attacks.attack_helpers import N_CLASSES, make_batch, train_briefly
from robustai.attacks import APGD, APGDT, PGD
from robustai.attacks.base import l2_direction


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: torch.Tensor, factor: float) -> torch.Tensor:
        ctx.factor = factor
        return z.view_as(z)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.factor, None


class GradScaled(nn.Module):
    """The same logits as ``net``, whose input gradients are multiplied by ``factor``: the
    direction of every gradient is unchanged, only its size."""

    def __init__(self, net: nn.Module, factor: float) -> None:
        super().__init__()
        self.net, self.factor = net, factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(_ScaleGrad.apply(x, self.factor))


@pytest.fixture(scope="module")
def net() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, N_CLASSES)
    )
    return train_briefly(model).eval()


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    return make_batch(32, seed=5)


@pytest.mark.parametrize("scale", [1.0, 1e-12, 1e-25, 1e-36])
def test_direction_has_unit_norm_at_any_scale(scale: float) -> None:
    g = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    d = l2_direction(g * scale)
    torch.testing.assert_close(d.flatten(1).norm(dim=1), torch.ones(4), atol=1e-6, rtol=0)
    torch.testing.assert_close(d, l2_direction(g), atol=1e-6, rtol=0)


def test_direction_is_exactly_invariant_to_powers_of_two() -> None:
    g = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    for k in (-100, -40, 0, 40):
        assert torch.equal(l2_direction(g * 2.0**k), l2_direction(g))


def test_direction_of_an_ordinary_gradient_is_grad_over_its_norm() -> None:
    g = torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(1))
    expected = g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    assert torch.equal(l2_direction(g), expected)


def test_zero_gradient_stays_zero() -> None:
    g = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    g[1] = 0.0
    d = l2_direction(g)
    assert torch.isfinite(d).all()
    assert torch.equal(d[1], torch.zeros_like(d[1]))
    torch.testing.assert_close(d[0].norm(), torch.tensor(1.0))


@pytest.mark.parametrize("factor", [2.0**-40, 2.0**-100], ids=["2**-40", "2**-100"])
@pytest.mark.parametrize(
    "make",
    [
        lambda: PGD(1.0, steps=10, random_start=False, norm="l2"),
        lambda: APGD(1.0, steps=20, norm="l2"),
        lambda: APGDT(1.0, steps=20, norm="l2", n_target_classes=2),
    ],
    ids=["pgd", "apgd", "apgd_t"],
)
def test_l2_attacks_do_not_depend_on_the_gradients_size(
    net: nn.Module, batch: tuple, make: object, factor: float
) -> None:
    """Tiny gradients of the same direction give the same iterates: with a power-of-two factor,
    the very same (before, the step shrank: 2**-40 is about 1e-12, below torchattacks' 1e-10)."""
    x, y = batch
    plain = make()(net, x, y)  # type: ignore[operator]
    tiny = make()(GradScaled(net, factor), x, y)  # type: ignore[operator]
    assert (plain - x).flatten(1).norm(dim=1).max() > 0.5  # the attack moved
    torch.testing.assert_close(tiny, plain, atol=0, rtol=0)
