"""APGD (CE / DLR, L-inf / L2), APGD-T and Square agree with torchattacks' implementations (an
independent, test-only reference) on a fixed model and batch: robust accuracy within one point."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attacks.attack_helpers import N_CLASSES, make_batch, train_briefly
from robustai.attacks import APGD, APGDT, Square, build_attack
from robustai.attacks.apgd import MOMENTUM, dlr_loss, targeted_dlr_loss
from robustai.attacks.square import margin

torchattacks = pytest.importorskip("torchattacks")

TOLERANCE = 0.01  # one percentage point of robust accuracy


@pytest.fixture(scope="module")
def model() -> nn.Module:
    """A small conv net trained briefly on the synthetic task, in eval mode."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 64, N_CLASSES)
    )
    return train_briefly(net)


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    return make_batch(200, seed=99)


def robust_acc(model: nn.Module, x_adv: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        ok = (model(x).argmax(1) == y) & (model(x_adv).argmax(1) == y)
    return ok.float().mean().item()


def assert_agrees(model: nn.Module, batch: tuple, ours: torch.Tensor, ref: torch.Tensor) -> None:
    x, y = batch
    a, b = robust_acc(model, ours, x, y), robust_acc(model, ref, x, y)
    assert 0.05 < b < 0.95, f"reference accuracy {b}: the setting does not discriminate"
    assert abs(a - b) <= TOLERANCE, f"robustai {a:.3f} vs torchattacks {b:.3f}"


# ------------------------------------------------------------------ reference defaults
def test_defaults_are_the_papers() -> None:
    a = APGD(0.1)
    assert (a.steps, a.restarts, a.rho, a.loss, a.seed) == (100, 1, 0.75, "ce", 0)
    assert MOMENTUM == 0.75
    t = APGDT(0.1)
    assert (t.steps, t.restarts, t.n_target_classes, t.loss) == (100, 1, 9, "dlr")
    s = Square(0.1)
    assert (s.n_queries, s.p_init, s.restarts, s.seed) == (5000, 0.8, 1, 0)
    assert Square.supported_norms == ("linf", "l2")
    assert [build_attack(n, eps=0.1).label for n in ("apgd", "apgd_t", "square")] == [
        "apgd_ce",
        "apgd_t",
        "square",
    ]
    assert build_attack("apgd", eps=0.1, loss="dlr", norm="l2").label == "apgd_dlr_l2"
    assert build_attack("square", eps=1.0, norm="l2").label == "square_l2"


def test_p_schedule_matches_the_reference() -> None:
    ours = Square(0.1, n_queries=5000)
    ref = torchattacks.Square(nn.Identity(), eps=0.1, n_queries=5000, p_init=0.8)
    for it in [0, 5, 6, 25, 26, 100, 101, 250, 251, 500, 501, 1000, 1001, 2000, 2001, 3000, 4999]:
        assert ours.p_selection(it) == pytest.approx(ref.p_selection(it)), it


def test_losses_match_the_reference() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(32, N_CLASSES, generator=g)
    y = torch.randint(0, N_CLASSES, (32,), generator=g)
    y_t = (y + 1) % N_CLASSES
    ref_apgd = torchattacks.APGD(nn.Identity())
    ref_t = torchattacks.APGDT(nn.Identity())
    torch.testing.assert_close(dlr_loss(logits, y), ref_apgd.dlr_loss(logits, y))
    torch.testing.assert_close(
        targeted_dlr_loss(logits, y, y_t), ref_t.dlr_loss_targeted(logits, y, y_t)
    )
    # margin: positive exactly when the true class has the largest logit
    assert torch.equal(margin(logits, y) > 0, logits.argmax(1) == y)


def test_dlr_is_invariant_to_logit_scale() -> None:
    """Why APGD-DLR sees through a saturated softmax: scaling the logits changes nothing."""
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(16, N_CLASSES, generator=g, dtype=torch.float64)
    y = torch.randint(0, N_CLASSES, (16,), generator=g)
    torch.testing.assert_close(dlr_loss(1e4 * logits, y), dlr_loss(logits, y))


# ------------------------------------------------------------------ agreement
@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.15), ("l2", 1.0)])
@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_apgd_agrees_with_torchattacks(
    model: nn.Module, batch: tuple, norm: str, eps: float, loss: str
) -> None:
    x, y = batch
    ours = APGD(eps, norm=norm, loss=loss)(model, x, y)
    ref = torchattacks.APGD(
        model, norm={"linf": "Linf", "l2": "L2"}[norm], eps=eps, steps=100, loss=loss, seed=0
    )(x, y)
    assert_agrees(model, batch, ours, ref)


def test_apgdt_agrees_with_torchattacks(model: nn.Module, batch: tuple) -> None:
    x, y = batch
    ours = APGDT(0.15)(model, x, y)
    ref = torchattacks.APGDT(model, eps=0.15, steps=100, n_classes=N_CLASSES, seed=0)(x, y)
    assert_agrees(model, batch, ours, ref)


def test_square_agrees_with_torchattacks(model: nn.Module, batch: tuple) -> None:
    x, y = batch
    ours = Square(0.15, n_queries=1000)(model, x, y)
    ref = torchattacks.Square(model, eps=0.15, n_queries=1000, p_init=0.8, seed=0)(x, y)
    assert_agrees(model, batch, ours, ref)


@pytest.mark.parametrize("eps", [1.0, 1.5])
def test_square_l2_agrees_with_torchattacks(model: nn.Module, batch: tuple, eps: float) -> None:
    x, y = batch
    ours = Square(eps, norm="l2", n_queries=1000)(model, x, y)
    ref = torchattacks.Square(model, norm="L2", eps=eps, n_queries=1000, p_init=0.8, seed=0)(x, y)
    if eps == 1.0:  # a budget where the search fools few samples: agreement, not discrimination
        assert robust_acc(model, ours, x, y) == robust_acc(model, ref, x, y)
    else:
        assert_agrees(model, batch, ours, ref)


def test_square_l2_stays_in_its_ball(model: nn.Module, batch: tuple) -> None:
    x, y = batch
    x_adv = Square(1.5, norm="l2", n_queries=200)(model, x, y)
    assert float((x_adv - x).flatten(1).norm(dim=1).max()) <= 1.5 + 1e-4
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    assert robust_acc(model, x_adv, x, y) < robust_acc(model, x, x, y)


# ------------------------------------------------------------------ properties
def test_seeded_and_leaves_the_global_generator_alone(model: nn.Module, batch: tuple) -> None:
    """Same seed, same examples; the attacks draw from their own generator."""
    x, y = batch[0][:32], batch[1][:32]
    for attack in (APGD(0.15, steps=10), Square(0.15, n_queries=50)):
        torch.manual_seed(123)
        a = attack(model, x, y)
        after_a = torch.rand(3)
        torch.manual_seed(123)
        b = attack(model, x, y)
        assert torch.equal(a, b)
        assert torch.equal(after_a, torch.rand(3))
        torch.manual_seed(123)
        assert torch.equal(after_a, torch.rand(3)), "the attack consumed global random numbers"


@pytest.mark.parametrize("seed", [2**70, -1, 0.5])
def test_a_seed_torch_cannot_take_is_refused_when_the_attack_is_made(seed: object) -> None:
    """2**70 was accepted and failed with torch's "Overflow when unpacking long long" at the
    first attack, after a whole training run when the attack was an evaluation's."""
    for cls in (APGD, APGDT, Square):
        with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*64\)"):
            cls(0.1, seed=seed)  # type: ignore[arg-type]
    APGD(0.1, seed=2**64 - 1)  # the largest torch takes


class _NoBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        raise AssertionError("Square must not take gradients")


def test_square_needs_no_gradient(model: nn.Module, batch: tuple) -> None:
    """A model whose backward pass raises still gets attacked by Square (score-based)."""
    x, y = batch

    class Opaque(nn.Module):
        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return model(_NoBackward.apply(z))

    opaque = Opaque().eval()
    x_adv = Square(0.2, n_queries=200)(opaque, x, y)
    assert robust_acc(model, x_adv, x, y) < robust_acc(model, x, x, y) - 0.3
    assert Square.gradient_free
    with pytest.raises(AssertionError, match="must not take gradients"):
        APGD(0.2, steps=2)(opaque, x, y)


def test_unfooled_samples_come_back_at_their_best_point(model: nn.Module, batch: tuple) -> None:
    """Samples APGD does not fool are returned at the highest-loss point it found, still
    classified correctly and inside the ball."""
    x, y = batch
    x_adv = APGD(0.1, steps=20)(model, x, y)
    with torch.no_grad():
        right = model(x_adv).argmax(1) == y
        loss_adv = nn.functional.cross_entropy(model(x_adv), y, reduction="none")
        loss_clean = nn.functional.cross_entropy(model(x), y, reduction="none")
    assert bool(right.any())
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6
    assert bool((loss_adv[right] > loss_clean[right]).all())


class CappedLogits(nn.Module):
    """Three classes scored by the mean pixel ``s`` with logits capped at 1: classes 0 and 1
    tie at the cap for ``0.4 <= s <= 0.6`` (argmax then says 0, the label), and only
    ``s > 0.6`` misclassifies. Capped or quantized logits make such ties common."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.flatten(1).mean(1)
        z0 = torch.clamp(10 * (0.7 - s), max=1.0)
        z1 = torch.clamp(10 * (s - 0.3), max=1.0)
        return torch.stack([z0, z1, torch.full_like(s, -5.0)], dim=1)


def test_square_searches_on_from_a_tie_that_argmax_breaks_for_the_label() -> None:
    """A margin of 0 is not a misclassification when argmax breaks the tie for y: Square must
    go on searching there (the reference's ``margin > 0`` test stops, and 2 of these 8 samples
    were counted robust at any query budget), and it finds s > 0.6 in the ball for every one."""
    g = torch.Generator().manual_seed(0)
    x = 0.3 + 0.05 * torch.rand((8, 1, 8, 8), generator=g)
    y = torch.zeros(8, dtype=torch.long)
    model = CappedLogits()
    assert bool((model(x).argmax(1) == y).all())
    x_adv = Square(0.4, n_queries=50)(model, x, y)
    assert (x_adv - x).abs().max() <= 0.4 + 1e-6
    with torch.no_grad():
        assert (model(x_adv).argmax(1) != y).all(), model(x_adv)
