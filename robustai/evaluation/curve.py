"""Robust accuracy against eps: the robustness curve, per attack and for the worst case.

One number at one eps hides how a model degrades; the curve shows it, and it is also a sanity
check: robust accuracy must not rise as eps grows (a rise means the attack, not the model, got
weaker), and it starts at the clean accuracy (eps = 0).
"""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor, nn

from robustai.evaluation.accuracy import predict
from robustai.evaluation.evaluator import (
    AttackFactory,
    EvalResult,
    Evaluator,
    check_factories,
    eps_key,
)

log = logging.getLogger(__name__)

#: multiples of the largest evaluated eps that make the default curve
DEFAULT_FRACTIONS: tuple[float, ...] = (0.25, 0.5, 1.0, 1.5, 2.0)
WORST_CASE = "worst case"


def default_curve_eps(eps: Sequence[float], cap: float = 1.0) -> list[float]:
    """0 and 1/4, 1/2, 1, 3/2 and 2 times the largest of ``eps``, capped at ``cap`` (1 where
    the suite has an L-inf attack: a larger L-inf ball adds nothing; none for L2 only).

    A point with the metric key (:func:`eps_key`) of an evaluated eps is that eps exactly, so
    the curve reuses the suite's result there (8/255 stays 8/255, not 0.031373, which would be
    attacked again and could differ from the report); every other point is its key's value
    (0.15, not 0.15000000000000002), so that its eps and its key agree."""
    evaluated = {eps_key(float(e)): float(e) for e in eps}
    top = max(evaluated.values()) if evaluated else 0.0

    def point(value: float) -> float:
        key = eps_key(value)
        return evaluated.get(key, float(key))

    values = {0.0, *(min(cap, point(f * top)) for f in DEFAULT_FRACTIONS)}
    return sorted(values)


@dataclass
class RobustnessCurve:
    """Accuracy per eps (ascending, eps 0 = clean accuracy) for each attack and the worst case."""

    eps: list[float]
    series: dict[str, list[float]]  # attack label -> accuracy at each eps
    worst_case: list[float]
    samples: int
    norm: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "eps": self.eps,
            "norm": self.norm,
            "samples": self.samples,
            "robust_acc": self.series,
            "worst_case_acc": self.worst_case,
        }


def robustness_curve(
    model: nn.Module,
    attacks: Sequence[AttackFactory],
    eps: Sequence[float],
    x: Tensor,
    y: Tensor,
    batch_size: int = 512,
    reuse: EvalResult | None = None,
    early_stop: bool = True,
) -> RobustnessCurve:
    """Robust accuracy of every attack (and the per-sample worst case) at each eps.

    ``reuse``: an evaluation of the same attacks on the same samples; its eps are not attacked
    again. ``early_stop``: as :class:`Evaluator`'s.
    """
    attacks = check_factories(attacks)
    grid = sorted({0.0, *(float(e) for e in eps)})
    same_samples = reuse is not None and reuse.samples == len(x) and reuse.clean_pred is not None
    clean_pred = reuse.clean_pred if same_samples and reuse is not None else None
    if clean_pred is None:
        clean_pred = predict(model, x, batch_size)
    clean_acc = float((clean_pred == y).float().mean()) if len(x) else float("nan")
    labels = [make(grid[-1] if grid[-1] > 0 else 1.0).label for make in attacks]
    norms = {make(1.0).norm for make in attacks} or {"linf"}
    series: dict[str, list[float]] = {label: [] for label in labels}
    worst: list[float] = []
    done = set(reuse.worst_case) if same_samples and reuse is not None else set()
    todo = [e for e in grid if e > 0 and eps_key(e) not in done]
    fresh = (
        Evaluator(attacks, todo, batch_size, early_stop).run(model, x, y, clean_pred=clean_pred)
        if todo and attacks
        else None
    )
    for e in grid:
        if e == 0:
            for label in labels:
                series[label].append(clean_acc)
            worst.append(clean_acc)
            continue
        source = fresh if fresh is not None and eps_key(e) in fresh.worst_case else reuse
        assert source is not None
        for make, label in zip(attacks, labels, strict=True):
            series[label].append(source.robust_acc[f"{make(e).label}@{e:g}"])
        worst.append(source.worst_case[eps_key(e)])
    return RobustnessCurve(grid, series, worst, len(x), "/".join(sorted(norms)))


def curve_figure(curve: RobustnessCurve, title: str = "") -> Any:
    """A matplotlib Figure of the curve (no pyplot, no display: safe on servers)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for label, values in curve.series.items():
        ax.plot(curve.eps, values, marker="o", linewidth=1.5, label=label)
    if len(curve.series) != 1:
        ax.plot(
            curve.eps,
            curve.worst_case,
            marker="s",
            color="black",
            linewidth=2.0,
            linestyle="--",
            label=WORST_CASE,
        )
    ax.set_xlabel(f"eps ({curve.norm}, [0,1] pixel units)")
    ax.set_ylabel("robust accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    # a run's title (its name, model and attack) can outgrow the figure: wrap it, not clip it
    text = title or f"Robustness curve ({curve.samples} samples)"
    ax.set_title("\n".join(textwrap.wrap(text, 60)), fontsize="medium")
    fig.tight_layout()
    return fig


def save_curve_png(curve: RobustnessCurve, path: str | Path, title: str = "") -> np.ndarray:
    """Write the curve as a PNG; returns the rendered image (H, W, 3 uint8), e.g. for
    TensorBoard."""
    fig = curve_figure(curve, title)
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    fig.savefig(str(path), format="png")
    log.info("robustness curve: %s", path)
    return image
