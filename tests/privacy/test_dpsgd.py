"""DP-SGD over Opacus: accounting, budget, model checks, and DP together with adversarial
training (the attack must not touch Opacus' per-sample state, and only optimizer steps count)."""

from __future__ import annotations

import copy
import logging
import math
import re
import warnings

import pytest
import torch
import torch.nn.functional as F
from opacus.accountants import PRVAccountant
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from robustai.attacks import FGSM
from robustai.data import build_data
from robustai.evaluation import accuracy
from robustai.models import build_model
from robustai.privacy import (
    DPSGD,
    DPSGDMisuse,
    IncompatibleLayerError,
    check_dp_compatible,
    choose_grad_sample_mode,
    make_dp_compatible,
)
from robustai.privacy.accounting import PRV_MAX_EPSILON, epsilon_spent
from robustai.privacy.dpsgd import HOOKS_ON_CUDA_MAX_BYTES
from robustai.training import StandardObjective, Trainer

MODES = ["ghost", "hooks"]
# PyTorch's note that a full backward hook fired on the first layer (whose input needs no
# gradient) is how Opacus' hooks work; the library silences it outside pytest.
pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")


@pytest.fixture(scope="module")
def digits() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    d = build_data("digits", train_size=256)
    return d.train.x, d.train.y, d.eval.x, d.eval.y


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("small_cnn", (1, 8, 8), 10, mean=(0.5,), std=(0.5,))


def _dp(model: nn.Module, x: Tensor, y: Tensor, lr: float = 0.0, **kw: object) -> DPSGD:
    kw = {
        "batch_size": 32,
        "epochs": 1,
        "noise_multiplier": 1.0,
        "noise_seed": 0,
        "accountant": "rdp",  # fast; the PRV default is checked where accounting is the point
        **kw,
    }
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    return DPSGD(model, opt, x, y, **kw)  # type: ignore[arg-type]


def _fit(dp: DPSGD, epochs: int, attack: FGSM | None = None) -> Trainer:
    trainer = Trainer(
        dp.model,
        dp.objective(attack),
        dp.optimizer,
        epochs=epochs,
        callbacks=[dp.callback()],
        progress=False,
    )
    trainer.fit(dp.loader)
    return trainer


class RecordingFGSM(FGSM):
    """FGSM-RS that remembers the adversarial batch it produced."""

    last: Tensor

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        self.last = super().perturb(model, x, y).detach().clone()
        return self.last


def _clipped_sum(model: nn.Module, x: Tensor, y: Tensor, c: float) -> dict[str, Tensor]:
    """Sum over the batch of per-sample gradients clipped to norm ``c``, computed with
    torch.func on a plain copy of the model (no Opacus)."""
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(p: dict[str, Tensor], xi: Tensor, yi: Tensor) -> Tensor:
        return F.cross_entropy(functional_call(model, p, (xi[None],)), yi[None])

    g = vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)
    norms = torch.stack([v.flatten(1).norm(dim=1) for v in g.values()], 1).norm(dim=1)
    factor = (c / (norms + 1e-6)).clamp(max=1.0)
    return {k: torch.einsum("i,i...->...", factor, v) for k, v in g.items()}


# ---------------------------------------------------------------- DP + adversarial training


@pytest.mark.parametrize("mode", MODES)
def test_dp_gradients_are_those_of_the_adversarial_batch(mode: str, digits: tuple) -> None:
    x, y, _, _ = digits
    model = _model()
    reference = copy.deepcopy(model)
    dp = _dp(model, x, y, noise_multiplier=0.0, max_grad_norm=0.5, grad_sample_mode=mode)
    attack = RecordingFGSM(eps=0.1, random_start=True)
    objective = dp.objective(attack)
    xb, yb = next(iter(dp.loader))
    assert len(yb) > 0
    loss, _ = objective(dp.model, xb, yb, 0.0)
    dp.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    dp.optimizer.step()  # lr 0: the weights stay; p.grad holds the noise-free DP gradient
    got = {k.removeprefix("_module."): p.grad for k, p in dp.model.named_parameters()}
    on_adv = _clipped_sum(reference, attack.last, yb, 0.5)
    on_clean = _clipped_sum(reference, xb, yb, 0.5)
    b = dp.loader.expected_batch_size
    for k, g in got.items():
        assert g is not None
        torch.testing.assert_close(g, on_adv[k] / b, rtol=1e-4, atol=1e-6)
    assert any(not torch.allclose(got[k], on_clean[k] / b, atol=1e-5) for k in got)
    assert dp.steps == 1


@pytest.mark.parametrize("mode", MODES)
def test_the_attack_leaves_per_sample_state_alone(mode: str, digits: tuple) -> None:
    x, y, _, _ = digits
    dp = _dp(_model(), x, y, grad_sample_mode=mode)
    attack = FGSM(eps=0.1, random_start=True)
    xb, yb = x[:16], y[:16]
    for model_mode in ("eval", "train"):
        attack.model_mode = model_mode
        attack(dp.model, xb, yb)
    for p in dp.model.parameters():
        assert getattr(p, "grad_sample", None) is None
        assert getattr(p, "_norm_sample", None) is None
        assert getattr(p, "_forward_counter", 0) == 0
        assert p.grad is None
    assert all(not getattr(m, "activations", []) for m in dp.model.modules())
    assert dp.steps == 0
    # Why the hooks are switched off: with Opacus' hooks live, the attack's backward breaks.
    dp.start_training_pass()
    with pytest.raises(ValueError, match="activations"):
        FGSM(eps=0.1)(dp.model, xb, yb)


def test_dp_adversarial_run_trains_and_spends_what_the_clean_dp_run_spends() -> None:
    d = build_data("digits", train_size=512)
    runs = {}
    for name, attack in (("clean", None), ("adv", FGSM(eps=0.1, random_start=True))):
        dp = _dp(_model(), d.train.x, d.train.y, lr=1.0, noise_multiplier=0.8, epochs=4)
        _fit(dp, 4, attack)
        runs[name] = dp
        assert accuracy(dp.release(), d.eval.x, d.eval.y) > 0.4  # chance is 0.1
    clean, adv = runs["clean"], runs["adv"]
    assert adv.steps == clean.steps == 4 * len(clean.loader)
    assert adv.accountant.history == clean.accountant.history
    assert adv.epsilon() == clean.epsilon()



def test_the_training_attack_runs_without_cuda_graphs(
    digits: tuple, caplog: pytest.LogCaptureFixture
) -> None:
    # Poisson batch sizes vary: a graph per size would be captured for most batches (on a GPU,
    # about 100 captures in 160 steps), so the objective takes the eager attack, and says so.
    x, y, _, _ = digits
    dp = _dp(_model(), x, y)
    with caplog.at_level(logging.WARNING, logger="robustai.privacy.dpsgd"):
        graphed = dp.objective(FGSM(eps=0.1).with_cuda_graph())
        eager = dp.objective(FGSM(eps=0.1))
    assert graphed._adv is not None and eager._adv is not None
    assert graphed._adv.attack.cuda_graph is False
    assert graphed._adv.attack.eps == 0.1
    lines = [r.getMessage() for r in caplog.records if "CUDA graphs" in r.getMessage()]
    assert len(lines) == 1 and "runs without CUDA graphs" in lines[0], lines

# ---------------------------------------------------------------- accounting and budget


@pytest.mark.parametrize("mode", MODES)
def test_epsilon_matches_an_independent_opacus_accountant(mode: str, digits: tuple) -> None:
    x, y, _, _ = digits
    dp = _dp(_model(), x, y, lr=0.5, noise_multiplier=1.3, grad_sample_mode=mode, accountant="prv")
    _fit(dp, 1)
    q, steps = 32 / len(x), math.ceil(len(x) / 32)
    assert dp.sample_rate == pytest.approx(q)
    assert dp.steps == steps
    acc = PRVAccountant()
    acc.history = [(1.3, q, steps)]
    assert dp.epsilon() == pytest.approx(acc.get_epsilon(delta=1e-5))
    assert dp.delta == 1e-5


def test_target_epsilon_run_never_overshoots(digits: tuple) -> None:
    x, y, _, _ = digits
    dp = _dp(_model(), x, y, lr=0.5, noise_multiplier=None, target_epsilon=2.0, epochs=2)
    trainer = _fit(dp, 2)
    assert trainer.history[-1].extra["privacy_epsilon"] == dp.epsilon()
    assert 1.9 <= dp.epsilon() <= 2.0
    assert [s.extra["privacy_epsilon"] for s in trainer.history] == sorted(
        s.extra["privacy_epsilon"] for s in trainer.history
    )


def test_max_epsilon_stops_before_the_budget_would_be_exceeded(digits: tuple) -> None:
    x, y, _, _ = digits
    probe = _dp(_model(), x, y)
    one, two = (probe.epsilon_after(k * probe.steps_per_epoch) for k in (1, 2))
    dp = _dp(_model(), x, y, epochs=5, max_epsilon=(one + two) / 2)
    trainer = _fit(dp, 5)
    assert len(trainer.history) == 1
    assert dp.epsilon() == pytest.approx(one) and dp.epsilon() <= dp.max_epsilon
    assert dp.stopped_by_budget
    assert trainer.stop_reason is not None and "privacy.max_epsilon" in trainer.stop_reason
    with pytest.raises(ValueError, match="first epoch"):
        _dp(_model(), x, y, max_epsilon=one / 2)


def test_empty_poisson_batches_still_take_a_noisy_step() -> None:
    x, y = torch.rand(30, 1, 8, 8), torch.randint(0, 10, (30,))
    for mode in MODES:
        dp = _dp(_model(), x, y, lr=0.1, batch_size=1, grad_sample_mode=mode, delta=1e-3)
        trainer = _fit(dp, 2)
        assert dp.steps == 2 * 30  # empty batches (about 1 in 3 here) are steps too
        assert all(math.isfinite(s.loss) for s in trainer.history)


def test_delta_must_be_below_one_over_n(digits: tuple) -> None:
    x, y, _, _ = digits
    with pytest.raises(ValueError, match="1/N"):
        _dp(_model(), x, y, delta=1.0 / len(x))
    with pytest.raises(ValueError, match="exactly one"):
        _dp(_model(), x, y, target_epsilon=1.0)


def test_infinite_noise_or_clipping_norm_is_refused(digits: tuple) -> None:
    """noise_multiplier=inf hung in the accountant; max_grad_norm=inf (no clipping, no bound on
    a sample's influence) trained until the loss became NaN."""
    x, y, _, _ = digits
    with pytest.raises(ValueError, match="noise_multiplier must be a finite number"):
        _dp(_model(), x, y, noise_multiplier=math.inf)
    with pytest.raises(ValueError, match="max_grad_norm must be a finite number"):
        _dp(_model(), x, y, max_grad_norm=math.inf)


def test_arguments_that_would_fail_later_are_refused_at_construction(digits: tuple) -> None:
    """Each used to be taken and to fail at the first step (an optimizer over another model's
    parameters: "'NoneType' object has no attribute 'data'"; float labels: "expected target
    dtype to be Long"), to plan a fraction of an epoch, or never to stop (NaN budget)."""
    x, y, _, _ = digits
    model = _model()
    other = torch.optim.SGD(_model(1).parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"not the model's .* model\.parameters"):
        DPSGD(model, other, x, y, batch_size=32, epochs=1, noise_multiplier=1.0)
    part = torch.optim.SGD(list(model.parameters())[:2], lr=0.1)
    with pytest.raises(ValueError, match=r"trainable parameter '.*' \(and \d+ more\) is not in"):
        DPSGD(model, part, x, y, batch_size=32, epochs=1, noise_multiplier=1.0)
    with pytest.raises(ValueError, match=r"epochs must be a whole number >= 1, got 1\.5"):
        _dp(_model(), x, y, epochs=1.5)
    with pytest.raises(ValueError, match=r"batch_size must be a whole number >= 1, got 10\.5"):
        _dp(_model(), x, y, batch_size=10.5)
    with pytest.raises(ValueError, match="labels y must be class indices"):
        _dp(_model(), x, y.float())
    with pytest.raises(ValueError, match="max_epsilon must be a number > 0"):
        _dp(_model(), x, y, max_epsilon=math.nan)
    # "1.0" failed in a comparison naming no argument, True counted as 1
    for given, message in (
        ({"noise_multiplier": "1.0"}, "noise_multiplier must be a number; got '1.0'"),
        ({"noise_multiplier": None, "target_epsilon": True}, "target_epsilon must be a number"),
        ({"max_grad_norm": "1"}, "max_grad_norm must be a number; got '1'"),
        ({"delta": "1e-5"}, "delta must be a number; got '1e-5'"),
        ({"noise_seed": "abc"}, "noise_seed must be a whole number or None (OS entropy)"),
    ):
        with pytest.raises(TypeError, match=re.escape(message)):
            _dp(_model(), x, y, **given)
    for seed in (-1, 2**70):  # torch's words at the first draw ("Overflow when unpacking")
        with pytest.raises(ValueError, match=re.escape(f"noise_seed={seed}: must be a whole")):
            _dp(_model(), x, y, noise_seed=seed)
    frozen = _model()
    frozen[1].features[0].requires_grad_(False)  # frozen layers need not be in the optimizer
    trainable = [p for p in frozen.parameters() if p.requires_grad]
    DPSGD(
        frozen,
        torch.optim.SGD(trainable, lr=0.1),
        x,
        y.int(),
        batch_size=32,
        epochs=1,
        noise_multiplier=1.0,
        accountant="rdp",
    )


@pytest.mark.parametrize(
    ("noise", "batch_size", "epochs"),
    [
        (1e-9, 32, 1),  # PRV's discretization failed (MemoryError): the run was refused
        (0.1, None, 20),  # PRV overflowed to "no finite bound" (at sample rate 1)
    ],
)
def test_little_noise_under_prv_gets_the_rdp_bound_and_a_warning_before_training(
    noise: float,
    batch_size: int | None,
    epochs: int,
    digits: tuple,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Where epsilon passes PRV_MAX_EPSILON, PRV accounting took minutes a call (a
    target_epsilon of 1000 hung calibration), then overflowed or failed; the RDP bound, looser
    but an upper bound all the same, is reported there, and the run is told before it trains
    that it has no meaningful privacy."""
    x, y, _, _ = digits
    with caplog.at_level(logging.WARNING, logger="robustai.privacy.dpsgd"):
        dp = _dp(
            _model(),
            x,
            y,
            batch_size=batch_size or len(x),
            epochs=epochs,
            noise_multiplier=noise,
            accountant="prv",
        )
    planned = epochs * dp.steps_per_epoch
    rdp = epsilon_spent(noise, dp.sample_rate, planned, dp.delta, "rdp")
    assert PRV_MAX_EPSILON < rdp < math.inf
    assert dp.epsilon_after(planned) == rdp
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        f"reach epsilon {rdp:.4g} (the RDP bound" in m and "no meaningful privacy" in m
        for m in warned
    ), warned


@pytest.mark.parametrize(("noise", "by"), [(0.05, "rdp"), (1.0, "prv")])
def test_the_summary_names_the_accountant_whose_figure_epsilon_is(
    noise: float, by: str, digits: tuple
) -> None:
    """metrics.json said accountant "prv" beside RDP's bound: a reader of the JSON alone took
    the looser figure for PRV's."""
    x, y, _, _ = digits
    dp = _dp(_model(), x, y, lr=0.1, batch_size=len(x), noise_multiplier=noise, accountant="prv")
    _fit(dp, 1)
    summary = dp.summary()
    assert summary["accountant"] == "prv" and summary["epsilon_accountant"] == by
    assert (summary["epsilon"] > PRV_MAX_EPSILON) == (by == "rdp")


def test_checkpoint_state_carries_the_accountant(digits: tuple) -> None:
    x, y, _, _ = digits
    dp = _dp(_model(), x, y, lr=0.1)
    _fit(dp, 1)
    again = _dp(_model(), x, y, lr=0.1)
    again.load_state_dict(dp.state_dict())
    assert again.steps == dp.steps and again.epsilon() == dp.epsilon()


@pytest.mark.parametrize("mode", ["ghost", "hooks"])
def test_checkpoints_and_callbacks_see_the_plain_model(mode: str, digits: tuple) -> None:
    """``unwrap_model`` reaches the model inside Opacus' wrapper while it trains, so its state
    has the keys it has under DDP (see tests/integration/test_distributed.py) and in
    ``weights.safetensors``."""
    from robustai.distributed import unwrap_model

    x, y, _, _ = digits
    model = _model()
    dp = _dp(model, x, y, grad_sample_mode=mode)
    assert dp.model is not model and unwrap_model(dp.model) is model
    assert next(iter(dp.model.state_dict())).startswith("_module.")


def test_release_gives_back_the_plain_model(digits: tuple) -> None:
    x, y, _, _ = digits
    model = _model()
    keys = list(model.state_dict())
    dp = _dp(model, x, y, lr=0.1)
    _fit(dp, 1)
    plain = dp.release()
    assert plain is model and list(plain.state_dict()) == keys
    assert all(not hasattr(p, "grad_sample") for p in plain.parameters())
    plain.eval()
    FGSM(eps=0.1)(plain, x[:8], y[:8])  # no hooks left to trip over


# ---------------------------------------------------------------- misuse


def _weights(model: nn.Module) -> Tensor:
    return torch.cat([p.detach().flatten().clone() for p in model.parameters()])


@pytest.mark.parametrize("mode", MODES)
def test_training_with_the_original_optimizer_is_refused_before_any_update(
    mode: str, digits: tuple
) -> None:
    """It trained without clipping, noise or accounting, and the statement then claimed
    (0, delta)-DP over 0 steps for the trained weights."""
    x, y, _, _ = digits
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    kw = {"noise_multiplier": 1.0, "accountant": "rdp", "grad_sample_mode": mode}
    dp = DPSGD(model, opt, x, y, batch_size=32, epochs=1, **kw)  # type: ignore[arg-type]
    before = _weights(model)
    trainer = Trainer(dp.model, dp.objective(), opt, epochs=1, progress=False)
    with pytest.raises(DPSGDMisuse, match=r"step dp\.optimizer instead"):
        trainer.fit(dp.loader)
    assert torch.equal(_weights(model), before) and dp.steps == 0
    # once released, the optimizer is the caller's again
    plain = dp.release()
    F.cross_entropy(plain(x[:8]), y[:8]).backward()
    opt.step()
    assert not torch.equal(_weights(model), before)


def test_a_scheduler_built_before_dp_sgd_keeps_working_quietly(digits: tuple) -> None:
    """Guarding the optimizer's step must not look to torch like an override behind its
    scheduler's back (a UserWarning each epoch), nor lose the scheduler's wrapper on release."""
    x, y, _, _ = digits
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    dp = DPSGD(model, opt, x, y, batch_size=32, epochs=1, noise_multiplier=1.0, accountant="rdp")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*(optimizer|lr_scheduler)")
        Trainer(dp.model, dp.objective(), dp.optimizer, epochs=1, scheduler=sched,
                progress=False).fit(dp.loader)  # fmt: skip
    assert dp.steps == len(dp.loader)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 ** len(dp.loader))
    plain = dp.release()
    F.cross_entropy(plain(x[:8]), y[:8]).backward()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*(optimizer|lr_scheduler)")
        opt.step()
        sched.step()


@pytest.mark.parametrize("mode", MODES)
def test_a_loss_other_than_dp_sgds_is_refused_before_the_step(mode: str, digits: tuple) -> None:
    """Ghost clipping took a plain loss's unclipped gradients, noised them and counted the step
    as private; per-sample hooks failed deep inside Opacus."""
    x, y, _, _ = digits
    model = _model()
    dp = _dp(model, x, y, lr=0.1, grad_sample_mode=mode)
    before = _weights(model)
    trainer = Trainer(dp.model, StandardObjective(), dp.optimizer, epochs=1, progress=False)
    with pytest.raises(DPSGDMisuse, match=r"compute the loss with dp\.objective\(\)"):
        trainer.fit(dp.loader)
    assert torch.equal(_weights(model), before) and dp.steps == 0


@pytest.mark.parametrize("mode", MODES)
def test_batches_not_drawn_by_the_poisson_loader_are_refused(mode: str, digits: tuple) -> None:
    """A shuffled fixed-size loader is not Poisson sampling: the epsilon would not hold. Training
    over dp.loader then goes on (a refused step left its pass marked as done, and every later
    pass was refused, saying the weights had been updated some other way)."""
    x, y, _, _ = digits
    model = _model()
    dp = _dp(model, x, y, lr=0.1, grad_sample_mode=mode)
    before = _weights(model)
    plain = build_data("digits", train_size=256, batch_size=32).train
    trainer = Trainer(dp.model, dp.objective(), dp.optimizer, epochs=1, progress=False)
    with pytest.raises(DPSGDMisuse, match=r"train over dp\.loader"):
        trainer.fit(plain)
    assert torch.equal(_weights(model), before) and dp.steps == 0
    Trainer(dp.model, dp.objective(), dp.optimizer, epochs=1, progress=False).fit(dp.loader)
    assert dp.steps > 0 and not torch.equal(_weights(model), before)


def test_clean_dp_training_refuses_inputs_outside_the_unit_range(digits: tuple) -> None:
    """As the clean objective and the attacks do: 0..255 images trained a model that every
    evaluation then refuses."""
    x, y, _, _ = digits
    dp = _dp(_model(), x * 255, y, lr=0.1)
    trainer = Trainer(dp.model, dp.objective(), dp.optimizer, epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"training inputs must be in \[0,1\]"):
        trainer.fit(dp.loader)
    assert dp.steps == 0


def test_a_dp_loss_left_without_its_step_is_refused_at_the_next_pass(digits: tuple) -> None:
    """The weights were updated some other way in between (e.g. by another optimizer)."""
    x, y, _, _ = digits
    dp = _dp(_model(), x, y, lr=0.1)
    objective = dp.objective()
    xb, yb = next(iter(dp.loader))
    objective(dp.model, xb, yb, 0.0)
    with pytest.raises(DPSGDMisuse, match="not followed by a step"):
        objective(dp.model, xb, yb, 0.0)


# ---------------------------------------------------------------- models


def test_batchnorm_is_refused_naming_the_layer_or_fixed_with_groupnorm() -> None:
    model = build_model("preact_resnet18", (3, 4, 4), 10, width=4)
    with pytest.raises(IncompatibleLayerError, match=r"'1\.layers\.0\.bn1' is BatchNorm2d"):
        check_dp_compatible(model)
    # the way out is named for library callers too, not only as the CLI's config key
    with pytest.raises(IncompatibleLayerError, match=r"make_dp_compatible\(model\)"):
        check_dp_compatible(model)
    fixed, names = make_dp_compatible(model)
    assert names[0] == "1.layers.0.bn1" and len(names) == 17
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fixed.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in fixed.modules())
    check_dp_compatible(fixed)
    x, y = torch.rand(8, 3, 4, 4), torch.randint(0, 10, (8,))
    dp = _dp(fixed, x, y, lr=0.1, batch_size=4, delta=1e-3)
    _fit(dp, 1)
    assert dp.steps == 2


def _norm_net(norm: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), norm, nn.Flatten(), nn.Linear(4 * 6 * 6, 10))


def _frozen_batchnorm() -> nn.Module:
    bn = nn.BatchNorm2d(4)
    bn.requires_grad_(False)
    return bn


@pytest.mark.parametrize(
    "norm, kind",
    [
        (lambda: nn.BatchNorm2d(4, affine=False), "BatchNorm2d"),
        (_frozen_batchnorm, "BatchNorm2d"),
        (lambda: nn.InstanceNorm2d(4, track_running_stats=True), "InstanceNorm2d"),
        (lambda: nn.InstanceNorm2d(4, affine=True, track_running_stats=True), "InstanceNorm2d"),
    ],
)
def test_sample_mixing_norms_are_refused_or_fixed_whatever_their_parameters(
    norm: object, kind: str
) -> None:
    """A BatchNorm with no trainable parameter still normalizes each record with its batch's
    statistics and keeps running statistics of the private data in its buffers, saved with the
    weights and never noised; a frozen layer is no safer than a trained one. A fixed
    InstanceNorm must lose its buffers: PyTorch updates them even without track_running_stats."""
    model = _norm_net(norm())  # type: ignore[operator]
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,))
    with pytest.raises(IncompatibleLayerError, match=f"'1' is {kind}"):
        check_dp_compatible(model)
    with pytest.raises(IncompatibleLayerError):
        _dp(model, x, y, batch_size=4, delta=1e-3)
    fixed, names = make_dp_compatible(model)
    assert names == ["1"]
    check_dp_compatible(fixed)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert {n for n, p in fixed.named_parameters() if not p.requires_grad} == frozen
    fixed.train()
    buffers = [b.clone() for b in fixed.buffers()]
    torch.testing.assert_close(fixed(x)[:1], fixed(x[:1]))  # a record is normalized alone
    assert all(torch.equal(a, b) for a, b in zip(buffers, fixed.buffers(), strict=True))


def test_fixing_batchnorm_does_not_log_a_line_per_layer(caplog: pytest.LogCaptureFixture) -> None:
    model = build_model("preact_resnet18", (3, 4, 4), 10, width=4)
    with caplog.at_level(logging.INFO):
        _, names = make_dp_compatible(model)
    assert len(names) == 17
    assert [r.getMessage() for r in caplog.records if r.name.startswith("opacus")] == []
    assert logging.getLogger("opacus.validators").level == logging.NOTSET  # put back


@pytest.mark.parametrize("mode", ["ghost", "hooks"])
def test_attaching_dp_sgd_does_not_log_a_line_per_module(
    mode: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opacus' ghost-clipping module logs one INFO line per layer (about 40 for
    preact_resnet18, on every run) once a logging setup such as Hydra's enables its logger
    (Opacus disables it at import); robustai's own line names the mode per layer type."""
    opacus_log = logging.getLogger("opacus.grad_sample.grad_sample_module_fast_gradient_clipping")
    monkeypatch.setattr(opacus_log, "disabled", False)  # as dictConfig leaves it under the CLI
    x, y = torch.rand(64, 1, 8, 8), torch.randint(0, 10, (64,))
    with caplog.at_level(logging.INFO):
        _dp(_model(), x, y, grad_sample_mode=mode)
    assert [r.getMessage() for r in caplog.records if r.name.startswith("opacus")] == []
    assert logging.getLogger("opacus.grad_sample").level == logging.NOTSET  # put back


def _tied(features: int = 4) -> nn.Sequential:
    """Two distinct Linear layers that share their weight and bias."""
    a, b = nn.Linear(features, features), nn.Linear(features, features)
    b.weight, b.bias = a.weight, a.bias
    return nn.Sequential(a, nn.ReLU(), b, nn.ReLU(), nn.Linear(features, 3))


def test_ghost_clipping_where_possible_hooks_for_shared_parameters() -> None:
    mode, info = choose_grad_sample_mode(_model())
    assert mode == "ghost" and "Linear: ghost norm x2" in info
    tied = _tied()
    assert choose_grad_sample_mode(tied)[0] == "hooks"
    with pytest.raises(ValueError, match="shared"):
        choose_grad_sample_mode(tied, "ghost")
    with pytest.raises(ValueError, match="auto, ghost, hooks"):
        choose_grad_sample_mode(tied, "fast")


class _TwoNames(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.l = nn.Linear(8, 8)
        self.seq = nn.Sequential(self.l, nn.ReLU(), nn.Linear(8, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.seq(x)


def _one_step(model: nn.Sequential, x: Tensor, y: Tensor) -> Tensor:
    """The change of the first layer's weight in one DP-SGD step on all of ``x`` without noise
    or clipping."""
    w0 = model[0].weight.detach().clone()
    dp = _dp(
        model, x, y, lr=0.1, batch_size=len(x), noise_multiplier=0.0, max_grad_norm=1e6, delta=1e-3
    )
    xb, yb = next(iter(dp.loader))  # sample rate 1: all of x
    loss, _ = dp.objective()(dp.model, xb, yb, 0.0)
    dp.optimizer.zero_grad()
    loss.backward()
    dp.optimizer.step()
    return w0 - model[0].weight.detach()


def test_a_layer_registered_under_two_names_is_refused_naming_both() -> None:
    """Opacus hooks such a layer once per name: its per-sample gradients came out doubled, and
    clipping and noise with them. Weights tied between distinct layers train correctly."""
    torch.manual_seed(0)
    with pytest.raises(IncompatibleLayerError, match=r"'seq\.0' is the same Linear .* 'l'"):
        check_dp_compatible(_TwoNames())
    x, y = torch.rand(20, 8), torch.randint(0, 3, (20,))  # inputs in [0,1], as everywhere
    with pytest.raises(IncompatibleLayerError, match="register it once"):
        _dp(_TwoNames(), x, y, delta=1e-3)
    a = nn.Linear(8, 8)
    with pytest.raises(IncompatibleLayerError, match=r"'2' is the same Linear .* '0'"):
        check_dp_compatible(nn.Sequential(a, nn.ReLU(), a))
    relu = nn.ReLU()  # no parameters: nothing to count twice
    check_dp_compatible(nn.Sequential(nn.Linear(8, 8), relu, nn.Linear(8, 3), relu))
    frozen = nn.Linear(8, 8).requires_grad_(False)
    check_dp_compatible(nn.Sequential(frozen, nn.ReLU(), frozen, nn.Linear(8, 3)))

    tied = _tied(8)
    reference = copy.deepcopy(tied)
    F.cross_entropy(reference(x), y).backward()
    assert reference[0].weight.grad is not None
    step = _one_step(tied, x, y)
    torch.testing.assert_close(step, 0.1 * reference[0].weight.grad, rtol=1e-4, atol=1e-6)


def test_auto_takes_hooks_on_cuda_for_small_models_only() -> None:
    cuda = torch.device("cuda")  # the choice only; the model itself stays on the CPU here
    small = _model()
    n = sum(p.numel() for p in small.parameters())
    fits = HOOKS_ON_CUDA_MAX_BYTES // (4 * n)  # the largest batch whose gradients fit
    mode, info = choose_grad_sample_mode(small, batch_size=fits, device=cuda)
    assert mode == "hooks" and "on CUDA" in info
    assert choose_grad_sample_mode(small, batch_size=fits + 1, device=cuda)[0] == "ghost"
    assert choose_grad_sample_mode(small, batch_size=fits)[0] == "ghost"  # CPU: ghost
    assert choose_grad_sample_mode(small, device=cuda)[0] == "ghost"  # batch size unknown
    assert choose_grad_sample_mode(small, "ghost", batch_size=1, device=cuda)[0] == "ghost"
    frozen = _model()
    for p in list(frozen.parameters())[:-1]:  # only trainable parameters have per-sample grads
        p.requires_grad_(False)
    assert choose_grad_sample_mode(frozen, batch_size=fits + 1, device=cuda)[0] == "hooks"


def test_one_hot_labels_are_refused_when_dpsgd_is_built(digits: tuple) -> None:
    """2-D labels were let through to the first step, whose error named the batch's shape."""
    x, y, _, _ = digits
    with pytest.raises(ValueError, match=r"got shape \(256, 10\).*pass y\.argmax\(1\)"):
        _dp(_model(), x, torch.eye(10)[y])


def test_training_past_the_calibrated_epochs_warns_once(
    digits: tuple, caplog: pytest.LogCaptureFixture
) -> None:
    """target_epsilon sizes the noise for DPSGD(epochs=...); a Trainer given more epochs spent
    past the target without a word (max_epsilon is what stops a run)."""
    x, y, _, _ = digits
    dp = _dp(_model(), x, y, noise_multiplier=None, target_epsilon=2.0, epochs=1)
    with caplog.at_level(logging.WARNING, logger="robustai.privacy.dpsgd"):
        _fit(dp, 3)
    warned = [r.getMessage() for r in caplog.records if "past target_epsilon" in r.getMessage()]
    assert len(warned) == 1 and "calibrated for 1 epochs and this is epoch 2" in warned[0]
    assert dp.epsilon() > 2.0  # spent all the same: the warning does not stop the run
    caplog.clear()
    dp = _dp(_model(), x, y, noise_multiplier=None, target_epsilon=2.0, epochs=2)
    with caplog.at_level(logging.WARNING, logger="robustai.privacy.dpsgd"):
        _fit(dp, 2)
    assert not [r for r in caplog.records if "past target_epsilon" in r.getMessage()]
