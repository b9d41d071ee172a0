"""One call for a full evaluation: attack suite, robustness curve, sanity checks, per class.

Used at the end of ``robustai train`` and by ``robustai evaluate``; plain arguments only, so it
works from a notebook as well::

    from robustai.attacks import build_attack
    from robustai.evaluation import SanitySettings, evaluate_model

    suite = [lambda eps: build_attack("apgd", eps=eps), lambda eps: build_attack("square", eps=eps)]
    ev = evaluate_model(
        model, x, y, attacks=suite, eps=[0.1], num_classes=10, sanity=SanitySettings()
    )
    print(ev.result.worst_case, ev.sanity.summary())

The robustness curve and the sanity checks are opt-in (``curve=CurveSettings()``,
``sanity=SanitySettings()``); without them ``ev.curve`` and ``ev.sanity`` are None.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from robustai.argcheck import check_flag, is_integer, is_real
from robustai.attacks.base import WarnOnce, check_eot_iter
from robustai.evaluation.accuracy import checked_labels, predict
from robustai.evaluation.curve import RobustnessCurve, default_curve_eps, robustness_curve
from robustai.evaluation.evaluator import (
    AttackFactory,
    EvalResult,
    Evaluator,
    check_factories,
    check_metric_keys,
    cuda_graphing,
    early_stopping,
    eot_averaging,
)
from robustai.evaluation.sanity import SanityReport, SanitySettings, run_sanity_checks

log = logging.getLogger(__name__)


@dataclass
class CurveSettings:
    """The robustness curve's eps grid and how many of the evaluated samples it attacks.
    Checked here: a count below 1 dropped samples silently (-5: all but five) or gave NaNs (0),
    and a fractional one failed as a TypeError inside the evaluation."""

    eps: Sequence[float] | None = None  # None or empty: see default_curve_eps
    samples: int | None = 200  # first N evaluated samples (None: all)

    def __post_init__(self) -> None:
        if self.samples is not None and (not is_integer(self.samples) or self.samples < 1):
            raise ValueError(
                f"CurveSettings.samples must be a whole number >= 1 (the first N evaluated"
                f" samples) or None for all; got {self.samples!r}"
            )
        if self.eps is None:
            return
        if isinstance(self.eps, str) or not isinstance(self.eps, Iterable):
            raise ValueError(
                f"CurveSettings.eps must be a list of eps values, e.g. [0.05, 0.1], or None for"
                f" the default grid; got {self.eps!r}"
            )
        if not isinstance(self.eps, Sequence):  # a generator would be used up by the check
            self.eps = list(self.eps)
        for e in self.eps:
            if not is_real(e) or not 0.0 <= float(e) < math.inf:
                raise ValueError(
                    f"CurveSettings.eps values must be finite numbers >= 0 (in [0, 1] pixel"
                    f" units); got {e!r}"
                )


@dataclass
class Evaluation:
    result: EvalResult
    curve: RobustnessCurve | None
    sanity: SanityReport | None
    per_class: dict[str, Any] | None
    num_classes: int


def per_class_accuracy(
    y: Tensor, masks: dict[str, Tensor], num_classes: int
) -> dict[str, dict[str, float]]:
    """``{name: {class: accuracy}}`` for boolean per-sample masks (NaN for an absent class)."""
    counts = torch.bincount(y, minlength=num_classes).double()
    out: dict[str, dict[str, float]] = {}
    for name, mask in masks.items():
        hits = torch.bincount(y[mask], minlength=num_classes).double()
        acc = torch.where(
            counts > 0, hits / counts.clamp(min=1), torch.full_like(counts, float("nan"))
        )
        out[name] = {str(c): float(v) for c, v in enumerate(acc.tolist())}
    return out


def evaluate_model(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    attacks: Sequence[AttackFactory],
    eps: Sequence[float],
    num_classes: int,
    batch_size: int = 512,
    curve: CurveSettings | None = None,
    sanity: SanitySettings | None = None,
    per_class: bool = True,
    keep_examples: bool = False,
    early_stop: bool = True,
    cuda_graphs: bool = False,
    eot_iter: int = 1,
    seed: int | None = 0,
) -> Evaluation:
    """Clean and robust accuracy of every attack at every eps with the per-sample worst case;
    then (each optional) the robustness curve, the sanity checks and per-class accuracy.

    ``early_stop``: per-sample early stopping for the attacks that have it (see
    :class:`Evaluator`), in the suite, the curve and the sanity checks alike. ``cuda_graphs``:
    on CUDA, the attacks that allow it replay from captured CUDA graphs (see
    :meth:`Attack.with_cuda_graph`). ``eot_iter`` > 1: every gradient attack, the sanity
    checks' own included, averages its gradients over that many passes (EOT, for a randomized
    model; see :meth:`Attack.with_eot`), unless the attack was built with its own
    ``eot_iter``. ``seed``: the evaluation draws its random numbers (PGD's random starts, noise
    layers that draw from torch) from torch's generators seeded with it, in a fork of their
    state, so the same model and data give the same numbers whatever ran before (the evaluation
    at the end of a training run and a later ``robustai evaluate`` agree), and the caller's
    generators are left as they were; None: from the generators as they are."""
    # (anything else where the model belongs is named by the checks inside)
    param = next(model.parameters(), None) if isinstance(model, nn.Module) else None
    if not is_integer(num_classes) or num_classes < 1:  # else it failed after every attack ran
        raise ValueError(f"num_classes must be a whole number >= 1; got {num_classes!r}")
    early_stop = check_flag("early_stop", early_stop)  # "False" turned it on
    cuda_graphs = check_flag("cuda_graphs", cuda_graphs)
    per_class = check_flag("per_class", per_class)
    keep_examples = check_flag("keep_examples", keep_examples)
    with seeded_rng(seed, x.device if param is None else param.device):
        y = checked_labels(x, y)
        if len(y) and (int(y.max()) >= num_classes or int(y.min()) < 0):
            bad = int(y.max()) if int(y.max()) >= num_classes else int(y.min())
            raise ValueError(
                f"label {bad} is out of range for num_classes={num_classes}"
                " (labels are 0 .. num_classes - 1)"
            )
        attacks = check_factories(attacks)
        eot_iter = check_eot_iter(eot_iter)
        if eot_iter > 1:
            attacks = [eot_averaging(make, eot_iter) for make in attacks]
        if early_stop:
            attacks = [early_stopping(make) for make in attacks]
        if cuda_graphs:
            once = WarnOnce()  # off CUDA, one warning for the whole suite, curve and checks
            attacks = [cuda_graphing(make, once) for make in attacks]
        evaluator = Evaluator(attacks, eps, batch_size, early_stop)
        check_metric_keys(evaluator.attacks, evaluator.eps)  # before the model runs
        clean_pred = predict(model, x, batch_size, num_classes=num_classes)
        result = evaluator.run(model, x, y, keep_examples=keep_examples, clean_pred=clean_pred)
        rc = None
        if curve is not None and len(x) and attacks:
            cap = math.inf if {make(0.0).norm for make in attacks} == {"l2"} else 1.0
            given = [] if curve.eps is None else [float(e) for e in curve.eps]  # NumPy arrays too
            grid = given or default_curve_eps(eps, cap)
            n = len(x) if curve.samples is None else min(curve.samples, len(x))
            rc = robustness_curve(
                model,
                attacks,
                grid,
                x[:n],
                y[:n],
                batch_size,
                reuse=result if n == len(x) else None,
                early_stop=early_stop,
            )
            log.info(
                "robustness curve on %d samples: %s",
                n,
                ", ".join(f"{e:g}: {a:.3f}" for e, a in zip(rc.eps, rc.worst_case, strict=True)),
            )
        report = None
        if sanity is not None and len(x):
            report = run_sanity_checks(
                model,
                x,
                y,
                attacks=attacks,
                eps=eps,
                num_classes=num_classes,
                result=result,
                curve=rc,
                settings=sanity,
                batch_size=batch_size,
                eot_iter=eot_iter,
            )
        classes = None
        if per_class and result.clean_correct is not None:
            masks = {"clean_acc": result.clean_correct}
            masks.update({k: o.robust for k, o in result.outcomes.items()})
            table = per_class_accuracy(y, masks, num_classes)
            worst = per_class_accuracy(y, result.worst_robust, num_classes)
            classes = {
                "samples": {
                    str(c): int(n) for c, n in enumerate(torch.bincount(y, minlength=num_classes))
                },
                "clean_acc": table.pop("clean_acc"),
                "robust_acc": table,
                "worst_case_acc": worst,
            }
        return Evaluation(result, rc, report, classes, num_classes)


@contextmanager
def seeded_rng(seed: int | None, device: torch.device) -> Iterator[None]:
    """Torch's CPU generator (and ``device``'s, on CUDA) seeded with ``seed`` inside, restored
    on leaving; nothing at all for None."""
    if seed is None:
        yield
        return
    if not is_integer(seed):
        raise ValueError(f"seed must be an integer or None; got {seed!r}")
    if not 0 <= int(seed) < 2**64:  # what torch's generators take (a negative one is wrapped)
        raise ValueError(f"seed must be in [0, 2**64) or None; got {seed}")
    cuda = device.type == "cuda"
    index = (
        (device.index if device.index is not None else torch.cuda.current_device()) if cuda else 0
    )
    with torch.random.fork_rng(devices=[index] if cuda else []):
        torch.default_generator.manual_seed(int(seed))
        if cuda:
            torch.cuda.default_generators[index].manual_seed(int(seed))
        yield
