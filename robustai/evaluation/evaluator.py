"""Clean and robust accuracy for every attack at every eps, with a per-sample worst case."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from torch import Tensor, nn

from robustai.argcheck import check_flag, is_integer, is_real
from robustai.attacks import Attack
from robustai.attacks.base import WarnOnce
from robustai.evaluation.accuracy import (
    AttackOutcome,
    attack_outcome,
    check_counting_mode,
    checked_labels,
    predict,
)

log = logging.getLogger(__name__)

AttackFactory = Callable[[float], Attack]


def metric_key(attack: Attack) -> str:
    """The stable ``<attack>@<eps>`` key of metrics.json, e.g. ``pgd20@0.1``."""
    return f"{attack.label}@{attack.eps:g}"


def check_factories(attacks: Iterable[AttackFactory]) -> list[AttackFactory]:
    """The factories as a list, read once: a generator would be used up by a first pass over
    it, and every later one (each eps, the evaluation itself) would silently run no attack.
    Each entry must build an attack for an eps; an :class:`Attack` itself is refused in one
    line (called with an eps it would fail with "missing 2 required positional arguments")."""
    if isinstance(attacks, Attack) or callable(attacks):
        raise TypeError(
            "attacks must be a list of factories that build an attack for each eps, e.g."
            f" [lambda eps: PGD(eps, ...)]; got a single {type(attacks).__name__}"
        )
    factories = list(attacks)
    for make in factories:
        if isinstance(make, Attack):
            name = type(make).__name__
            raise TypeError(
                f"attacks must be factories that build an attack for each eps, e.g."
                f" lambda eps: {name}(eps, ...); got a {name} instance"
            )
        if not callable(make):
            raise TypeError(
                "attacks must be factories that build an attack for each eps, e.g."
                f" lambda eps: PGD(eps, ...); got {make!r}"
            )
    return factories


def early_stopping(make: AttackFactory) -> AttackFactory:
    """``make`` with per-sample early stopping turned on where the attack has it (see
    :class:`Evaluator`), so the curve and the sanity checks see the same attacks as the suite."""

    def make_early_stopping(eps: float) -> Attack:
        return make(eps).with_early_stop()

    return make_early_stopping


def cuda_graphing(make: AttackFactory, once: WarnOnce | None = None) -> AttackFactory:
    """``make`` with CUDA-graph replay turned on where the attack allows it (see
    :meth:`Attack.with_cuda_graph`). Off CUDA its attacks warn that it has no effect, once for
    all of them (a new attack per eps) or, given ``once``, for all that share it."""
    once = once if once is not None else WarnOnce()

    def make_cuda_graphing(eps: float) -> Attack:
        return make(eps).with_cuda_graph(once=once)

    return make_cuda_graphing


def eot_averaging(make: AttackFactory, eot_iter: int) -> AttackFactory:
    """``make`` with every gradient averaged over ``eot_iter`` passes where the attack follows
    gradients (see :meth:`Attack.with_eot`), for evaluating a randomized model; an attack built
    with its own ``eot_iter`` > 1 keeps it."""

    def make_eot_averaging(eps: float) -> Attack:
        attack = make(eps)
        return attack if attack.eot_iter > 1 else attack.with_eot(eot_iter)

    return make_eot_averaging


def check_metric_keys(attacks: Sequence[AttackFactory], eps: Sequence[float]) -> None:
    """Two attacks with one metric key (e.g. APGD at 20 and 100 steps, both ``apgd_ce``, or one
    attack at eps 0.1 and 0.1000001) would share one row of ``robust_acc``, the later silently
    replacing the earlier: refused in one line (ValueError) before anything runs, as is an attack
    that runs the model in train mode (see :func:`check_counting_mode`)."""
    seen: dict[str, Attack] = {}
    for e in eps:
        for make in attacks:
            attack = make(e)
            check_counting_mode(attack)
            key = metric_key(attack)
            if key in seen:
                raise ValueError(
                    f"two attacks have the metric key {key} ({seen[key]!r} and {attack!r});"
                    " give them settings that show in their label (e.g. steps for PGD,"
                    " restarts, norm) or eps that differ in their first 6 digits, or evaluate"
                    " them separately"
                )
            seen[key] = attack


def eps_key(eps: float) -> str:
    """The ``<eps>`` key of ``worst_case_acc``, e.g. ``0.1``."""
    return f"{eps:g}"


@dataclass
class EvalResult:
    clean_acc: float
    robust_acc: dict[str, float]  # "<attack>@<eps>" -> accuracy
    worst_case: dict[str, float]  # "<eps>" -> accuracy under the per-sample worst attack
    samples: int
    seconds: float
    # per sample, for sanity checks, per-class accuracy and saved examples
    y: Tensor | None = None
    clean_pred: Tensor | None = None
    outcomes: dict[str, AttackOutcome] = field(default_factory=dict)  # "<attack>@<eps>" -> ...
    attacks: dict[str, Attack] = field(default_factory=dict)  # "<attack>@<eps>" -> the attack
    worst_robust: dict[str, Tensor] = field(default_factory=dict)  # "<eps>" -> bool per sample

    @property
    def clean_correct(self) -> Tensor | None:
        if self.clean_pred is None or self.y is None:
            return None
        return self.clean_pred == self.y


class Evaluator:
    """Runs each attack factory at each eps on the same samples.

    A sample is robust at an eps only if the model is right on it clean and under every attack
    (the worst case), the standard way to report robust accuracy of a suite. Without attacks
    there is no worst case: NaN at every eps, and no per-sample mask. Samples the model
    gets wrong clean are not attacked (they cannot count as robust), and the clean forward pass
    is done once for all attacks.

    ``early_stop`` (default on, as AutoAttack and RobustBench count robustness): attacks that
    have the option (:attr:`Attack.supports_early_stop`, e.g. PGD) keep, per sample, the first
    iterate that fools the model and stop attacking that sample. Robust accuracy is then the
    same as or lower than with the plain attack (a sample is non-robust if any iterate fools
    it), and an evaluation of a model that is not robust costs a fraction of the plain one.
    ``early_stop=False`` runs the attacks exactly as the factories build them.
    """

    def __init__(
        self,
        attacks: Sequence[AttackFactory],
        eps: Sequence[float],
        batch_size: int = 512,
        early_stop: bool = True,
    ) -> None:
        if is_real(eps):
            raise TypeError(f"eps must be a list of values, e.g. [{eps!r}]; got a number")
        eps = [float(e) for e in eps]  # a NumPy array or tensor too
        if not eps:
            raise ValueError("eps must list at least one value")
        if not is_integer(batch_size) or batch_size < 1:
            raise ValueError(f"batch_size must be a whole number >= 1; got {batch_size!r}")
        self.attacks = check_factories(attacks)
        self.eps = list(eps)
        self.batch_size = batch_size
        self.early_stop = check_flag("early_stop", early_stop)

    def run(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        keep_examples: bool = False,
        clean_pred: Tensor | None = None,
    ) -> EvalResult:
        """Evaluate; ``keep_examples`` keeps the adversarial inputs of every attack, and
        ``clean_pred`` (the model's labels for x) saves the clean pass when already known."""
        start = time.perf_counter()
        y = checked_labels(x, y)
        check_metric_keys(self.attacks, self.eps)
        if clean_pred is None:
            clean_pred = predict(model, x, self.batch_size)
        clean = clean_pred == y
        robust: dict[str, float] = {}
        worst: dict[str, float] = {}
        outcomes: dict[str, AttackOutcome] = {}
        attacks: dict[str, Attack] = {}
        worst_robust: dict[str, Tensor] = {}
        for eps in self.eps:
            all_ok = clean.clone()
            for make in self.attacks:
                attack = make(eps)
                if self.early_stop:
                    attack = attack.with_early_stop()
                key = metric_key(attack)
                outcome = attack_outcome(
                    model, attack, x, y, clean_pred, self.batch_size, keep_examples
                )
                robust[key] = outcome.accuracy
                outcomes[key] = outcome
                attacks[key] = attack
                all_ok &= outcome.robust
                log.info("robust accuracy %s: %.4f (%.1fs)", key, robust[key], outcome.seconds)
            if not self.attacks:
                # Every one of no attacks "fails" on every sample, but a clean accuracy reported
                # as the worst-case robust one (and optimized as such in a search) is a claim
                # that no attack has tested: not available, as for an empty eval split.
                worst[eps_key(eps)] = float("nan")
                continue
            worst[eps_key(eps)] = float(all_ok.float().mean()) if len(x) else float("nan")
            worst_robust[eps_key(eps)] = all_ok
        return EvalResult(
            clean_acc=float(clean.float().mean()) if len(x) else float("nan"),
            robust_acc=robust,
            worst_case=worst,
            samples=len(x),
            seconds=time.perf_counter() - start,
            y=y,
            clean_pred=clean_pred,
            outcomes=outcomes,
            attacks=attacks,
            worst_robust=worst_robust,
        )
