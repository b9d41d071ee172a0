"""Expectation over Transformation (``eot_iter``): gradients averaged over passes of a
randomized model recover what one pass's gradient hides, and change nothing on a deterministic
model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attacks.attack_helpers import make_batch, train_briefly
from robustai.attacks import APGD, APGDT, FGSM, PGD, Square, build_attack
from robustai.data import DataBundle, build_data
from robustai.evaluation import robust_accuracy
from robustai.models import build_model

torchattacks = pytest.importorskip("torchattacks")


class InputNoise(nn.Module):
    """Fresh Gaussian noise on every forward pass (global generator): a randomized model."""

    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.sigma = sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.sigma * torch.randn_like(x)


class NoisyGradient(nn.Module):
    """The identity in its values, but its input gradient is scaled, pixel by pixel, by
    ``1 + N(0, sigma^2)`` drawn afresh on every pass: one pass's gradient points the wrong way on
    about a third of the pixels (sigma 3), the mean over passes the right way. Predictions stay
    those of the model behind it, so robust accuracies are exact, not one draw of many."""

    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.sigma = sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.sigma * torch.randn_like(x) * x
        return x + (n - n.detach())


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


@pytest.fixture(scope="module")
def digits() -> DataBundle:
    return build_data("digits")


@pytest.fixture(scope="module")
def digits_cnn(digits: DataBundle) -> nn.Module:
    """small_cnn trained normally on digits: about half its accuracy left under PGD at 0.1."""
    torch.manual_seed(0)
    net = build_model("small_cnn", digits.input_shape, digits.num_classes, digits.mean, digits.std)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(10):
        for xb, yb in digits.train:
            opt.zero_grad()
            nn.functional.cross_entropy(net(xb), yb).backward()
            opt.step()
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()


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
        lambda k: APGD(0.1, steps=10, eot_iter=k),
        lambda k: APGDT(0.1, steps=5, n_target_classes=2, eot_iter=k),
    ],
    ids=["fgsm", "pgd", "apgd", "apgd_t"],
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


@pytest.mark.parametrize("attack", ["pgd", "apgd"])
def test_eot_finds_what_one_pass_gradients_hide(
    attack: str, digits: DataBundle, digits_cnn: nn.Module
) -> None:
    """Behind NoisyGradient the model classifies as before; one pass's gradients leave most of
    its non-robust samples unbroken, 32 passes find nearly all of them, as on the model alone
    (the random starts and the draws move each figure by a few samples)."""
    x, y = digits.eval.x[:100], digits.eval.y[:100]
    noisy = nn.Sequential(NoisyGradient(3.0), digits_cnn).eval()
    kwargs = {"eps": 0.1, "steps": 20}
    torch.manual_seed(1)
    exposed = robust_accuracy(digits_cnn, build_attack(attack, **kwargs), x, y)
    hidden = robust_accuracy(noisy, build_attack(attack, **kwargs), x, y)
    averaged = robust_accuracy(noisy, build_attack(attack, **kwargs, eot_iter=32), x, y)
    # seen over five seeds: exposed 0.49, hidden 0.85-0.89, averaged 0.49-0.54
    assert 0.2 < exposed < 0.8, exposed  # neither robust nor broken
    assert hidden > exposed + 0.25, (hidden, exposed)
    assert averaged < exposed + 0.1, (averaged, exposed)


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
