"""The privacy guarantee of a run in one sentence users can quote, and the report section.

The sentence is built from the ``privacy`` entry of ``metrics.json`` alone, so a report writer
can regenerate it from a finished run folder: ``privacy_section(json.load(metrics.json))``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from robustai.fileio import write_text
from robustai.privacy.accounting import epsilon_accountant

log = logging.getLogger(__name__)

REPORT = "report.md"
SECTION = "## Privacy"
NO_GUARANTEE = "This run gives no differential-privacy guarantee."

_ACCOUNTANTS = {"prv": "PRV (Gopi et al. 2021)", "rdp": "RDP (Mironov 2017)"}
_WHAT = {"features": "feature vector", "output": "logit vector", "input": "input"}


def _num(v: float) -> str:
    return f"{v:.3g}"


def rounded_up(v: float) -> str:
    """A guaranteed epsilon or delta to 3 significant figures, rounded up: rounded to nearest,
    2.99406 would read 2.99, more privacy than the accountant proved."""
    text = _num(v)
    if not 0 < v < math.inf or float(text) >= v:
        return text
    unit = 10.0 ** (math.floor(math.log10(v)) - 2)
    steps = math.ceil(v / unit)
    text = _num(steps * unit)
    # v / unit can round to a whole number below it (5.510000000000001 / 0.01 gives 551.0,
    # which read "5.51"): step up until the text is no smaller than v
    while float(text) < v:
        steps += 1
        text = _num(steps * unit)
    return text


def privacy_statement(privacy: Mapping[str, Any] | None) -> str:
    """One sentence stating what a run's ``privacy`` record guarantees (or that it does not)."""
    if not privacy:
        return NO_GUARANTEE
    method = privacy.get("method")
    if method == "dpsgd":
        return _dpsgd(privacy)
    if method in ("laplace", "gaussian"):
        return _mechanism(privacy)
    if method == "gaussian_noise":
        return (
            f"Gaussian noise (sigma={_num(privacy['sigma'])}) was added to the model's "
            f"{privacy['where']} during training for noise robustness; it gives no "
            "differential-privacy guarantee."
        )
    return NO_GUARANTEE


def _seeded(p: Mapping[str, Any]) -> str:
    if not p.get("reproducible_noise"):
        return ""
    return (
        "; the noise was seeded (privacy.noise_seed), so anyone who knows the seed can remove "
        "it and the guarantee does not hold in practice"
    )


def _dpsgd(p: Mapping[str, Any]) -> str:
    eps = float(p["epsilon"])
    if eps == float("inf") and not float(p["noise_multiplier"]) > 0:
        return (
            "This run clipped per-sample gradients but added no noise (noise multiplier 0), "
            "so it gives no differential-privacy guarantee."
        )
    if eps == float("inf"):  # noise was added, but the accountant's bound is not finite
        return (
            f"Opacus' {_ACCOUNTANTS.get(p['accountant'], p['accountant'])} accountant bounds "
            f"epsilon by no finite number for DP-SGD with Poisson sampling rate "
            f"{_num(p['sample_rate'])}, noise multiplier {_num(p['noise_multiplier'])} and "
            f"{p['steps']} steps, so this run gives no differential-privacy guarantee."
        )
    delta = rounded_up(float(p["delta"]))
    accountant = epsilon_accountant(eps, p["accountant"])  # the figure may be RDP's under prv
    return (
        f"The trained weights are ({rounded_up(eps)}, {delta})-differentially "
        f"private with respect to adding or removing any one of the {p['num_samples']} "
        f"training records, by DP-SGD with Poisson sampling rate {_num(p['sample_rate'])}, "
        f"noise multiplier {_num(p['noise_multiplier'])} and per-sample gradient clipping at "
        f"{p['max_grad_norm']:g} over {p['steps']} steps, as accounted by Opacus' "
        f"{_ACCOUNTANTS.get(accountant, accountant)} accountant; metrics computed on "
        f"the training data and the choice of hyper-parameters are not covered{_seeded(p)}."
    )


def _mechanism(p: Mapping[str, Any]) -> str:
    laplace = p["method"] == "laplace"
    name = "Laplace" if laplace else "Gaussian"
    norm = "L1" if laplace else "L2"
    noise = (
        f"noise scale {_num(p['noise_scale'])}"
        if laplace
        else f"noise std {_num(p['noise_scale'])}"
    )
    dp = (
        f"{rounded_up(p['epsilon'])}-differentially private"
        if laplace
        else f"({rounded_up(p['epsilon'])}, {rounded_up(p['delta'])})-differentially private"
    )
    how = f"{norm} sensitivity {p['sensitivity']:g}, {noise}"
    if p["where"] == "input":
        return (
            f"Each training image was released once through the {name} mechanism ({how}) "
            f"before training, so the weights and everything else computed from the training "
            f"images are {dp} with respect to replacing any one training image; labels are "
            f"not protected{_seeded(p)}."
        )
    what = _WHAT[p["where"]]
    return (
        f"Every forward pass releases each record's {what} through the {name} mechanism "
        f"({how}), one release that is {dp} with respect to that {what} (k releases of the "
        "same record spend k times as much); this does not protect the training data held "
        f"in the weights{_seeded(p)}."
    )


def privacy_section(metrics: Mapping[str, Any]) -> str:
    """The report's "Privacy" section for a run's ``metrics.json`` content (markdown)."""
    sentence = metrics.get("privacy_statement") or privacy_statement(metrics.get("privacy"))
    return f"{SECTION}\n\n{sentence}\n"


def append_privacy_section(run_dir: str | Path, metrics: Mapping[str, Any]) -> bool:
    """Append the Privacy section to ``report.md`` in ``run_dir`` if the report exists and has
    none yet (the rest of the report is left as it is). Returns whether it appended. The whole
    report is written again atomically, as every run-folder file is: a reader, or a process
    killed mid-write, never sees half a section."""
    report = Path(run_dir) / REPORT
    if not report.is_file():
        return False
    text = report.read_text()
    if any(line.strip() == SECTION for line in text.splitlines()):
        return False
    sep = "" if text.endswith("\n\n") or not text else ("\n" if text.endswith("\n") else "\n\n")
    write_text(report, text + sep + privacy_section(metrics))
    log.info("added the privacy section to %s", report)
    return True
