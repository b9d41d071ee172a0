"""The one-sentence guarantee and the report section."""

from __future__ import annotations

import math
import re
from decimal import Decimal
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from robustai.privacy import (
    append_privacy_section,
    build_privacy,
    privacy_section,
    privacy_statement,
)
from robustai.privacy.statement import rounded_up

DPSGD = {
    "method": "dpsgd",
    "epsilon": 2.338,
    "delta": 1e-5,
    "accountant": "prv",
    "noise_multiplier": 1.0,
    "max_grad_norm": 1.0,
    "sample_rate": 0.0445,
    "steps": 46,
    "num_samples": 1438,
    "reproducible_noise": False,
}


def _one_sentence(s: str) -> bool:
    return s.endswith(".") and not re.search(r"\.\s+[A-Z]", s) and "\n" not in s


def test_dpsgd_sentence_states_epsilon_delta_and_the_unit() -> None:
    s = privacy_statement(DPSGD)
    assert _one_sentence(s)
    for part in ("(2.34, 1e-05)-differentially private", "1438 training records", "46 steps"):
        assert part in s
    seeded = privacy_statement({**DPSGD, "reproducible_noise": True})
    assert "seed" in seeded and _one_sentence(seeded)
    assert "no differential-privacy guarantee" in privacy_statement(
        {**DPSGD, "epsilon": float("inf")}
    )


def test_the_sentence_names_the_accountant_whose_figure_it_states() -> None:
    """Beyond PRV_MAX_EPSILON a PRV run reports the RDP bound; "as accounted by Opacus' PRV"
    would name the wrong one."""
    assert "Opacus' PRV (Gopi et al. 2021) accountant" in privacy_statement(DPSGD)
    high = privacy_statement({**DPSGD, "epsilon": 615.3})
    assert "Opacus' RDP (Mironov 2017) accountant" in high and "PRV" not in high


def test_the_stated_guarantee_is_rounded_up_never_down() -> None:
    """Rounded to nearest, epsilon 2.99406 read "2.99" and a delta of 1.2345e-5 "1.23e-05": a
    stronger guarantee than the accountant proved."""
    s = privacy_statement({**DPSGD, "epsilon": 2.99406, "delta": 1.2345e-5})
    assert "(3, 1.24e-05)-differentially private" in s
    assert "(1.89, 1e-05)" in privacy_statement({**DPSGD, "epsilon": 1.8816})
    assert "(2.5, 1e-05)" in privacy_statement({**DPSGD, "epsilon": 2.5})  # exact stays
    lap = build_privacy("laplace", where="input", sensitivity=2.0, epsilon=0.12345)
    assert "0.124-differentially private" in lap.statement()


def test_an_unbounded_epsilon_with_noise_is_not_called_noise_free() -> None:
    """PRV's bound can be infinite although noise was added (sigma 0.8 at sample rate 1 over
    1000 steps): the sentence must say that, not that the noise multiplier was 0."""
    unbounded = {**DPSGD, "epsilon": float("inf"), "noise_multiplier": 0.8, "sample_rate": 1.0}
    s = privacy_statement({**unbounded, "steps": 1000})
    assert _one_sentence(s) and "no differential-privacy guarantee" in s
    assert "no noise" not in s and "noise multiplier 0.8" in s and "1000 steps" in s
    free = privacy_statement({**DPSGD, "epsilon": float("inf"), "noise_multiplier": 0.0})
    assert "added no noise (noise multiplier 0)" in free


def test_each_option_has_an_honest_sentence() -> None:
    lap = build_privacy("laplace", where="input", sensitivity=2.0, epsilon=1.0)
    assert "1-differentially private" in lap.statement()
    assert "labels are not protected" in lap.statement()
    out = build_privacy("gaussian", where="output", sensitivity=2.0, epsilon=1.0, delta=1e-5)
    assert "does not protect the training data" in out.statement()
    noise = build_privacy("gaussian_noise", sigma=0.2)
    assert noise.summary() is None
    assert "no differential-privacy guarantee" in noise.statement()
    assert build_privacy("none").statement() == privacy_statement(None)
    for plan in (lap, out, noise):
        assert _one_sentence(plan.statement())


def test_report_gets_one_privacy_section_appended(tmp_path: Path) -> None:
    metrics = {"privacy": DPSGD, "privacy_statement": privacy_statement(DPSGD)}
    assert not append_privacy_section(tmp_path, metrics)  # no report.md: nothing written
    assert not (tmp_path / "report.md").exists()
    report = tmp_path / "report.md"
    report.write_text("# Report\n\nclean acc 0.9\n")
    assert append_privacy_section(tmp_path, metrics)
    assert not append_privacy_section(tmp_path, metrics)  # idempotent
    text = report.read_text()
    assert text.startswith("# Report\n\nclean acc 0.9\n")
    assert text.count("## Privacy") == 1
    assert text.endswith(privacy_section(metrics))
    assert privacy_statement(DPSGD) in text


def test_privacy_section_replaces_the_report_atomically(tmp_path: Path) -> None:
    """Run-folder files are renamed into place, never modified where they lie: a reader that
    opened the old report.md (here: a hard link to it) keeps the whole old text, never half
    a section, and no temporary file stays behind."""
    metrics = {"privacy": DPSGD, "privacy_statement": privacy_statement(DPSGD)}
    report = tmp_path / "report.md"
    report.write_text("# Report\n")
    held = tmp_path / "held.md"
    held.hardlink_to(report)
    assert append_privacy_section(tmp_path, metrics)
    assert held.read_text() == "# Report\n"
    assert report.read_text() == "# Report\n\n" + privacy_section(metrics)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["held.md", "report.md"]


@given(st.floats(min_value=1e-300, max_value=1e300))
@example(5.510000000000001)  # 5.510000000000001 / 0.01 rounds to 551.0: it read "5.51"
@example(math.nextafter(2.99, math.inf))
@example(math.nextafter(1e-5, math.inf))
@example(math.nextafter(0.124, math.inf))
@example(math.nextafter(9.99, math.inf))
@example(math.nextafter(100.0, math.inf))
def test_rounded_up_never_reads_below_the_value(v: float) -> None:
    """Three significant figures, never smaller than ``v``, and at most one unit in the third
    figure above it."""
    text = rounded_up(v)
    assert float(text) >= v
    assert len(Decimal(text).normalize().as_tuple().digits) <= 3
    assert float(text) <= v * 1.01 * (1 + 1e-12)
