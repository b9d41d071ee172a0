"""FGSM / PGD / PGD-L2 agree with torchattacks (a test-only oracle) step for step."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attacks.attack_helpers import N_CLASSES, make_batch, train_briefly
from robustai.attacks import FGSM, PGD

torchattacks = pytest.importorskip("torchattacks")

ATOL = 1e-6
# L2 steps divide the gradient by its norm, so a last-bit difference between this package's
# input-only gradient and autograd's full backward (how each rounds depends on the CPU's
# kernels) is kept, not absorbed as by a sign step, and grows over the steps: seen up to 1.2e-6 on
# one machine. Still far below any step (>= 0.02) or a different random draw.
L2_ATOL = 1e-5
# torchattacks divides an L2 gradient by its norm + 1e-10, and its loss is the batch mean, so for
# the most confidently classified samples here (per-sample gradient norms from 3e-7) that constant
# changes the step by up to 3e-4 of its length, which grows over the steps past L2_ATOL (up to
# 0.01). This package divides by the norm alone (a model with scaled-up logits, whose gradients
# are tiny, otherwise stalls the attack). The oracle runs with a constant far below every gradient
# norm here, which removes that difference while keeping its guard against 0/0.
ORACLE_L2 = {"eps_for_division": 1e-30}


@pytest.fixture(scope="module")
def model() -> nn.Module:
    """Small conv net with BatchNorm, trained briefly, returned in eval mode."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 8 * 8, N_CLASSES),
    )
    return train_briefly(net)


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    return make_batch(64, seed=99)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


@pytest.mark.parametrize("eps", [2 / 255, 8 / 255, 0.1, 0.3])
def test_fgsm_matches_torchattacks(model: nn.Module, batch: tuple, eps: float) -> None:
    x, y = batch
    ours = FGSM(eps)(model, x, y)
    ref = torchattacks.FGSM(model, eps=eps)(x, y)
    torch.testing.assert_close(ours, ref, atol=ATOL, rtol=0)


@pytest.mark.parametrize("eps", [8 / 255, 0.3])
def test_fgsm_rs_takes_torchattacks_ffgsm_step_from_the_same_start(
    model: nn.Module, batch: tuple, eps: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given the same random start, FGSM-RS is torchattacks.FFGSM bit for bit."""
    import types

    from robustai.attacks import fgsm

    x, y = batch
    torch.manual_seed(3)
    noise = fgsm.uniform_noise(x, eps)
    monkeypatch.setattr(fgsm, "uniform_noise", lambda like, e: noise.clone())
    ours = FGSM(eps, random_start=True)(model, x, y)
    # torchattacks draws torch.randn_like(images).uniform_(-eps, eps): hand it the same noise
    drawn = types.SimpleNamespace(uniform_=lambda *a: noise)
    monkeypatch.setattr(torch, "randn_like", lambda t: drawn)
    ref = torchattacks.FFGSM(model, eps=eps, alpha=1.25 * eps)(x, y)
    assert torch.equal(ours, ref)
    assert not torch.equal(ours, FGSM(eps, alpha=1.25 * eps)(model, x, y))  # the start matters


def test_uniform_noise_is_uniform_on_the_open_ball_and_seeded() -> None:
    from robustai.attacks.fgsm import uniform_noise

    eps = 0.3
    like = torch.empty(100_001)  # odd: one draw gives two elements
    torch.manual_seed(0)
    a = uniform_noise(like, eps)
    torch.manual_seed(0)
    assert torch.equal(a, uniform_noise(like, eps))
    assert a.shape == like.shape and a.dtype == like.dtype
    assert -eps < a.min().item() < -eps * 0.999 and eps * 0.999 < a.max().item() < eps
    # 32768 evenly spaced levels, symmetric about 0
    levels = (a + eps) / (2 * eps / 32768) - 0.5
    torch.testing.assert_close(levels, levels.round(), atol=1e-2, rtol=0)
    assert abs(a.mean().item()) < 6 * (eps / 3**0.5) / like.numel() ** 0.5  # six standard errors
    counts = torch.histc(a, bins=20, min=-eps, max=eps)
    expected = like.numel() / 20
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 43.8  # 99.9% quantile of chi-square with 19 degrees of freedom
    assert uniform_noise(torch.empty(2, 3, dtype=torch.float64), eps).dtype == torch.float64


@pytest.mark.parametrize(("eps", "alpha", "steps"), [(8 / 255, 2 / 255, 10), (0.1, 0.02, 7)])
def test_pgd_linf_matches_torchattacks(
    model: nn.Module, batch: tuple, eps: float, alpha: float, steps: int
) -> None:
    x, y = batch
    ours = PGD(eps, alpha=alpha, steps=steps, random_start=False)(model, x, y)
    ref = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=False)(x, y)
    torch.testing.assert_close(ours, ref, atol=ATOL, rtol=0)


@pytest.mark.parametrize(("eps", "alpha", "steps"), [(0.5, 0.1, 10), (1.0, 0.25, 5)])
def test_pgd_l2_matches_torchattacks(
    model: nn.Module, batch: tuple, eps: float, alpha: float, steps: int
) -> None:
    x, y = batch
    ours = PGD(eps, alpha=alpha, steps=steps, random_start=False, norm="l2")(model, x, y)
    ref = torchattacks.PGDL2(
        model, eps=eps, alpha=alpha, steps=steps, random_start=False, **ORACLE_L2
    )(x, y)
    torch.testing.assert_close(ours, ref, atol=L2_ATOL, rtol=0)


def test_pgd_default_alpha_matches_torchattacks(model: nn.Module, batch: tuple) -> None:
    """Default alpha = 2.5 * eps / steps (Madry et al. 2018), same trajectory as the oracle."""
    x, y = batch
    eps, steps = 8 / 255, 10
    ours = PGD(eps, steps=steps, random_start=False)(model, x, y)
    ref = torchattacks.PGD(
        model, eps=eps, alpha=2.5 * eps / steps, steps=steps, random_start=False
    )(x, y)
    torch.testing.assert_close(ours, ref, atol=ATOL, rtol=0)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_random_start_matches_torchattacks_with_same_seed(
    model: nn.Module, batch: tuple, norm: str
) -> None:
    """Random starts draw from the same distributions in the same order as torchattacks."""
    x, y = batch
    eps = 8 / 255 if norm == "linf" else 0.5
    alpha = eps / 4
    torch.manual_seed(7)
    ours = PGD(eps, alpha=alpha, steps=5, norm=norm)(model, x, y)
    torch.manual_seed(7)
    if norm == "linf":
        ref = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=5, random_start=True)(x, y)
    else:
        oracle = torchattacks.PGDL2(model, eps=eps, alpha=alpha, steps=5, **ORACLE_L2)
        ref = oracle(x, y)
    torch.testing.assert_close(ours, ref, atol=ATOL if norm == "linf" else L2_ATOL, rtol=0)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_restarts_never_weaker(model: nn.Module, batch: tuple, norm: str) -> None:
    """restarts=3 keeps every sample restart 1 already fooled, so robust accuracy can only
    drop; samples not fooled keep the example with the highest loss."""
    x, y = batch
    eps = 0.1 if norm == "linf" else 1.0
    kwargs = {"eps": eps, "steps": 3, "random_start": True, "norm": norm}
    torch.manual_seed(0)
    one = PGD(restarts=1, **kwargs)(model, x, y)
    torch.manual_seed(0)
    three = PGD(restarts=3, **kwargs)(model, x, y)

    acc_clean, acc1, acc3 = (accuracy(model, z, y) for z in (x, one, three))
    assert 0.0 < acc1 < acc_clean, "setting does not exercise the restart logic"
    assert acc3 <= acc1
    with torch.no_grad():
        out1, out3 = model(one), model(three)
        fooled1, fooled3 = out1.argmax(1) != y, out3.argmax(1) != y
        loss1 = nn.functional.cross_entropy(out1, y, reduction="none")
        loss3 = nn.functional.cross_entropy(out3, y, reduction="none")
    assert bool((fooled3 | ~fooled1).all()), "a sample fooled by restart 1 was lost"
    still_correct = ~fooled3
    assert bool((loss3[still_correct] >= loss1[still_correct] - 1e-6).all())
