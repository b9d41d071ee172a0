"""Sanity checks that tell whether a robustness evaluation can be trusted.

Many published defenses were "robust" only because their evaluation followed gradients that
carried no information (gradient masking: non-differentiable layers, saturated softmax,
randomness, ...). Carlini et al., "On Evaluating Adversarial Robustness" (2019), and Athalye,
Carlini & Wagner, "Obfuscated Gradients Give a False Sense of Security" (ICML 2018), list the
symptoms; each check below tests one of them on the evaluated model and data:

- ``fgsm_baseline``: an iterative attack is not weaker than single-step FGSM at the same eps;
- ``monotone_eps``: robust accuracy does not rise as eps grows (from the robustness curve);
- ``large_eps``: at a very large eps (0.5 L-inf on [0,1] data) gradient steps bring accuracy
  down to about chance;
- ``black_box``: the black-box attack (Square, in the white-box attacks' norm: L-inf or L2) is
  not stronger than the white-box ones;
- ``gradients``: input gradients are finite and non-zero (and warns where the cross-entropy
  saturates in floating point for many samples, whose gradients then carry little);
- ``deterministic``: the forward pass is deterministic (else: a randomized defense, which needs
  EOT to evaluate; it passes when the attacks average their gradients, ``eot_iter`` > 1);
- ``convergence``: more steps and restarts of the strongest attack (and, with EOT, more passes
  per gradient) change robust accuracy by less than a point, at every evaluated eps > 0 (a
  suite without an iterative white-box attack: the checks' own PGD-20 and its stronger copy
  must not lower the suite's worst case).

Each check passes, warns or fails with a one-line reason (``skip`` when it does not apply). The
expensive ones run on the first ``samples`` evaluated images; differences within ``tolerance``
(one point by default, at least one sample) count as noise.

A randomized model's accuracy on fixed examples is itself a draw: two draws on the same
adversarial examples differ by several points on 100 samples, and "robust under both attacks"
then mostly measures the draws. On such a model the checks compare expected accuracies instead
(each sample's share of :data:`DRAWS` draws that classify its example correctly) and count a
difference only beyond what the attacks' own randomness moves it by (3 standard errors to fail,
2 to warn); a rise on the robustness curve, whose points are single draws, warns from 2.1 / sqrt(n)
and fails from 3 / sqrt(n).
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from robustai.argcheck import is_integer, is_real
from robustai.attacks import FGSM, PGD, Attack, Square
from robustai.attacks.base import autograd_on, autograd_tensor, check_eot_iter, input_grad
from robustai.attacks.registry import accepted_kwargs
from robustai.evaluation.accuracy import attack_outcome, checked_labels, eval_mode, predict
from robustai.evaluation.curve import WORST_CASE, RobustnessCurve
from robustai.evaluation.evaluator import (
    AttackFactory,
    EvalResult,
    check_factories,
    eot_averaging,
    metric_key,
)

log = logging.getLogger(__name__)

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"
#: share of samples with an exactly zero input gradient above which ``gradients`` fails
ZERO_GRADIENT_FAIL = 0.1
#: share of samples whose cross-entropy saturates in floating point above which ``gradients`` warns
SATURATED_WARN = 0.25
#: draws of a randomized model per example behind the checks' expected accuracies
DRAWS = 16
CHECKS: tuple[str, ...] = (
    "fgsm_baseline",
    "monotone_eps",
    "large_eps",
    "black_box",
    "gradients",
    "deterministic",
    "convergence",
)


@dataclass
class SanitySettings:
    """How the checks run; the defaults keep them to a few seconds on small models."""

    samples: int = 100  # the checks that attack use the first N evaluated samples
    tolerance: float = 0.01  # accuracy differences up to this (and one sample) are noise
    large_eps: float = 0.5  # L-inf eps at which accuracy must fall to about chance
    large_eps_steps: int = 20  # PGD steps at large_eps
    chance_margin: float = 0.1  # accuracy up to chance + this passes at large_eps
    black_box_queries: int = 1000  # Square's queries when the suite has no black-box attack
    convergence_factor: int = 2  # the convergence check multiplies steps by this, +1 restart
    checks: tuple[str, ...] = CHECKS

    def __post_init__(self) -> None:
        if isinstance(self.checks, str):  # one name, not a sequence of its letters
            self.checks = (self.checks,)
        unknown = sorted(set(self.checks) - set(CHECKS))
        if unknown:
            raise ValueError(
                f"unknown sanity check(s) {', '.join(unknown)}; valid: {', '.join(CHECKS)}"
            )
        # Each named, before any attack runs: a wrong kind (50.0 samples, "0.1") failed deep
        # inside the checks, after the whole suite had run.
        for name in ("samples", "large_eps_steps", "black_box_queries", "convergence_factor"):
            value = getattr(self, name)
            if not is_integer(value) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1; got {value!r}")
        for name in ("tolerance", "large_eps", "chance_margin"):
            value = getattr(self, name)
            if not is_real(value) or not math.isfinite(value):
                raise ValueError(f"{name} must be a number; got {value!r}")
        if not 0.0 <= self.tolerance < 1.0:
            raise ValueError(f"tolerance must be in [0, 1); got {self.tolerance}")
        if not 0.0 < self.large_eps <= 1.0:
            raise ValueError(f"large_eps must be in (0, 1]; got {self.large_eps}")
        if not 0.0 <= self.chance_margin <= 1.0:
            raise ValueError(f"chance_margin must be in [0, 1]; got {self.chance_margin}")


@dataclass
class Check:
    """The outcome of one check: ``status`` is pass / warn / fail / skip."""

    name: str
    status: str
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        return f"{self.name}: {self.status.upper()}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "reason": self.reason, **self.details}


@dataclass
class SanityReport:
    checks: list[Check]
    samples: int
    seconds: float

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == FAIL]

    @property
    def warned(self) -> list[Check]:
        return [c for c in self.checks if c.status == WARN]

    @property
    def passed(self) -> bool:
        """True when no check failed (warnings allowed)."""
        return not self.failed

    def summary(self) -> str:
        counts = {s: sum(c.status == s for c in self.checks) for s in (PASS, WARN, FAIL, SKIP)}
        text = f"{counts[PASS]} passed, {counts[WARN]} warned, {counts[FAIL]} failed"
        return text + (f", {counts[SKIP]} skipped" if counts[SKIP] else "")

    def failure_message(self) -> str:
        """One line naming every failed check and why."""
        return "evaluation untrustworthy: " + "; ".join(
            f"{c.name}: {c.reason}" for c in self.failed
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "failed": [c.name for c in self.failed],
            "warned": [c.name for c in self.warned],
            "samples": self.samples,
            "seconds": self.seconds,
            "checks": {c.name: c.to_dict() for c in self.checks},
        }


# ---------------------------------------------------------------------------- helpers
def is_gradient_free(attack: Attack) -> bool:
    """Whether the attack uses only the model's outputs (a black-box, score-based attack)."""
    return bool(getattr(attack, "gradient_free", False))


def is_single_step(attack: Attack) -> bool:
    return isinstance(attack, FGSM) or getattr(attack, "steps", None) == 1


def is_iterative_white_box(attack: Attack) -> bool:
    return not is_gradient_free(attack) and not is_single_step(attack)


def strengthened(attack: Attack, factor: int = 2) -> Attack:
    """A copy of ``attack`` with ``factor`` times the steps (or queries), one more restart
    where restarts can differ (random starts) and, with EOT, ``factor`` times the passes per
    gradient; default step sizes follow the new step count."""
    cls = type(attack)
    kwargs = {k: getattr(attack, k) for k in accepted_kwargs(cls) if hasattr(attack, k)}
    if "alpha" in kwargs and getattr(attack, "_alpha_is_default", False):
        del kwargs["alpha"]
    if "steps" in kwargs:
        kwargs["steps"] = kwargs["steps"] * factor
    if "n_queries" in kwargs:
        kwargs["n_queries"] = kwargs["n_queries"] * factor
    if "restarts" in kwargs and kwargs.get("random_start", True):
        kwargs["restarts"] = kwargs["restarts"] + 1
    if kwargs.get("eot_iter", 1) > 1:
        kwargs["eot_iter"] = kwargs["eot_iter"] * factor
    try:
        # the attack's own class: a user's subclass (or one that keeps name "pgd") stays itself
        return cls(**kwargs)
    except TypeError as e:
        raise ValueError(
            f"the convergence check rebuilds {cls.__name__} with {factor}x the steps from its"
            f" attributes ({', '.join(kwargs)}) and could not ({e}); store each __init__"
            " argument under its own name, or leave convergence out of SanitySettings.checks"
        ) from e


def _above(value: float, limit: float) -> bool:
    """``value > limit`` beyond float rounding (0.49 - 0.48 must not exceed 0.01)."""
    return value > limit + 1e-6


def _acc(mask: Tensor) -> float:
    return float(mask.double().mean()) if len(mask) else float("nan")


class _Context:
    """The evaluated subset and the suite's per-sample results on it, with a cache of attacks
    the checks had to run themselves."""

    def __init__(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        attacks: Sequence[AttackFactory],
        eps: Sequence[float],
        result: EvalResult | None,
        batch_size: int,
        eot_iter: int = 1,
    ) -> None:
        self.model, self.x, self.y = model, x, y
        self.n = len(x)
        self.eps = list(eps)
        self.batch_size = batch_size
        self.result = result
        self.suite: dict[str, Attack] = {}
        self.robust: dict[str, Tensor] = {}  # metric key -> robust mask on the subset
        for e in self.eps:
            for make in attacks:
                a = make(e)
                key = metric_key(a)
                self.suite[key] = a
                if result is not None and key in result.outcomes:
                    self.robust[key] = result.outcomes[key].robust[: self.n]
        # EOT passes per gradient: the fewest of the suite's gradient attacks (1 unless all
        # average), or as asked where the suite has none
        own = [a.eot_iter for a in self.suite.values() if a.supports_eot]
        self.eot_iter = min(own) if own else eot_iter
        if result is not None and result.clean_pred is not None:
            self.clean_pred = result.clean_pred[: self.n]
        else:
            self.clean_pred = predict(model, x, batch_size)
        self.clean = self.clean_pred == y

    @functools.cached_property
    def two_passes(self) -> dict[str, Any]:
        """Two forward passes on the same inputs: how far their logits differ and whether that
        is beyond rounding (``randomized``)."""
        with eval_mode(self.model):
            a = _logits(self.model, self.x, self.batch_size)
            b = _logits(self.model, self.x, self.batch_size)
        # Equal infinities (log of a saturated softmax gives -inf) and NaN in both passes are not
        # randomness: inf - inf would be NaN and read as a changed logit.
        same = (a == b) | (a.isnan() & b.isnan())
        gap = torch.where(same, torch.zeros_like(a), (a - b).abs()).nan_to_num(nan=math.inf)
        diff = float(gap.max()) if gap.numel() else 0.0
        finite = a[torch.isfinite(a)]
        scale = float(finite.abs().max()) if finite.numel() else 0.0
        return {
            "max_logit_change": diff,
            "prediction_flips": int((a.argmax(1) != b.argmax(1)).sum()),
            "non_finite_logits": int((~torch.isfinite(a)).sum()),
            "randomized": not math.isfinite(diff) or diff > 1e-4 * (1.0 + scale),
        }

    @property
    def randomized(self) -> bool:
        return bool(self.n) and bool(self.two_passes["randomized"])

    def robust_mask(self, attack: Attack, key: str | None = None) -> Tensor:
        """Robust mask of ``attack`` on the subset: the suite's (by metric ``key``) if known,
        else computed once and cached. On a randomized model each sample's expected correctness
        instead (a float in [0, 1]), always computed here (the suite kept one draw)."""
        key = key or f"sanity:{attack!r}"
        if self.randomized:
            key = f"expected:{key}"
        if key not in self.robust:
            outcome = attack_outcome(
                self.model,
                attack,
                self.x,
                self.y,
                self.clean_pred,
                self.batch_size,
                keep_examples=self.randomized,
            )
            self.robust[key] = (
                self.expected_correct(outcome.x_adv) * self.clean
                if outcome.x_adv is not None
                else outcome.robust
            )
        return self.robust[key]

    def expected_correct(self, x: Tensor) -> Tensor:
        """Per sample, the share of :data:`DRAWS` forward passes that classify ``x`` right."""
        hits = torch.zeros(len(x), dtype=torch.float64, device=x.device)
        for _ in range(DRAWS):
            hits += (predict(self.model, x, self.batch_size) == self.y).double()
        return hits / DRAWS

    def own(self, attack: Attack) -> Attack:
        """An attack the checks build themselves, averaging gradients as the suite's do."""
        return attack.with_eot(self.eot_iter)

    def suite_at(self, eps: float) -> list[tuple[str, Attack]]:
        return [(k, a) for k, a in self.suite.items() if a.eps == eps]

    def tol(self, tolerance: float) -> float:
        """A tolerance of at least one sample."""
        return max(tolerance, 1.0 / max(self.n, 1))

    def noise(self, a: Tensor, b: Tensor) -> float:
        """On a randomized model, the standard error of the difference of two robust masks'
        accuracies (paired per sample): what the attacks' random starts and noisy gradients move
        it by on these samples. 0 on a deterministic model, where the tolerance alone counts."""
        if not self.randomized or self.n < 2:
            return 0.0
        return float((a.double() - b.double()).std()) / math.sqrt(self.n)


# ---------------------------------------------------------------------------- checks
def _one_sample(name: str, tol: float) -> Check | None:
    """SKIP where every accuracy difference is within the tolerance of one sample (a single
    sample): the comparison could report nothing but a pass, which is no evidence."""
    if tol < 1.0:
        return None
    return Check(
        name,
        SKIP,
        "on one sample every difference is within the tolerance of one sample, so this"
        " comparison could not fail; evaluate more samples",
        {"tolerance": tol},
    )


def _check_fgsm_baseline(ctx: _Context, s: SanitySettings) -> Check:
    tol = ctx.tol(s.tolerance)
    if skip := _one_sample("fgsm_baseline", tol):
        return skip
    rows: dict[str, Any] = {}
    worst: tuple[float, str] | None = None
    for e in ctx.eps:
        suite = ctx.suite_at(e)
        norms = {a.norm for _, a in suite} or {"linf"}
        for norm in sorted(norms):
            iterative = [(k, a) for k, a in suite if a.norm == norm and is_iterative_white_box(a)]
            if not iterative:  # no iterative attack in the suite: compare a PGD-20 instead
                ref = ctx.own(PGD(e, steps=20, norm=norm))
                iterative = [(metric_key(ref), ref)]
            single = [(k, a) for k, a in suite if a.norm == norm and isinstance(a, FGSM)]
            if norm == "linf":
                key_b, base = single[0] if single else (None, ctx.own(FGSM(e)))
            else:  # one normalized-gradient step (FGM), the L2 single-step attack
                # (at eps 0 there is no step to take, and the attack refuses alpha=0)
                fgm = PGD(e, alpha=e or None, steps=1, random_start=False, norm="l2")
                key_b, base = None, ctx.own(fgm)
            base_mask = ctx.robust_mask(base, key_b)
            base_acc = _acc(base_mask)
            for key, attack in iterative:
                mask = ctx.robust_mask(attack, key)
                acc = _acc(mask)
                limit = max(tol, 3 * ctx.noise(mask, base_mask))
                rows[key] = {
                    "acc": acc,
                    "single_step": metric_key(base),
                    "single_step_acc": base_acc,
                    "limit": limit,
                }
                excess = acc - base_acc - limit
                if worst is None or excess > worst[0]:
                    worst = (excess, f"{key} {acc:.3f} vs {metric_key(base)} {base_acc:.3f}")
    assert worst is not None
    details = {"attacks": rows, "tolerance": tol}
    if _above(worst[0], 0.0):
        return Check(
            "fgsm_baseline",
            FAIL,
            f"an iterative attack is weaker than single-step FGSM ({worst[1]}): its gradient "
            "steps do not find what one step finds, a sign of masked or noisy gradients",
            details,
        )
    noisy = " within the noise of a randomized model's draws" if ctx.randomized else ""
    return Check(
        "fgsm_baseline",
        PASS,
        f"every iterative attack is at least as strong as FGSM{noisy} (closest: {worst[1]})",
        details,
    )


def _check_monotone(
    curve: RobustnessCurve | None, s: SanitySettings, randomized: Callable[[], bool]
) -> Check:
    if curve is None or len(curve.eps) < 2:
        return Check("monotone_eps", SKIP, "no robustness curve with two or more eps")
    tol = max(s.tolerance, 1.0 / max(curve.samples, 1))
    if skip := _one_sample("monotone_eps", tol):
        return skip
    fail = tol
    if randomized():
        # Each point is one draw, whose accuracy has a standard deviation of up to 0.5 / sqrt(n);
        # the difference of two draws up to 0.71 / sqrt(n), and the running minimum below is
        # biased low: a rise warns from three of those, fails from about four.
        root = math.sqrt(max(curve.samples, 1))
        tol, fail = max(tol, 2.1 / root), max(tol, 3.0 / root)
    series = {**curve.series, WORST_CASE: curve.worst_case}
    rises: list[tuple[float, str]] = []
    for label, values in series.items():
        low = values[0]
        for e, v in zip(curve.eps[1:], values[1:], strict=True):
            if _above(v, low + tol):
                what = f"{label} rises to {v:.3f} at eps={e:g} (was {low:.3f} below)"
                rises.append((v - low, what))
            low = min(low, v)
    details = {"eps": curve.eps, "tolerance": tol, "fail_limit": fail}
    if rises:
        rise, what = max(rises)
        failed = _above(rise, fail)
        return Check(
            "monotone_eps",
            FAIL if failed else WARN,
            f"robust accuracy rises with eps: {what}; a larger ball contains the smaller "
            "one, so the attack lost strength"
            + ("" if failed else " (or one draw of the randomized model differs from another)"),
            {**details, "rises": [w for _, w in rises]},
        )
    return Check(
        "monotone_eps",
        PASS,
        f"robust accuracy does not rise with eps ({len(curve.eps)} eps from 0 to "
        f"{curve.eps[-1]:g})",
        details,
    )


def _check_large_eps(ctx: _Context, s: SanitySettings, num_classes: int) -> Check:
    if ctx.n == 0:
        return Check("large_eps", SKIP, "no samples")
    counts = torch.bincount(ctx.y, minlength=num_classes)
    chance = float(counts.max()) / ctx.n  # the best constant guess on these samples
    limit = chance + s.chance_margin
    if limit >= 1.0:
        return Check(
            "large_eps",
            SKIP,
            f"chance on these samples ({chance:.3f}, the largest class's share) plus"
            f" the margin ({s.chance_margin:g}) is 1 or more, so this check could not fail;"
            " evaluate more samples, of several classes",
            {"chance": chance, "limit": limit},
        )
    attack = ctx.own(PGD(s.large_eps, steps=s.large_eps_steps, random_start=False))
    acc = _acc(ctx.robust_mask(attack))
    details = {"attack": metric_key(attack), "acc": acc, "chance": chance, "limit": limit}
    if _above(acc, limit):
        return Check(
            "large_eps",
            FAIL,
            f"{metric_key(attack)} (no random start) leaves accuracy {acc:.3f}, far above "
            f"chance {chance:.3f}: at this eps the ball holds images of other classes, so the "
            "attack's gradients carry no useful signal",
            details,
        )
    return Check(
        "large_eps",
        PASS,
        f"{metric_key(attack)} brings accuracy to {acc:.3f} (chance {chance:.3f})",
        details,
    )


def _check_black_box(ctx: _Context, s: SanitySettings) -> Check:
    tol = ctx.tol(s.tolerance)
    if skip := _one_sample("black_box", tol):
        return skip
    rows: dict[str, Any] = {}
    worst: tuple[float, str] | None = None
    pairs = [(e, norm) for e in ctx.eps for norm in sorted({a.norm for _, a in ctx.suite_at(e)})]
    for e, norm in dict.fromkeys(pairs):
        suite = [(k, a) for k, a in ctx.suite_at(e) if a.norm == norm]
        white = [(k, a) for k, a in suite if not is_gradient_free(a)]
        if not white:
            continue
        black = [(k, a) for k, a in suite if is_gradient_free(a)]
        if not black:  # Square in the white-box attacks' norm (L2: the reference's L2 search)
            sq = Square(e, norm=norm, n_queries=s.black_box_queries)
            suffix = "_l2" if norm == "l2" else ""
            black = [(f"square{s.black_box_queries}{suffix}@{e:g}", sq)]
        wb = [(k, ctx.robust_mask(a, k)) for k, a in white]
        wb_key, wb_mask = min(wb, key=lambda kv: _acc(kv[1]))
        wb_acc = _acc(wb_mask)
        for key, attack in black:
            bb_mask = ctx.robust_mask(attack, key)
            bb_acc = _acc(bb_mask)
            se = ctx.noise(wb_mask, bb_mask)
            warn, fail = max(tol, 2 * se), max(3 * tol, 3 * se)
            rows[key] = {"acc": bb_acc, "best_white_box": wb_key, "best_white_box_acc": wb_acc}
            rows[key].update(warn_limit=warn, fail_limit=fail)
            gap = wb_acc - bb_acc
            if worst is None or gap - warn > worst[0] - worst[1]:
                worst = (gap, warn, fail, f"{key} {bb_acc:.3f} vs {wb_key} {wb_acc:.3f}")
    if worst is None:
        return Check("black_box", SKIP, "no white-box attack to compare a black-box one with")
    details = {"attacks": rows, "tolerance": tol}
    if _above(worst[0], worst[2]):
        return Check(
            "black_box",
            FAIL,
            f"the black-box attack is stronger than every white-box attack ({worst[3]}): "
            "gradients are masked or obfuscated",
            details,
        )
    if _above(worst[0], worst[1]):
        return Check(
            "black_box",
            WARN,
            f"the black-box attack is slightly stronger than the white-box ones ({worst[3]})",
            details,
        )
    return Check(
        "black_box",
        PASS,
        f"the white-box attacks are at least as strong as the black-box one ({worst[3]})",
        details,
    )


def input_gradients(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 512) -> Tensor:
    """Per-sample gradients of the cross-entropy w.r.t. the input (eval mode, parameter
    ``.grad`` untouched; autograd on even under ``torch.inference_mode``, as in the attacks)."""
    y = checked_labels(x, y)
    with eval_mode(model):
        grads = []
        with autograd_on():
            y = autograd_tensor(y)
            for i in range(0, len(x), batch_size):
                xb = x[i : i + batch_size].detach().clone().requires_grad_(True)
                loss = nn.functional.cross_entropy(
                    model(xb), y[i : i + batch_size], reduction="sum"
                )
                grads.append(input_grad(loss, xb).detach())
        return torch.cat(grads) if grads else torch.zeros_like(x)


def _ignores_input(ctx: _Context) -> bool:
    """Whether the model gives exactly the same logits for every checked sample (two or more):
    a constant classifier, whose zero gradients are true ones, not masking."""
    if ctx.n < 2:
        return False
    with eval_mode(ctx.model):
        logits = _logits(ctx.model, ctx.x, ctx.batch_size)
    return bool((logits == logits[:1]).all())


def _check_gradients(ctx: _Context, s: SanitySettings) -> Check:
    if ctx.n == 0:
        return Check("gradients", SKIP, "no samples")
    g = input_gradients(ctx.model, ctx.x, ctx.y, ctx.batch_size).reshape(ctx.n, -1)
    finite = torch.isfinite(g).all(dim=1)
    norms = g.double().norm(dim=1)
    norms = torch.where(finite, norms, torch.zeros_like(norms))
    zero = finite & (norms == 0)
    n_bad, n_zero = int((~finite).sum()), int(zero.sum())
    details = {
        "samples": ctx.n,
        "non_finite": n_bad,
        "zero": n_zero,
        "median_norm": float(norms[finite].median()) if bool(finite.any()) else float("nan"),
    }
    if n_bad:
        return Check(
            "gradients",
            FAIL,
            f"input gradients are NaN or infinite for {n_bad} of {ctx.n} samples",
            details,
        )
    if n_zero and _ignores_input(ctx):
        return Check(
            "gradients",
            PASS,
            f"input gradients are zero for {n_zero} of {ctx.n} samples because the model's "
            "output does not depend on its input (the same logits for every sample): no "
            "attack can change its predictions, so robust accuracy is its clean accuracy",
            {**details, "constant_output": True},
        )
    if n_zero / ctx.n > ZERO_GRADIENT_FAIL:
        return Check(
            "gradients",
            FAIL,
            f"input gradients are exactly zero for {n_zero} of {ctx.n} samples: a "
            "non-differentiable or saturated layer masks them",
            details,
        )
    if n_zero:
        return Check(
            "gradients",
            WARN,
            f"input gradients are exactly zero for {n_zero} of {ctx.n} samples",
            details,
        )
    saturated = _saturated_share(ctx)
    details["saturated"] = saturated
    what = (
        f"input gradients are finite and non-zero on all {ctx.n} samples "
        f"(median L2 norm {details['median_norm']:.3g})"
    )
    if saturated > SATURATED_WARN:
        return Check(
            "gradients",
            WARN,
            f"{what}, but the cross-entropy saturates in floating point for {saturated:.0%} of "
            "them (the softmax of the label rounds to 1): their gradients lose the label's "
            "term and attacks on the cross-entropy may overstate robustness; compare an "
            "attack on a margin loss (APGD-T or APGD with loss=dlr, Square: evaluator=standard "
            "or standard_l2)",
            details,
        )
    return Check("gradients", PASS, what, details)


def _saturated_share(ctx: _Context) -> float:
    """The share of samples whose log-softmax of the label is exactly 0 in the logits' dtype: the
    cross-entropy is then 0 and its gradient, softmax - one_hot, has lost the label's component,
    so what remains is tiny and points only towards raising the other logits. Models whose logits
    are merely scaled up (same predictions, same robustness) get there, and so do very confident
    ones."""
    with eval_mode(ctx.model):
        logits = _logits(ctx.model, ctx.x, ctx.batch_size)
    label = torch.log_softmax(logits, dim=1).gather(1, ctx.y[:, None]).squeeze(1)
    return _acc(label == 0)


@torch.inference_mode()
def _logits(model: nn.Module, x: Tensor, batch_size: int) -> Tensor:
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def _check_deterministic(ctx: _Context, s: SanitySettings) -> Check:
    if ctx.n == 0:
        return Check("deterministic", SKIP, "no samples")
    details = {k: v for k, v in ctx.two_passes.items() if k != "randomized"}
    details["eot_iter"] = ctx.eot_iter
    diff, flips = details["max_logit_change"], details["prediction_flips"]
    non_finite = details["non_finite_logits"]
    if ctx.randomized:
        what = (
            f"two forward passes on the same inputs differ (max logit change {diff:.3g}, "
            f"{flips} of {ctx.n} predictions flip): a randomized defense"
        )
        if ctx.eot_iter > 1:
            return Check(
                "deterministic",
                PASS,
                f"{what}, attacked with gradients averaged over {ctx.eot_iter} passes (EOT); "
                "its reported accuracies are one draw of its randomness each (so the worst case "
                f"over attacks is lower by draw noise too), the checks' the mean of {DRAWS}",
                details,
            )
        return Check(
            "deterministic",
            FAIL,
            f"{what}; evaluate it with expectation over transformation (EOT), not one pass's "
            "gradients: eot_iter > 1 (e.g. 20) for every gradient attack averages each gradient "
            "over that many passes (robustai train/evaluate: evaluator.eot_iter=20 or "
            "evaluator=rand)",
            details,
        )
    note = (
        f" (its logits hold {non_finite} infinite or NaN values, the same in both passes)"
        if non_finite
        else ""
    )
    return Check("deterministic", PASS, "the forward pass is deterministic" + note, details)


def _check_convergence(ctx: _Context, s: SanitySettings) -> Check:
    """At every eps > 0 (the first listed may be 0 or the smallest, where any attack looks
    converged), the strongest iterative attack against a strengthened copy; the largest drop
    counts."""
    tol = ctx.tol(s.tolerance)
    if skip := _one_sample("convergence", tol):
        return skip
    worst: dict[str, Any] | None = None
    per_eps: dict[str, float] = {}
    # per eps and norm: the checks' own PGD in the suite's norm (an L-inf PGD at an L2 eps of
    # 1 replaces the whole image, and "beat" an L2 suite on any model)
    pairs = [(e, n) for e in ctx.eps for n in sorted({a.norm for _, a in ctx.suite_at(e)})]
    pairs += [(e, "linf") for e in ctx.eps if not ctx.suite_at(e)]
    for e, norm in dict.fromkeys(pairs):
        if e <= 0:
            continue
        suite = [(k, a) for k, a in ctx.suite_at(e) if a.norm == norm]
        candidates = [(k, a) for k, a in suite if is_iterative_white_box(a)]
        own = not candidates
        if own:
            ref = ctx.own(PGD(e, steps=20, norm=norm))
            candidates = [(metric_key(ref), ref)]
        accs = [(k, a, ctx.robust_mask(a, k)) for k, a in candidates]
        key, attack, base = min(accs, key=lambda t: _acc(t[2]))
        strong = strengthened(attack, s.convergence_factor)
        stronger = [ctx.robust_mask(strong)]
        if own and suite:
            # No iterative attack in the suite (FGSM, a short Square): what is reported is the
            # suite's worst case, and the checks' PGD-20 (with its stronger copy) must not beat
            # it; comparing PGD-20 with PGD-40 alone passed a suite that PGD-20 beat by points.
            stronger.insert(0, base)
            key = " + ".join(k for k, _ in suite)
            masks = [ctx.robust_mask(a, k).double() for k, a in suite]
            base = functools.reduce(torch.minimum, masks)
        # Robust under all, per sample; on a randomized model the strongest attack's expected
        # accuracy alone (a per-sample minimum of estimates would be biased low)
        if ctx.randomized:
            both = stronger[-1].double()
        else:
            both = functools.reduce(torch.minimum, [m.double() for m in [base, *stronger]])
        drop = _acc(base) - _acc(both)
        se = ctx.noise(base, both)
        warn, fail = max(tol, 2 * se), max(3 * tol, 3 * se)
        per_eps[key] = drop
        if worst is None or drop - warn > worst["drop"] - worst["warn_limit"]:
            worst = {
                "attack": key,
                "acc": _acc(base),
                "stronger": repr(strong),
                "acc_with_stronger": _acc(both),
                "drop": drop,
                "warn_limit": warn,
                "fail_limit": fail,
                "checks_own_attack": metric_key(attack) if own and suite else None,
            }
    if worst is None:
        return Check("convergence", SKIP, "no eps > 0 to attack")
    details = {**worst, "tolerance": tol, "drops": per_eps}
    eot = f", {s.convergence_factor}x EOT passes" if ctx.eot_iter > 1 else ""
    more = f"{s.convergence_factor}x steps{eot} and a restart"
    if worst["checks_own_attack"]:
        more = f"the checks' {worst['checks_own_attack']} (and {more})"
    what = f"{worst['attack']} {worst['acc']:.3f} -> {worst['acc_with_stronger']:.3f} with {more}"
    if _above(worst["drop"], worst["fail_limit"]):
        fix = (
            "add an iterative attack (e.g. pgd) to evaluator.attacks and report its number"
            if worst["checks_own_attack"]
            else "report the stronger attack's number"
        )
        return Check("convergence", FAIL, f"the attack has not converged: {what}; {fix}", details)
    if _above(worst["drop"], worst["warn_limit"]):
        return Check("convergence", WARN, f"the attack has nearly converged: {what}", details)
    return Check("convergence", PASS, f"the attack has converged: {what}", details)


# ---------------------------------------------------------------------------- entry point
def run_sanity_checks(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    attacks: Sequence[AttackFactory],
    eps: Sequence[float],
    num_classes: int,
    result: EvalResult | None = None,
    curve: RobustnessCurve | None = None,
    settings: SanitySettings | None = None,
    batch_size: int = 512,
    eot_iter: int = 1,
) -> SanityReport:
    """Run the checks on the first ``settings.samples`` of ``(x, y)``.

    ``result`` (the suite's evaluation of the same x, in the same order) and ``curve`` are
    reused where they hold what a check needs; the rest is computed here. ``eot_iter``: the
    passes the gradient attacks average (the checks' own attacks follow it). Each check's
    outcome is logged on one line.
    """
    s = settings or SanitySettings()
    y = checked_labels(x, y)
    attacks = check_factories(attacks)
    if not eps:
        raise ValueError("eps must list at least one value")
    start = time.perf_counter()
    n = min(s.samples, len(x))
    eot_iter = check_eot_iter(eot_iter)
    if eot_iter > 1:
        attacks = [eot_averaging(make, eot_iter) for make in attacks]
    ctx = _Context(model, x[:n], y[:n], attacks, eps, result, batch_size, eot_iter)
    runners: dict[str, Callable[[], Check]] = {
        "fgsm_baseline": lambda: _check_fgsm_baseline(ctx, s),
        "monotone_eps": lambda: _check_monotone(curve, s, lambda: ctx.randomized),
        "large_eps": lambda: _check_large_eps(ctx, s, num_classes),
        "black_box": lambda: _check_black_box(ctx, s),
        "gradients": lambda: _check_gradients(ctx, s),
        "deterministic": lambda: _check_deterministic(ctx, s),
        "convergence": lambda: _check_convergence(ctx, s),
    }
    checks = []
    for name in CHECKS:
        if name not in s.checks:
            continue
        t0 = time.perf_counter()
        check = runners[name]()
        check.details["seconds"] = time.perf_counter() - t0
        level = logging.WARNING if check.status in (WARN, FAIL) else logging.INFO
        log.log(level, "sanity %s", check.line())
        checks.append(check)
    report = SanityReport(checks, n, time.perf_counter() - start)
    log.log(
        logging.INFO if report.passed else logging.WARNING,
        "sanity checks: %s (%d samples, %.1fs)",
        report.summary(),
        n,
        report.seconds,
    )
    return report
