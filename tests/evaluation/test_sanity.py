"""The sanity checks pass a normally trained model and flag models whose gradients are masked
(non-differentiable input quantization, saturated logits), randomized, or weakly attacked."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
import torch
from torch import nn

from robustai.attacks import PGD, Attack, build_attack
from robustai.data import DataBundle
from robustai.evaluation import (
    CHECKS,
    CurveSettings,
    Evaluation,
    RobustnessCurve,
    SanitySettings,
    evaluate_model,
    run_sanity_checks,
)
from robustai.evaluation.sanity import strengthened
from robustai.models import build_model

EPS = 0.1
N = 100  # evaluated samples (the sanity checks use all of them)

# The suite a user would report, kept cheap: APGD-CE (white-box) and Square (black-box).
SUITE: list[Callable[[float], Attack]] = [
    lambda eps: build_attack("apgd", eps=eps),
    lambda eps: build_attack("square", eps=eps, n_queries=1000),
]


def evaluate(
    model: nn.Module,
    data: DataBundle,
    suite: Sequence[Callable[[float], Attack]] = SUITE,
    curve: CurveSettings | None = None,
) -> Evaluation:
    return evaluate_model(
        model,
        data.eval.x[:N],
        data.eval.y[:N],
        attacks=suite,
        eps=[EPS],
        num_classes=data.num_classes,
        curve=curve,
        sanity=SanitySettings(samples=N),
    )


def statuses(ev: Evaluation) -> dict[str, str]:
    assert ev.sanity is not None
    return {c.name: c.status for c in ev.sanity.checks}


def test_normally_trained_model_passes_every_check(
    digits_model: nn.Module, digits: DataBundle
) -> None:
    ev = evaluate(digits_model, digits, curve=CurveSettings(eps=[0.05, 0.1, 0.2]))
    assert ev.result.clean_acc > 0.95
    assert 0.2 < ev.result.worst_case["0.1"] < 0.8, "the model should be neither robust nor broken"
    assert statuses(ev) == dict.fromkeys(CHECKS, "pass"), [c.line() for c in ev.sanity.checks]
    assert ev.sanity.passed and not ev.sanity.warned


@pytest.mark.parametrize("masking", ["quantized_input", "saturated_logits"])
def test_masked_gradients_are_flagged(
    masking: str, masked_models: dict[str, nn.Module], digits: DataBundle
) -> None:
    """Both maskings keep the clean predictions and fool APGD-CE (robust accuracy near clean
    accuracy), yet three checks see through them."""
    model = masked_models[masking]
    ev = evaluate(model, digits)
    assert ev.result.robust_acc["apgd_ce@0.1"] > 0.9, "the masking should fool the attack"
    s = statuses(ev)
    assert s["gradients"] == "fail"  # exactly zero input gradients
    assert s["large_eps"] == "fail"  # gradient steps cannot even reach chance at eps=0.5
    assert s["black_box"] == "fail"  # Square, which needs no gradient, is far stronger
    assert s["deterministic"] == "pass"
    assert not ev.sanity.passed
    message = ev.sanity.failure_message()
    assert message.startswith("evaluation untrustworthy: ")
    assert "gradients:" in message and "black_box:" in message and "\n" not in message


def test_randomized_forward_is_flagged(
    masked_models: dict[str, nn.Module], digits: DataBundle
) -> None:
    ev = evaluate(masked_models["randomized"], digits)
    check = next(c for c in ev.sanity.checks if c.name == "deterministic")
    assert check.status == "fail"
    assert "EOT" in check.reason
    assert check.details["max_logit_change"] > 0


def test_randomized_forward_attacked_with_eot_passes(
    masked_models: dict[str, nn.Module], digits: DataBundle
) -> None:
    """With eot_iter the suite's gradient attacks and the checks' own ones average their
    gradients; the randomized model is then evaluated as it needs, and the check says so."""
    x, y = digits.eval.x[:N], digits.eval.y[:N]
    pgd = [lambda eps: build_attack("pgd", eps=eps, steps=10)]
    torch.manual_seed(0)
    ev = evaluate_model(
        masked_models["randomized"],
        x,
        y,
        attacks=pgd,
        eps=[EPS],
        num_classes=10,
        sanity=SanitySettings(samples=N, checks=("fgsm_baseline", "deterministic", "convergence")),
        eot_iter=4,
    )
    assert list(ev.result.robust_acc) == ["pgd10_eot4@0.1"]
    assert ev.sanity is not None
    checks = {c.name: c for c in ev.sanity.checks}
    deterministic = checks["deterministic"]
    assert deterministic.status == "pass" and "averaged over 4 passes (EOT)" in deterministic.reason
    assert deterministic.details["eot_iter"] == 4 and deterministic.details["max_logit_change"] > 0
    baseline = checks["fgsm_baseline"].details["attacks"]["pgd10_eot4@0.1"]
    assert baseline["single_step"] == "fgsm_eot4@0.1"  # the checks' own FGSM averages too
    assert "eot_iter=8" in checks["convergence"].details["stronger"]  # 2x passes as well
    assert "2x EOT passes" in checks["convergence"].reason
    # The comparisons use expected accuracies over many draws: one draw's noise (several
    # points on 100 samples) no longer reads as an unconverged or a weak attack.
    assert ev.sanity.passed, [c.line() for c in ev.sanity.checks]


def test_a_suite_built_with_eot_counts_as_eot(
    masked_models: dict[str, nn.Module], digits: DataBundle
) -> None:
    """Attacks built with their own eot_iter keep it; the deterministic check passes only when
    every gradient attack of the suite averages."""
    x, y = digits.eval.x[:40], digits.eval.y[:40]
    only = SanitySettings(samples=40, checks=("deterministic",))
    common = {"eps": [EPS], "num_classes": 10, "sanity": only}
    own = [lambda eps: build_attack("pgd", eps=eps, steps=5, eot_iter=2)]
    plain = [lambda eps: build_attack("fgsm", eps=eps)]
    model = masked_models["randomized"]
    ev = evaluate_model(model, x, y, attacks=own, eot_iter=6, **common)
    assert list(ev.result.robust_acc) == ["pgd5_eot2@0.1"]
    assert ev.sanity is not None and ev.sanity.checks[0].status == "pass"
    ev = evaluate_model(model, x, y, attacks=own, **common)
    assert ev.sanity is not None and ev.sanity.checks[0].details["eot_iter"] == 2
    ev = evaluate_model(model, x, y, attacks=[*own, *plain], **common)
    assert ev.sanity is not None and ev.sanity.checks[0].status == "fail"
    with pytest.raises(ValueError, match="eot_iter must be an integer >= 1"):
        evaluate_model(model, x, y, attacks=own, eot_iter=0, **common)


def test_iterative_attack_weaker_than_fgsm_is_flagged(
    digits_model: nn.Module, digits: DataBundle
) -> None:
    """PGD with a step size far too small does less than one FGSM step: flagged."""
    weak = [lambda eps: build_attack("pgd", eps=eps, steps=5, alpha=eps / 100)]
    s = statuses(evaluate(digits_model, digits, suite=weak))
    assert s["fgsm_baseline"] == "fail"


def test_unconverged_attack_is_flagged(digits_model: nn.Module, digits: DataBundle) -> None:
    """Two short steps without random start: twice the steps find many more examples."""
    short = [lambda eps: build_attack("pgd", eps=eps, steps=2, alpha=eps / 8, random_start=False)]
    ev = evaluate(digits_model, digits, suite=short)
    check = next(c for c in ev.sanity.checks if c.name == "convergence")
    assert check.status == "fail"
    assert check.details["drop"] > 0.03


def test_rising_curve_is_flagged(digits_model: nn.Module, digits: DataBundle) -> None:
    x, y = digits.eval.x[:20], digits.eval.y[:20]
    rising = RobustnessCurve(
        eps=[0.0, 0.1, 0.2, 0.3],
        series={"pgd20": [0.9, 0.5, 0.7, 0.2]},
        worst_case=[0.9, 0.5, 0.7, 0.2],
        samples=100,
        norm="linf",
    )
    falling = RobustnessCurve(
        [0.0, 0.1, 0.2], {"pgd20": [0.9, 0.5, 0.505]}, [0.9, 0.5, 0.5], 100, "linf"
    )  # a rise within one sample is noise
    only = SanitySettings(checks=("monotone_eps",))
    common = {"attacks": [], "eps": [EPS], "num_classes": 10, "settings": only}
    bad = run_sanity_checks(digits_model, x, y, curve=rising, **common)
    assert [c.status for c in bad.checks] == ["fail"]
    assert "eps=0.2" in bad.checks[0].reason
    good = run_sanity_checks(digits_model, x, y, curve=falling, **common)
    assert [c.status for c in good.checks] == ["pass"]
    none = run_sanity_checks(digits_model, x, y, curve=None, **common)
    assert [c.status for c in none.checks] == ["skip"]


def test_a_randomized_curve_may_wobble_by_one_draws_noise(
    digits_model: nn.Module, masked_models: dict[str, nn.Module], digits: DataBundle
) -> None:
    """A rise of 4 points on 200 samples is an attack losing strength on a deterministic model,
    and within one draw's noise on a randomized one (warns from 2.1 / sqrt(200) = 15 points,
    fails from 3 / sqrt(200) = 21)."""
    x, y = digits.eval.x[:20], digits.eval.y[:20]
    only = SanitySettings(checks=("monotone_eps",))

    def status(model: nn.Module, rise: float) -> str:
        values = [0.9, 0.5, 0.5 + rise]
        curve = RobustnessCurve([0.0, 0.1, 0.2], {"pgd20": values}, values, 200, "linf")
        report = run_sanity_checks(
            model, x, y, attacks=[], eps=[EPS], num_classes=10, settings=only, curve=curve
        )
        return report.checks[0].status

    assert status(digits_model, 0.04) == "fail"
    noisy = masked_models["randomized"]
    assert [status(noisy, r) for r in (0.04, 0.18, 0.25)] == ["pass", "warn", "fail"]


def test_report_structure(digits_model: nn.Module, digits: DataBundle) -> None:
    settings = SanitySettings(samples=30, checks=("gradients", "deterministic"))
    report = run_sanity_checks(
        digits_model,
        digits.eval.x,
        digits.eval.y,
        attacks=[],
        eps=[EPS],
        num_classes=10,
        settings=settings,
    )
    d = report.to_dict()
    assert d["passed"] is True and d["failed"] == [] and d["samples"] == 30
    assert list(d["checks"]) == ["gradients", "deterministic"]
    assert all({"status", "reason", "seconds"} <= set(c) for c in d["checks"].values())
    assert report.summary() == "2 passed, 0 warned, 0 failed"


def test_strengthened_attack() -> None:
    pgd = strengthened(PGD(0.1, steps=10), 2)
    assert (pgd.steps, pgd.restarts) == (20, 2)
    assert pgd.alpha == pytest.approx(2.5 * 0.1 / 20)  # the default step follows the steps
    fixed = strengthened(PGD(0.1, steps=10, alpha=0.02, random_start=False), 3)
    assert (fixed.steps, fixed.restarts, fixed.alpha) == (30, 1, 0.02)
    sq = strengthened(build_attack("square", eps=0.1, n_queries=100))
    assert (sq.n_queries, sq.restarts) == (200, 2)  # type: ignore[attr-defined]
    assert strengthened(PGD(0.1, eot_iter=5), 2).eot_iter == 10  # EOT: more passes too
    assert strengthened(PGD(0.1), 2).eot_iter == 1


class _MyPGD(PGD):
    """A user's attack: a PGD subclass under its own name (not in robustai's registry)."""

    name = "my_pgd"


class _SamePGD(PGD):
    """A subclass that keeps the name "pgd": it must not be swapped for robustai's PGD."""


def test_strengthened_keeps_the_attacks_own_class() -> None:
    for cls in (_MyPGD, _SamePGD):
        strong = strengthened(cls(0.1, steps=5), 2)
        assert type(strong) is cls and strong.steps == 10


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match=r"unknown sanity check.*valid: fgsm_baseline"):
        SanitySettings(checks=("gradient",))
    with pytest.raises(ValueError, match="samples"):
        SanitySettings(samples=0)
    # the wrong kind failed inside the checks, after the whole suite had run
    for bad in ({"samples": 50.0}, {"samples": None}, {"black_box_queries": "10"}):
        with pytest.raises(ValueError, match=r"must be a whole number >= 1; got"):
            SanitySettings(**bad)  # type: ignore[arg-type]
    for bad in ({"tolerance": "0.1"}, {"large_eps": None}, {"chance_margin": float("nan")}):
        with pytest.raises(ValueError, match=r"must be a number; got"):
            SanitySettings(**bad)  # type: ignore[arg-type]


def test_checks_leave_the_model_alone(digits_model: nn.Module, digits: DataBundle) -> None:
    model = nn.Sequential(nn.Identity(), digits_model).train()
    before = [p.clone() for p in model.parameters()]
    run_sanity_checks(
        model,
        digits.eval.x[:20],
        digits.eval.y[:20],
        attacks=[lambda eps: build_attack("fgsm", eps=eps)],
        eps=[EPS],
        num_classes=10,
        settings=SanitySettings(samples=20, black_box_queries=20, checks=CHECKS),
    )
    assert model.training
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert all(p.grad is None for p in model.parameters())


class LogSoftmaxOfSaturated(nn.Module):
    """log(softmax(50 z)): a saturated softmax whose log is -inf for the unlikely classes, the
    same -inf on every pass (deterministic, yet inf - inf is NaN)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.log(torch.softmax(50.0 * z, dim=1))


def test_infinite_logits_are_not_called_randomness(
    digits_model: nn.Module, masked_models: dict[str, nn.Module], digits: DataBundle
) -> None:
    model = nn.Sequential(digits_model, LogSoftmaxOfSaturated()).eval()
    x, y = digits.eval.x[:N], digits.eval.y[:N]
    assert torch.isinf(model(x)).any(), "the model should produce -inf logits"
    report = run_sanity_checks(
        model,
        x,
        y,
        attacks=[],
        eps=[EPS],
        num_classes=10,
        settings=SanitySettings(samples=N, checks=("gradients", "deterministic")),
    )
    checks = {c.name: c for c in report.checks}
    assert checks["deterministic"].status == "pass", checks["deterministic"].line()
    assert "infinite or NaN" in checks["deterministic"].reason
    assert checks["gradients"].status == "fail"  # the masking itself is still flagged
    randomized = nn.Sequential(masked_models["randomized"], LogSoftmaxOfSaturated()).eval()
    noisy = run_sanity_checks(
        randomized,
        x,
        y,
        attacks=[],
        eps=[EPS],
        num_classes=10,
        settings=SanitySettings(samples=N, checks=("deterministic",)),
    )
    assert noisy.checks[0].status == "fail" and "EOT" in noisy.checks[0].reason


class ConstantClassifier(nn.Module):
    """Always predicts class 3, whatever the input: weak but honest (robust accuracy is its
    clean accuracy, and its input gradients are exactly zero)."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.eye(10)[3], requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(len(x), -1) + 0.0 * x.flatten(1)[:, :1]


def test_constant_classifier_is_not_called_masked(digits: DataBundle) -> None:
    """No check cries wolf on a model that ignores its input: nothing is over-reported."""
    ev = evaluate(ConstantClassifier(), digits, curve=CurveSettings(eps=[0.05, 0.1, 0.2]))
    assert ev.result.worst_case["0.1"] == ev.result.clean_acc
    assert statuses(ev) == dict.fromkeys(CHECKS, "pass"), [c.line() for c in ev.sanity.checks]
    gradients = next(c for c in ev.sanity.checks if c.name == "gradients")
    assert "does not depend on its input" in gradients.reason


def test_convergence_is_checked_at_every_eps(digits_model: nn.Module, digits: DataBundle) -> None:
    """eps listed as [0, 0.1] or [0.02, 0.1]: the short attack is unconverged at 0.1, and the
    check must not judge it at the first eps alone (at 0 nothing moves, at 0.02 little does)."""
    short = [lambda eps: build_attack("pgd", eps=eps, steps=2, alpha=eps / 8 or None)]
    for eps in ([0.0, EPS], [0.02, EPS]):
        ev = evaluate_model(
            digits_model,
            digits.eval.x[:N],
            digits.eval.y[:N],
            attacks=short,
            eps=eps,
            num_classes=10,
            sanity=SanitySettings(samples=N, checks=("convergence",)),
        )
        check = ev.sanity.checks[0]
        assert check.status == "fail", check.line()
        assert check.details["attack"] == f"pgd2@{EPS:g}"
    only_zero = run_sanity_checks(
        digits_model,
        digits.eval.x[:20],
        digits.eval.y[:20],
        attacks=short,
        eps=[0.0],
        num_classes=10,
        settings=SanitySettings(samples=20, checks=("convergence",)),
    )
    assert only_zero.checks[0].status == "skip"


class DetachInput(nn.Module):
    """``x.detach()`` inside forward: the output is cut off from the input in autograd."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.detach()


def test_detached_input_is_evaluated_and_flagged(
    digits_model: nn.Module, digits: DataBundle
) -> None:
    """Gradient attacks see a zero gradient instead of stopping in an autograd error, and the
    checks say the robust accuracy is not to be trusted."""
    model = nn.Sequential(DetachInput(), digits_model).eval()
    x, y = digits.eval.x[:10], digits.eval.y[:10]
    for name in ("fgsm", "pgd"):  # a zero gradient moves no pixel
        assert torch.equal(build_attack(name, eps=EPS, random_start=False)(model, x, y), x)
    for name in ("apgd", "apgd_t"):
        assert build_attack(name, eps=EPS, steps=5)(model, x, y).shape == x.shape
    ev = evaluate(model, digits)
    assert ev.result.robust_acc["apgd_ce@0.1"] > 0.9, "the detach should fool the attack"
    s = statuses(ev)
    assert s["gradients"] == "fail" and s["black_box"] == "fail" and s["large_eps"] == "fail"


class HalfDetached(nn.Module):
    """The left half of each image reaches the model detached: gradients on the right half only,
    so gradient attacks search half the ball (same predictions, same true robustness)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros_like(x)
        mask[..., :4] = 1.0
        return x * (1 - mask) + (x * mask).detach()


L2_SUITE: list[Callable[[float], Attack]] = [
    lambda eps: build_attack("pgd", eps=eps, steps=20, norm="l2")
]


def test_l2_suites_get_a_black_box_comparison(digits_model: nn.Module, digits: DataBundle) -> None:
    """Square's L2 search (no gradient) is compared with the L2 white-box attacks: it passes the
    normally trained model and fails one whose gradients miss half of each image (PGD-20 L2 at
    eps 1 overstated its robust accuracy about fivefold; L2 suites skipped the check before)."""
    settings = SanitySettings(samples=N, checks=("black_box",))
    x, y = digits.eval.x[:N], digits.eval.y[:N]
    results = {}
    for name, model in {
        "normal": digits_model,
        "half_detached": nn.Sequential(HalfDetached(), digits_model).eval(),
    }.items():
        torch.manual_seed(0)
        ev = evaluate_model(
            model, x, y, attacks=L2_SUITE, eps=[1.0], num_classes=10, sanity=settings
        )
        assert ev.sanity is not None
        (check,) = ev.sanity.checks
        results[name] = check
        assert "square1000_l2@1" in check.reason, check.line()
    assert results["normal"].status == "pass", results["normal"].line()
    assert results["half_detached"].status == "fail", results["half_detached"].line()


class Times(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.factor


@pytest.mark.parametrize(("factor", "status"), [(1.0, "pass"), (5.0, "warn")])
def test_cross_entropy_saturated_in_floating_point_warns(
    digits_model: nn.Module, digits: DataBundle, factor: float, status: str
) -> None:
    """Logits multiplied by a few units keep the predictions and the robustness, but the softmax
    of the label rounds to 1 for most samples: their gradients are tiny (not zero) and lack the
    label's term, and cross-entropy attacks overstate robustness."""
    model = nn.Sequential(digits_model, Times(factor)).eval()
    x, y = digits.eval.x[:N], digits.eval.y[:N]
    report = run_sanity_checks(
        model,
        x,
        y,
        attacks=L2_SUITE,
        eps=[1.0],
        num_classes=10,
        settings=SanitySettings(samples=N, checks=("gradients",)),
    )
    (check,) = report.checks
    assert check.status == status, check.line()
    assert check.details["zero"] == 0
    if status == "warn":
        assert check.details["saturated"] > 0.25 and "margin loss" in check.reason


class NaNOffTheGrid(nn.Module):
    """Puts NaN into the top logit as soon as the input leaves the digits' 1/16 grey levels:
    ``argmax`` takes NaN for the largest value, so every attacked input keeps its clean label."""

    def forward(self, z_and_x: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        z, x = z_and_x
        off = ((x * 16 - (x * 16).round()).abs() > 1e-4).flatten(1).any(dim=1)
        top = nn.functional.one_hot(z.argmax(dim=1), z.shape[1]).bool() & off[:, None]
        return z.masked_fill(top, float("nan"))


class WithInput(nn.Module):
    def __init__(self, model: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.model, self.head = model, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head((self.model(x), x))


def test_nan_logits_are_not_a_correct_prediction(
    digits_model: nn.Module, digits: DataBundle
) -> None:
    """A NaN in the logits is no prediction: the attacked inputs count as not robust, so the
    model cannot report its clean accuracy as robust accuracy."""
    model = WithInput(digits_model, NaNOffTheGrid()).eval()
    x = digits.eval.x[:N]
    assert torch.equal(model(x), digits_model(x)), "the clean inputs are on the grid"
    ev = evaluate(model, digits)
    assert ev.result.clean_acc > 0.95
    assert ev.result.robust_acc["apgd_ce@0.1"] < 0.1, ev.result.robust_acc
    assert ev.result.worst_case["0.1"] < 0.1


def test_gradients_check_under_inference_mode() -> None:
    """Inside ``torch.inference_mode`` (which ``enable_grad`` does not leave), and with labels
    made there, the gradient check still sees the model's real gradients, as the attacks do:
    not zero gradients reported as masking, nor an autograd error."""
    torch.manual_seed(0)
    model = build_model("small_cnn", (1, 8, 8), 10).eval()
    x = torch.rand(12, 1, 8, 8)
    with torch.inference_mode():
        y_inference = model(x).argmax(1)
    y = y_inference.clone()
    kwargs = dict(
        attacks=[lambda eps: PGD(eps, steps=2)],
        eps=[EPS],
        num_classes=10,
        sanity=SanitySettings(samples=12, checks=("gradients",)),
    )
    with torch.inference_mode():
        inside = evaluate_model(model, x, y, **kwargs)
    assert [c.status for c in inside.sanity.checks] == ["pass"], inside.sanity.checks[0].line()
    labels = evaluate_model(model, x, y_inference, **kwargs)
    assert [c.status for c in labels.sanity.checks] == ["pass"], labels.sanity.checks[0].line()


def test_checks_that_could_not_fail_on_these_samples_are_skipped(
    masked_models: dict[str, nn.Module], digits: DataBundle
) -> None:
    """On one sample every comparison is within the tolerance of one sample, and chance is 1:
    those checks used to pass a masked model. They are skipped; the ones that can still fail
    on one sample (zero gradients) do."""
    model = masked_models["quantized_input"]
    x, y = digits.eval.x[:1], digits.eval.y[:1]
    ev = evaluate_model(
        model,
        x,
        y,
        attacks=SUITE,
        eps=[0.05, EPS],
        num_classes=digits.num_classes,
        curve=CurveSettings(eps=[0.05, 0.1, 0.2]),
        sanity=SanitySettings(),
    )
    s = statuses(ev)
    could_not_fail = ("fgsm_baseline", "monotone_eps", "large_eps", "black_box", "convergence")
    assert {k: s[k] for k in could_not_fail} == dict.fromkeys(could_not_fail, "skip")
    assert s["gradients"] == "fail"
    assert "could not fail" in next(c for c in ev.sanity.checks if c.name == "large_eps").reason
    assert ev.sanity.summary().endswith("5 skipped")

    # several samples of one class: chance is 1, so only large_eps could not fail
    one_class = digits.eval.y == digits.eval.y[0]
    ev = evaluate_model(
        model,
        digits.eval.x[one_class][:20],
        digits.eval.y[one_class][:20],
        attacks=SUITE,
        eps=[EPS],
        num_classes=digits.num_classes,
        sanity=SanitySettings(),
    )
    s = statuses(ev)
    assert s["large_eps"] == "skip"
    assert s["gradients"] == "fail" and s["fgsm_baseline"] != "skip"


@pytest.mark.parametrize(
    "suite",
    [
        [lambda eps: build_attack("fgsm", eps=eps)],
        [lambda eps: build_attack("square", eps=eps, n_queries=5)],
    ],
    ids=["fgsm", "square5"],
)
def test_a_suite_without_an_iterative_attack_fails_where_the_checks_pgd_beats_it(
    digits_model: nn.Module, digits: DataBundle, suite: list
) -> None:
    """A suite of FGSM alone (or a 5-query Square) got "the attack has converged" from
    comparing the checks' own PGD-20 with PGD-40, and a trustworthy verdict, while that PGD-20
    found a robust accuracy far below the suite's reported one."""
    ev = evaluate_model(
        digits_model,
        digits.eval.x[:N],
        digits.eval.y[:N],
        attacks=suite,
        eps=[EPS],
        num_classes=10,
        sanity=SanitySettings(samples=N, checks=("convergence",)),
    )
    (check,) = ev.sanity.checks
    reported = ev.result.worst_case[f"{EPS:g}"]
    assert check.details["acc"] == pytest.approx(reported)  # the suite's worst case
    assert check.details["acc_with_stronger"] < reported - 0.05
    assert check.status == "fail", check.line()
    assert "with the checks' pgd20@0.1 (and 2x steps and a restart)" in check.reason
    assert check.reason.endswith(
        "add an iterative attack (e.g. pgd) to evaluator.attacks and report its number"
    )
    # with PGD-20 in the suite, its own convergence is judged, as before
    ev = evaluate_model(
        digits_model, digits.eval.x[:N], digits.eval.y[:N],
        attacks=[*suite, lambda eps: build_attack("pgd", eps=eps, steps=20)], eps=[EPS],
        num_classes=10, sanity=SanitySettings(samples=N, checks=("convergence",)),
    )  # fmt: skip
    assert ev.sanity.checks[0].details["checks_own_attack"] is None
    assert ev.sanity.checks[0].details["attack"] == f"pgd20@{EPS:g}"


def test_the_checks_own_pgd_for_convergence_is_in_the_suites_norm(
    digits_model: nn.Module, digits: DataBundle
) -> None:
    """An L2 suite without an iterative attack was held to an L-inf PGD-20 at its L2 eps (1.0
    there replaces the whole image): a FAIL on any model."""
    ev = evaluate_model(
        digits_model,
        digits.eval.x[:N],
        digits.eval.y[:N],
        attacks=[lambda eps: build_attack("square", eps=eps, norm="l2", n_queries=5)],
        eps=[1.0],
        num_classes=10,
        sanity=SanitySettings(samples=N, checks=("convergence",)),
    )
    (check,) = ev.sanity.checks
    assert check.details["checks_own_attack"] == "pgd20_l2@1"
    assert "norm='l2'" in check.details["stronger"]
