"""The robustness curve: robust accuracy against eps, per attack and worst case, as a PNG."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from torch import nn

from robustai.attacks import FGSM, build_attack
from robustai.data import DataBundle
from robustai.evaluation import (
    CurveSettings,
    Evaluator,
    default_curve_eps,
    evaluate_model,
    robustness_curve,
    save_curve_png,
)
from robustai.evaluation.accuracy import predict
from robustai.evaluation.evaluator import eps_key
from robustai.models import build_model

SUITE = [
    lambda eps: build_attack("fgsm", eps=eps),
    lambda eps: build_attack("pgd", eps=eps, steps=10),
]


def test_default_eps_grid() -> None:
    assert default_curve_eps([0.1]) == pytest.approx([0.0, 0.025, 0.05, 0.1, 0.15, 0.2])
    assert default_curve_eps([0.05, 0.3]) == pytest.approx([0, 0.075, 0.15, 0.3, 0.45, 0.6])
    assert max(default_curve_eps([0.8])) == 1.0  # capped at the whole [0, 1] range


def test_default_grid_keeps_the_evaluated_eps_and_its_keys() -> None:
    """8/255 stays 8/255 (rounded to 0.031373 it had another metric key than the suite's, was
    attacked again and could show another number than the report); other points are their
    keys' values."""
    grid = default_curve_eps([4 / 255, 8 / 255])
    assert 8 / 255 in grid and 4 / 255 in grid  # 1x and 1/2x: the evaluated eps themselves
    for e in grid:
        assert e in (4 / 255, 8 / 255) or float(eps_key(e)) == e


def test_curve_reuses_the_suite_at_an_eps_such_as_8_255() -> None:
    torch.manual_seed(0)
    model = build_model("small_cnn", (1, 8, 8), 10).eval()
    x = torch.rand(16, 1, 8, 8)
    y = predict(model, x)
    attacked: list[float] = []

    class CountingFGSM(FGSM):
        def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            attacked.append(self.eps)
            return super().perturb(model, x, y)

    ev = evaluate_model(
        model,
        x,
        y,
        attacks=[lambda eps: CountingFGSM(eps)],
        eps=[8 / 255],
        num_classes=10,
        curve=CurveSettings(),
    )
    assert ev.curve is not None
    assert attacked.count(8 / 255) == 1 and len(attacked) == len(set(map(eps_key, attacked)))
    at = ev.curve.eps.index(8 / 255)
    assert ev.curve.worst_case[at] == ev.result.worst_case[eps_key(8 / 255)]


def test_curve_falls_from_clean_accuracy(digits_model: nn.Module, digits: DataBundle) -> None:
    x, y = digits.eval.x[:120], digits.eval.y[:120]
    curve = robustness_curve(digits_model, SUITE, [0.05, 0.1, 0.2, 0.3], x, y)
    assert curve.eps == pytest.approx([0.0, 0.05, 0.1, 0.2, 0.3])
    assert set(curve.series) == {"fgsm", "pgd10"}
    clean = curve.worst_case[0]
    assert clean > 0.9
    for values in [*curve.series.values(), curve.worst_case]:
        assert values[0] == clean
        assert all(b <= a + 0.02 for a, b in itertools.pairwise(values))  # 2 samples of noise
    # the worst case is at most every attack, point by point
    for i in range(len(curve.eps)):
        assert curve.worst_case[i] <= min(v[i] for v in curve.series.values())
    assert curve.worst_case[-1] < 0.1
    d = curve.to_dict()
    assert d["samples"] == 120 and d["norm"] == "linf" and d["eps"] == curve.eps


def test_curve_reuses_an_evaluation_of_the_same_samples(
    digits_model: nn.Module, digits: DataBundle
) -> None:
    """Points already evaluated are not attacked again, and agree with a fresh evaluation."""
    x, y = digits.eval.x[:60], digits.eval.y[:60]
    attacked: list[float] = []

    class CountingFGSM(FGSM):
        def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            attacked.append(self.eps)
            return super().perturb(model, x, y)

    suite = [lambda eps: CountingFGSM(eps)]
    result = Evaluator(suite, [0.1]).run(digits_model, x, y)
    attacked.clear()
    reused = robustness_curve(digits_model, suite, [0.05, 0.1], x, y, reuse=result)
    assert attacked == [0.05], "only the new eps is attacked"
    fresh = robustness_curve(digits_model, suite, [0.05, 0.1], x, y)
    assert attacked == [0.05, 0.05, 0.1]
    assert reused.series == fresh.series  # FGSM is deterministic


def test_png_is_written(digits_model: nn.Module, digits: DataBundle, tmp_path: Path) -> None:
    curve = robustness_curve(
        digits_model, SUITE, [0.1, 0.2], digits.eval.x[:30], digits.eval.y[:30]
    )
    image = save_curve_png(curve, tmp_path / "curve.png", title="test")
    data = (tmp_path / "curve.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype.name == "uint8"
    assert image.shape[1] > image.shape[0] > 100


def test_a_long_title_is_wrapped_inside_the_figure() -> None:
    """A run's title (name, model, attack, sample count) ran past the figure's right edge."""
    from robustai.evaluation.curve import RobustnessCurve, curve_figure

    curve = RobustnessCurve([0.0, 0.1], {"pgd20": [0.9, 0.8]}, [0.9, 0.8], 200, "linf")
    title = "digits_small_cnn_fgsm_rs: small_cnn trained with FGSM-RS at eps 0.1 (200 samples)"
    fig = curve_figure(curve, title)
    fig.canvas.draw()
    text = fig.axes[0].title
    assert text.get_text().replace("\n", " ") == title
    box = text.get_window_extent(fig.canvas.get_renderer())
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        # -5 attacked all but the last five samples, 0 gave a curve of NaNs, 2.5 a TypeError
        ({"samples": -5}, "samples must be a whole number >= 1"),
        ({"samples": 0}, "samples must be a whole number >= 1"),
        ({"samples": 2.5}, "samples must be a whole number >= 1 .*got 2.5"),
        ({"eps": 0.1}, "eps must be a list of eps values"),
        ({"eps": [0.1, -0.05]}, "eps values must be finite numbers >= 0 .*got -0.05"),
        ({"eps": [float("nan")]}, "eps values must be finite numbers >= 0"),
    ],
)
def test_curve_settings_are_checked_when_made(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CurveSettings(**settings)


def test_curve_settings_take_numpy_values_and_generators() -> None:
    import numpy as np

    assert CurveSettings(eps=(e for e in (0.05, 0.1))).eps == [0.05, 0.1]
    assert CurveSettings(eps=np.array([0.05, 0.1]), samples=np.int64(50)).samples == 50
    assert CurveSettings(eps=[], samples=None).samples is None
