"""Expectation over Transformation (``eot_iter``), the mechanics: torchattacks.EOTPGD's iterates,
eot_iter passes per gradient and nothing else on a deterministic model, no one-draw decisions,
labels and refusals. What it finds on real data: tests/evaluation/test_eot_strength.py."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attacks.attack_helpers import make_batch, train_briefly
from robustai.attacks import APGD, APGDT, FGSM, PGD, Square

torchattacks = pytest.importorskip("torchattacks")


class InputNoise(nn.Module):
    """Fresh Gaussian noise on every forward pass (global generator): a randomized model."""

    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.sigma = sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.sigma * torch.randn_like(x)


class CountingGradientPasses(nn.Module):
    """Counts the forward passes that an input gradient is taken through."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.passes = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.passes += int(x.requires_grad)
        return self.model(x)


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 10))
    return train_briefly(net)


def test_eot_pgd_is_torchattacks_eotpgd_on_a_randomized_model(model: nn.Module) -> None:
    """Same seed, same draws in the same order (the random start, then eot_iter passes per
    step): the same examples as torchattacks.EOTPGD, whose summed gradient has the mean's
    sign."""
    noisy = nn.Sequential(InputNoise(0.2), model).eval()
    x, y = make_batch(32, seed=5)
    torch.manual_seed(7)
    ours = PGD(0.1, alpha=0.02, steps=5, eot_iter=4)(noisy, x, y)
    torch.manual_seed(7)
    ref = torchattacks.EOTPGD(noisy, eps=0.1, alpha=0.02, steps=5, eot_iter=4)(x, y)
    assert torch.equal(ours, ref)
    torch.manual_seed(7)
    plain = PGD(0.1, alpha=0.02, steps=5)(noisy, x, y)
    assert not torch.equal(ours, plain)  # the passes do matter on a randomized model


def test_eot_pgd_does_not_stop_at_one_fooled_draw(model: nn.Module) -> None:
    """Early stop would keep an iterate that one draw misclassified, near the boundary, where the
    next draw may not: with EOT every sample takes every step, early stop or not."""
    noisy = nn.Sequential(InputNoise(0.2), model).eval()
    x, y = make_batch(32, seed=5)
    torch.manual_seed(7)
    stopping = PGD(0.1, steps=5, eot_iter=4, early_stop=True)(noisy, x, y)
    torch.manual_seed(7)
    assert torch.equal(stopping, PGD(0.1, steps=5, eot_iter=4)(noisy, x, y))


@pytest.mark.parametrize(
    "make",
    [
        lambda k: FGSM(0.1, eot_iter=k),
        lambda k: PGD(0.1, steps=5, random_start=False, eot_iter=k),
    ],
    ids=["fgsm", "pgd"],
)
def test_on_a_deterministic_model_eot_only_repeats_passes(model: nn.Module, make) -> None:
    """The mean of equal gradients has their sign: the L-inf examples are those of one pass, at
    eot_iter times the passes per gradient."""
    x, y = make_batch(32, seed=6)
    counted = CountingGradientPasses(model).eval()
    one = make(1)(counted, x, y)
    passes = counted.passes
    counted.passes = 0
    three = make(3)(counted, x, y)
    assert torch.equal(one, three)
    assert passes > 0 and counted.passes == 3 * passes


def test_apgd_averages_every_gradient(model: nn.Module) -> None:
    """One pass per gradient at the start and after each of the steps, eot_iter times."""
    x, y = make_batch(32, seed=6)
    counted = CountingGradientPasses(model).eval()
    APGD(0.1, steps=10, eot_iter=3)(counted, x, y)
    assert counted.passes == 3 * (10 + 1)


class ChannelSum(nn.Module):
    """Sums the colour channels first: autograd hands back the input gradient as an expanded
    view (stride 0 over the channels), which in-place steps cannot write."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.sum(1, keepdim=True).flatten(1))


@pytest.mark.parametrize("eot_iter", [1, 2])
@pytest.mark.parametrize(
    "make",
    [
        lambda k: FGSM(0.1, eot_iter=k),
        lambda k: PGD(0.1, steps=2, eot_iter=k),
        lambda k: PGD(0.5, steps=2, norm="l2", eot_iter=k),
        lambda k: APGD(0.1, steps=3, eot_iter=k),
    ],
    ids=["fgsm", "pgd", "pgd_l2", "apgd"],
)
def test_expanded_input_gradients_are_written_to_a_copy(make, eot_iter: int) -> None:
    torch.manual_seed(0)
    model = ChannelSum().eval()
    x = torch.rand(4, 3, 8, 8)
    y = model(x).argmax(1)  # right on every clean input: APGD attacks only those
    x_adv = make(eot_iter)(model, x, y)
    assert not torch.equal(x_adv, x) and float((x_adv - x).abs().max()) <= 0.5 + 1e-6


@pytest.mark.parametrize("cls", [APGD, APGDT])
def test_apgd_with_eot_attacks_what_one_clean_draw_gets_wrong(model: nn.Module, cls) -> None:
    """Without EOT, APGD leaves alone the samples its clean pass misclassifies (the reference's
    shortcut); with EOT that pass is one draw, so every sample given is attacked."""
    x, y = make_batch(32, seed=8)
    y = (y + 1) % 10  # wrong labels: the clean pass gets almost all of them wrong
    kwargs = {"steps": 3} if cls is APGD else {"steps": 3, "n_target_classes": 2}
    plain = cls(0.1, **kwargs)(model, x, y)
    averaged = cls(0.1, eot_iter=2, **kwargs)(model, x, y)
    moved = (plain != x).flatten(1).any(1)
    assert int(moved.sum()) < 8
    assert bool((averaged != x).flatten(1).any(1).all())


def test_labels_options_and_refusals() -> None:
    assert PGD(0.1, steps=20, eot_iter=4).label == "pgd20_eot4"
    assert PGD(0.1, steps=20, restarts=2, norm="l2", eot_iter=4).label == "pgd20_l2_r2_eot4"
    assert FGSM(0.1, random_start=True, eot_iter=2).label == "fgsm_rs_eot2"
    assert APGD(0.1, loss="dlr", eot_iter=20).label == "apgd_dlr_eot20"
    assert APGDT(0.1).with_eot(5).label == "apgd_t_eot5"
    assert PGD(0.1, steps=20).label == "pgd20"  # eot_iter=1 is the plain attack
    square = Square(0.1)
    assert square.with_eot(8) is square and square.label == "square"  # no gradients to average
    pgd = PGD(0.1)
    copy = pgd.with_eot(4)
    assert copy.eot_iter == 4 and pgd.eot_iter == 1 and pgd.with_eot(1) is pgd
    assert copy.with_eps(0.2).eot_iter == 4
    # a graph would replay one draw of the model's randomness
    assert not PGD(0.1, eot_iter=4).with_cuda_graph()._capturable()
    for bad in (0, -1, 2.5, True, "4"):
        with pytest.raises(ValueError, match="eot_iter must be an integer >= 1"):
            PGD(0.1, eot_iter=bad)
        with pytest.raises(ValueError, match="eot_iter must be an integer >= 1"):
            pgd.with_eot(bad)
