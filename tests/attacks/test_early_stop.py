"""PGD's per-sample early stop: the first iterate that fools each sample is kept, so robust
accuracy is never higher than plain PGD's, and identical when no sample is fooled."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attacks.attack_helpers import N_CLASSES, make_batch, train_briefly
from robustai.attacks import FGSM, PGD


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 8 * 8, N_CLASSES),
    )
    return train_briefly(net)


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    return make_batch(128, seed=7)


@pytest.fixture(params=["drop", "mask"])
def strategy(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways of leaving the loop: fooled samples dropped from the batch (CPU) or masked
    (accelerators, where dropping costs a device sync per step)."""
    monkeypatch.setattr(PGD, "_drops_fooled", staticmethod(lambda device: request.param == "drop"))
    return request.param


def _right(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1) == y


@pytest.mark.parametrize(
    ("norm", "eps", "alpha"), [("linf", 0.15, None), ("linf", 0.2, 0.1), ("l2", 1.0, 0.5)]
)
@pytest.mark.parametrize("random_start", [False, True])
def test_never_more_robust_than_plain_pgd(
    model: nn.Module,
    batch: tuple,
    norm: str,
    eps: float,
    alpha: float | None,
    random_start: bool,
    strategy: str,
) -> None:
    x, y = batch
    plain = PGD(eps, alpha=alpha, steps=10, norm=norm, random_start=random_start)
    torch.manual_seed(3)
    x_plain = plain(model, x, y)
    torch.manual_seed(3)
    x_stop = plain.with_early_stop()(model, x, y)
    robust_plain = _right(model, x, y) & _right(model, x_plain, y)
    robust_stop = _right(model, x, y) & _right(model, x_stop, y)
    assert 0 < int(robust_stop.sum()) < len(y)  # the test means something
    assert not (robust_stop & ~robust_plain).any()
    # robust under early stop: never fooled, so the very same iterates as plain PGD
    torch.testing.assert_close(x_stop[robust_stop], x_plain[robust_stop], atol=1e-6, rtol=0)
    # inside the threat model
    delta = (x_stop - x).flatten(1)
    norms = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert bool((norms <= eps + 1e-5).all()) and x_stop.min() >= 0 and x_stop.max() <= 1


def test_identical_to_plain_pgd_when_no_sample_is_fooled(
    model: nn.Module, batch: tuple, strategy: str
) -> None:
    x, y = batch
    ok = _right(model, x, y)
    x, y = x[ok], y[ok]
    attack = PGD(1e-4, steps=5, random_start=False)
    plain = attack(model, x, y)
    assert _right(model, plain, y).all()
    assert torch.equal(attack.with_early_stop()(model, x, y), plain)


def test_misclassified_samples_are_not_moved(model: nn.Module, batch: tuple, strategy: str) -> None:
    """A sample wrong on x itself is fooled by the first iterate (x, without a random start)."""
    x, y = batch
    y = y.clone()
    y[:10] = (y[:10] + 1) % N_CLASSES  # wrong labels: misclassified before any attack
    wrong = ~_right(model, x, y)
    assert wrong[:10].all()
    x_adv = PGD(0.1, steps=10, random_start=False, early_stop=True)(model, x, y)
    assert torch.equal(x_adv[wrong], x[wrong])


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.15), ("l2", 1.0)])
def test_masking_keeps_the_same_iterates_as_dropping(
    model: nn.Module, batch: tuple, norm: str, eps: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, y = batch
    attack = PGD(eps, steps=10, norm=norm, random_start=False, early_stop=True)
    runs = {}
    for drop in (True, False):
        monkeypatch.setattr(PGD, "_drops_fooled", staticmethod(lambda device, d=drop: d))
        runs[drop] = attack(model, x, y)
    fooled = ~_right(model, runs[True], y)
    assert 0 < int(fooled.sum()) < len(y)
    assert torch.equal(~_right(model, runs[False], y), fooled)
    torch.testing.assert_close(runs[False], runs[True], atol=1e-6, rtol=0)


def test_with_early_stop_is_a_copy_and_off_by_default() -> None:
    plain = PGD(0.1)
    stopping = plain.with_early_stop()
    assert plain.early_stop is False and stopping.early_stop is True
    assert stopping.with_early_stop() is stopping
    assert stopping.with_early_stop(False).early_stop is False
    fgsm = FGSM(0.1)
    assert fgsm.with_early_stop() is fgsm  # one step: nothing to stop


class _NoSingleSample(nn.Module):
    """Refuses a batch of one, as a norm layer over a single value does (GroupNorm with one
    channel per group on a 1x1 feature map)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 1:
            raise ValueError("Expected more than 1 value per channel")
        return self.inner(x)


def test_early_stop_never_shrinks_a_batch_to_one_sample(model: nn.Module, batch) -> None:
    x, y = batch
    right = _right(model, x, y)
    idx = right.nonzero()[:3, 0]  # three samples the model gets right
    xs, ys = x[idx], y[idx].clone()
    ys[:2] = (ys[:2] + 1) % N_CLASSES  # two of them labelled wrong: "fooled" at the first iterate
    attack = PGD(0.05, steps=5, random_start=False, early_stop=True)
    out = attack(_NoSingleSample(model), xs, ys)  # dropping both would leave a batch of one
    ref = attack(model, xs, ys)  # the same model, which takes a batch of one
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
    assert torch.equal(out[:2], xs[:2])  # the wrongly labelled rows keep their first iterate


@pytest.mark.parametrize("mode", ["train", "keep"])
def test_no_early_stop_while_a_module_trains_during_the_attack(
    model: nn.Module, batch: tuple, mode: str
) -> None:
    """Under dropout, "fooled" by one draw is not fooled in eval mode, where robust accuracy
    is counted: stopping there reported 0.95 robust against 0.67 for the full attack. Such an
    attack runs every step, drawing exactly what plain PGD draws."""
    x, y = batch
    net = nn.Sequential(nn.Dropout(0.3), model)
    if mode == "keep":
        net.train()  # the attack keeps the mode it finds
    results = []
    for early_stop in (False, True):
        attack = PGD(0.15, steps=10, model_mode=mode, early_stop=early_stop)
        torch.manual_seed(5)
        results.append(attack(net, x, y))
    assert torch.equal(results[0], results[1])
    net.eval()  # and in eval mode early stop still applies
    torch.manual_seed(5)
    stopped = PGD(0.15, steps=10, early_stop=True)(net, x, y)
    torch.manual_seed(5)
    assert not torch.equal(stopped, PGD(0.15, steps=10)(net, x, y))
