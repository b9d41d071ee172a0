"""Per-sample worst case, per-class accuracy, report.json / report.md and saved examples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from robustai.attacks import build_attack
from robustai.data import DataBundle
from robustai.evaluation import (
    CurveSettings,
    Evaluation,
    Evaluator,
    SanitySettings,
    build_report,
    evaluate_model,
    per_class_accuracy,
    render_markdown,
    robust_correct,
    save_examples,
    write_report,
)

SUITE = [
    lambda eps: build_attack("fgsm", eps=eps),
    lambda eps: build_attack("pgd", eps=eps, steps=10, random_start=False),
]


def test_outcomes_match_attacking_every_sample(digits_model: nn.Module, digits: DataBundle) -> None:
    """Skipping the samples that are wrong clean gives the same per-sample result as attacking
    everything (deterministic attacks; plain PGD, not the evaluator's default early stop)."""
    x, y = digits.eval.x, digits.eval.y
    result = Evaluator(SUITE, [0.1], early_stop=False).run(digits_model, x, y)
    for key, make in zip(result.outcomes, SUITE, strict=True):
        expected = robust_correct(digits_model, make(0.1), x, y)
        assert torch.equal(result.outcomes[key].robust, expected), key
    worst = result.worst_robust["0.1"]
    assert torch.equal(
        worst, result.outcomes["fgsm@0.1"].robust & result.outcomes["pgd10@0.1"].robust
    )
    assert result.worst_case["0.1"] == pytest.approx(worst.float().mean().item())
    assert result.worst_case["0.1"] <= min(result.robust_acc.values())


def test_per_class_accuracy() -> None:
    y = torch.tensor([0, 0, 1, 1, 1, 3])
    ok = torch.tensor([True, False, True, True, False, True])
    table = per_class_accuracy(y, {"m": ok}, num_classes=4)["m"]
    assert table["0"] == 0.5 and table["1"] == pytest.approx(2 / 3) and table["3"] == 1.0
    assert table["2"] != table["2"]  # NaN: no sample of class 2


@pytest.fixture(scope="module")
def evaluation(digits_model: nn.Module, digits: DataBundle) -> Evaluation:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return evaluate_model(
            digits_model,
            digits.eval.x[:80],
            digits.eval.y[:80],
            attacks=SUITE,
            eps=[0.05, 0.1],
            num_classes=digits.num_classes,
            curve=CurveSettings(eps=[0.05, 0.1, 0.2]),
            sanity=SanitySettings(samples=40, black_box_queries=100),
            keep_examples=True,
        )
    finally:
        torch.set_num_threads(threads)


def test_per_class_in_the_evaluation(evaluation: Evaluation, digits: DataBundle) -> None:
    pc = evaluation.per_class
    y = digits.eval.y[:80]
    assert sum(pc["samples"].values()) == 80
    assert set(pc["robust_acc"]) == {"fgsm@0.05", "pgd10@0.05", "fgsm@0.1", "pgd10@0.1"}
    # class-weighted mean of per-class worst case = overall worst case
    counts = torch.bincount(y, minlength=10).double()
    per = torch.tensor([pc["worst_case_acc"]["0.1"][str(c)] for c in range(10)]).nan_to_num(0)
    assert float((per * counts).sum() / counts.sum()) == pytest.approx(
        evaluation.result.worst_case["0.1"], abs=1e-6
    )


def test_report_files(evaluation: Evaluation, tmp_path: Path) -> None:
    report = build_report(
        evaluation,
        title="Robustness evaluation of test",
        context={"model": "small_cnn", "data": "digits, eval"},
        curve_png="robustness_curve.png",
    )
    js, md = write_report(tmp_path, report)
    loaded = json.loads(js.read_text())
    assert loaded["robust_acc"] == evaluation.result.robust_acc
    assert loaded["worst_case_acc"] == evaluation.result.worst_case
    assert loaded["trustworthy"] is evaluation.sanity.passed
    assert set(loaded["sanity"]["checks"]) == {c.name for c in evaluation.sanity.checks}
    assert loaded["curve"]["eps"] == [0.0, 0.05, 0.1, 0.2]
    text = md.read_text()
    assert text == render_markdown(loaded)
    for heading in (
        "# Robustness evaluation of test",
        "## Accuracy",
        "## Robustness curve",
        "## Sanity checks",
        "## Per class",
        "## Attacks",
    ):
        assert heading in text
    assert "![robustness curve](robustness_curve.png)" in text
    assert "| 0.1 |" in text and "pgd10" in text
    for check in evaluation.sanity.checks:
        assert f"| {check.name} |" in text


def test_untrustworthy_verdict_is_stated() -> None:
    report = {
        "title": "t",
        "samples": 10,
        "clean_acc": 0.9,
        "robust_acc": {"pgd20@0.1": 0.8},
        "worst_case_acc": {"0.1": 0.8},
        "trustworthy": False,
        "sanity": {
            "failed": ["gradients"],
            "warned": [],
            "samples": 10,
            "seconds": 0.1,
            "checks": {"gradients": {"status": "fail", "reason": "zero gradients"}},
        },
    }
    text = render_markdown(report)
    assert "**Verdict: NOT trustworthy.** Failed sanity checks: gradients." in text
    assert "| gradients | **FAIL** | zero gradients |" in text


def test_examples_round_trip(evaluation: Evaluation, digits: DataBundle, tmp_path: Path) -> None:
    x, y = digits.eval.x[:80], digits.eval.y[:80]
    path = save_examples(tmp_path / "examples.safetensors", x, y, evaluation)
    t = load_file(str(path))
    assert torch.equal(t["x"], x) and torch.equal(t["y"], y)
    for key, o in evaluation.result.outcomes.items():
        assert torch.equal(t[f"robust/{key}"].bool(), o.robust)
        assert torch.equal(t[f"pred/{key}"], o.pred)
        adv = t[f"x_adv/{key}"]
        assert adv.shape == x.shape
        assert (adv - x).abs().max() <= float(key.rsplit("@", 1)[1]) + 1e-6
        wrong_clean = t["clean_pred"] != y
        assert torch.equal(adv[wrong_clean], x[wrong_clean])  # not attacked: already wrong
    assert torch.equal(t["worst_robust/0.1"].bool(), evaluation.result.worst_robust["0.1"])


@pytest.mark.parametrize("key", ["title", "created", "robustai_version", "clean_acc"])
def test_context_cannot_overwrite_the_reports_own_fields(evaluation: Evaluation, key: str) -> None:
    """title, created and robustai_version were overwritten by the context; the results'
    keys dropped its value without a word."""
    with pytest.raises(ValueError, match=f"context key\\(s\\) '{key}' are fields of the report"):
        build_report(evaluation, title="t", context={"model": "m", key: "from context"})
    report = build_report(evaluation, title="t", context={"run": {"title": "nested is fine"}})
    assert report["title"] == "t" and report["run"] == {"title": "nested is fine"}


@pytest.mark.parametrize(
    ("n", "attacks", "why"),
    [
        # one sample: every check that compares attacks skips ("could not fail"), and the two
        # that do not (gradients, deterministic) passed; the verdict read "trustworthy"
        (1, ["pgd"], "No sanity check that compares the attacks with others ran"),
        (40, [], "no attack ran"),  # no robust accuracy at all, yet "trustworthy"
    ],
)
def test_a_verdict_resting_on_no_comparison_of_attacks_is_unknown(
    digits_model: nn.Module, digits: DataBundle, n: int, attacks: list, why: str
) -> None:
    evaluation = evaluate_model(
        digits_model,
        digits.eval.x[:n],
        digits.eval.y[:n],
        attacks=[lambda eps, a=a: build_attack(a, eps=eps, steps=5) for a in attacks],
        eps=[0.1],
        num_classes=10,
        sanity=SanitySettings(samples=n),
    )
    assert evaluation.sanity is not None and evaluation.sanity.passed  # none failed
    report = build_report(evaluation, title="t")
    assert report["trustworthy"] is None
    assert "**Verdict: unknown" in render_markdown(report)
    assert why in render_markdown(report)
    # the same suite on 40 samples compares attacks: a verdict again
    if attacks:
        evaluation = evaluate_model(
            digits_model, digits.eval.x[:40], digits.eval.y[:40],
            attacks=[lambda eps: build_attack("pgd", eps=eps, steps=5)], eps=[0.1],
            num_classes=10, sanity=SanitySettings(samples=40),
        )  # fmt: skip
        assert build_report(evaluation, title="t")["trustworthy"] is not None
