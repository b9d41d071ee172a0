"""The evaluation's outputs: ``report.json`` (machine-readable), ``report.md`` (for people) and,
optionally, the adversarial examples with per-sample outcomes (safetensors, never pickle)."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor

from robustai.evaluation.suite import Evaluation
from robustai.fileio import atomic_write

log = logging.getLogger(__name__)

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
CURVE_PNG = "robustness_curve.png"
EXAMPLES = "adversarial_examples.safetensors"

_STATUS_MARK = {"pass": "PASS", "warn": "WARN", "fail": "**FAIL**", "skip": "skip"}


#: the checks that test the suite's numbers against other attacks (the others test the model's
#: gradients and randomness): a verdict that rests on none of them vouches for nothing
ATTACK_CHECKS = ("fgsm_baseline", "large_eps", "black_box", "convergence")


def verdict(evaluation: Evaluation) -> bool | None:
    """True when no sanity check failed and one that compares attacks passed or warned; False
    if one failed; None when nothing can be said: checks disabled, no attack run, or every
    check that compares attacks skipped (on one sample each of them is) or left out."""
    sanity = evaluation.sanity
    if sanity is None or not sanity.passed:
        return None if sanity is None else False
    compared = any(c.name in ATTACK_CHECKS and c.status in ("pass", "warn") for c in sanity.checks)
    return True if compared and evaluation.result.outcomes else None


def build_report(
    evaluation: Evaluation,
    *,
    title: str,
    context: Mapping[str, Any] | None = None,
    curve_png: str | None = None,
    examples: str | None = None,
) -> dict[str, Any]:
    """The content of report.json. ``context`` (model, data, suite, device, ...) is copied in;
    a key of the report's own (title, created, robustai_version, clean_acc, ...) is refused
    with a ValueError: it overwrote the title, date or version, or was dropped without a word."""
    from robustai import __version__

    r = evaluation.result
    context = dict(context or {})
    head = {
        "title": title,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "robustai_version": __version__,
    }
    results = {
        "samples": r.samples,
        "clean_acc": r.clean_acc,
        "robust_acc": r.robust_acc,
        "worst_case_acc": r.worst_case,
        "attacks": {k: repr(a) for k, a in r.attacks.items()},
        "per_class": evaluation.per_class,
        "curve": None if evaluation.curve is None else evaluation.curve.to_dict(),
        "curve_png": curve_png,
        "sanity": None if evaluation.sanity is None else evaluation.sanity.to_dict(),
        "trustworthy": verdict(evaluation),
        "eval_seconds": r.seconds,
        "examples": examples,
    }
    clash = sorted(context.keys() & (head.keys() | results.keys()))
    if clash:
        raise ValueError(
            f"context key(s) {', '.join(map(repr, clash))} are fields of the report itself; give"
            " them other names, or nest them (context={'run': {...}})"
        )
    return {**head, **context, **results}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.3f}"
    return str(v)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(report: Mapping[str, Any]) -> str:
    """report.md from the content of report.json; its ``privacy_statement`` (a model trained
    with privacy) becomes the Privacy section, so report.md, report.json and TensorBoard's copy
    of the report state the same guarantee."""
    out = [f"# {report['title']}", ""]
    trust = report.get("trustworthy")
    sanity = report.get("sanity")
    if trust is True:
        warned = sanity["warned"] if sanity else []
        extra = f" (warnings: {', '.join(warned)})" if warned else ""
        out.append(f"**Verdict: trustworthy.** No sanity check failed{extra}.")
    elif trust is False:
        out.append(
            "**Verdict: NOT trustworthy.** Failed sanity checks: "
            + ", ".join(sanity["failed"])
            + ". The robust accuracies below are upper bounds at best; see why under "
            "Sanity checks."
        )
    elif sanity is None:
        out.append("**Verdict: unknown** (sanity checks disabled).")
    elif not report["robust_acc"]:
        out.append("**Verdict: unknown** (no attack ran: there is no robust accuracy to check).")
    else:
        out.append(
            "**Verdict: unknown.** No sanity check that compares the attacks with others ran"
            f" ({', '.join(ATTACK_CHECKS)}: skipped or left out); evaluate more than one"
            " sample, with those checks."
        )
    out.append("")

    facts = [
        [k, report[k]] for k in ("checkpoint", "model", "data", "suite", "device") if report.get(k)
    ]
    facts.append(["samples", report["samples"]])
    out += [_table(["", ""], facts), ""]

    out += ["## Accuracy", ""]
    keys = list(report["robust_acc"])
    labels = list(dict.fromkeys(k.rsplit("@", 1)[0] for k in keys))
    rows = []
    for e, worst in report["worst_case_acc"].items():
        row: list[Any] = [e, report["clean_acc"]]
        row += [report["robust_acc"].get(f"{lab}@{e}", float("nan")) for lab in labels]
        rows.append([*row, worst])
    out += [
        _table(["eps", "clean", *labels, "worst case"], rows),
        "",
        "Robust accuracy counts a sample only if the model is right on it clean and attacked; "
        "the worst case only if every attack of the suite fails on it.",
        "",
    ]

    curve = report.get("curve")
    if curve:
        out += ["## Robustness curve", ""]
        if report.get("curve_png"):
            out += [f"![robustness curve]({report['curve_png']})", ""]
        header = [f"eps ({curve['norm']})", *curve["robust_acc"], "worst case"]
        rows = [
            [f"{e:g}", *(v[i] for v in curve["robust_acc"].values()), curve["worst_case_acc"][i]]
            for i, e in enumerate(curve["eps"])
        ]
        out += [_table(header, rows), "", f"On the first {curve['samples']} samples.", ""]

    if sanity:
        out += ["## Sanity checks", ""]
        rows = [
            [name, _STATUS_MARK.get(c["status"], c["status"]), c["reason"]]
            for name, c in sanity["checks"].items()
        ]
        out += [
            _table(["check", "status", "reason"], rows),
            "",
            f"Checks that attack ran on the first {sanity['samples']} samples "
            f"({sanity['seconds']:.1f}s).",
            "",
        ]

    classes = report.get("per_class")
    if classes:
        out += ["## Per class", ""]
        worst = classes["worst_case_acc"]
        header = ["class", "samples", "clean", *(f"worst case @{e}" for e in worst)]
        rows = [
            [c, n, classes["clean_acc"][c], *(worst[e][c] for e in worst)]
            for c, n in classes["samples"].items()
        ]
        out += [_table(header, rows), ""]

    if report.get("attacks"):
        out += ["## Attacks", ""]
        out += [f"- `{k}`: `{v}`" for k, v in report["attacks"].items()]
        out.append("")
    if report.get("examples"):
        out += [f"Adversarial examples and per-sample outcomes: `{report['examples']}`.", ""]
    if report.get("privacy_statement"):
        # imported here: robustai.privacy imports the training package, which imports this one
        from robustai.privacy.statement import privacy_section

        out.append(privacy_section(report))
    return "\n".join(out)


def write_report(out_dir: str | Path, report: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write report.json and report.md into ``out_dir`` (atomically)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    js, md = out / REPORT_JSON, out / REPORT_MD
    text = json.dumps(report, indent=2, allow_nan=True) + "\n"
    atomic_write(js, lambda p: p.write_text(text))
    markdown = render_markdown(report)
    atomic_write(md, lambda p: p.write_text(markdown))
    log.info("report: %s", md)
    return js, md


def save_examples(path: str | Path, x: Tensor, y: Tensor, evaluation: Evaluation) -> Path:
    """Save inputs, labels and, per attack, the adversarial inputs, predicted labels and robust
    flags (``x_adv/<key>``, ``pred/<key>``, ``robust/<key>``), plus ``worst_robust/<eps>``.

    Load with ``safetensors.torch.load_file``; keys are the metric keys of report.json.
    """
    r = evaluation.result
    tensors: dict[str, Tensor] = {"x": x, "y": y}
    if r.clean_pred is not None:
        tensors["clean_pred"] = r.clean_pred
    for key, o in r.outcomes.items():
        tensors[f"robust/{key}"] = o.robust.to(torch.uint8)
        tensors[f"pred/{key}"] = o.pred
        if o.x_adv is not None:
            tensors[f"x_adv/{key}"] = o.x_adv
    for e, mask in r.worst_robust.items():
        tensors[f"worst_robust/{e}"] = mask.to(torch.uint8)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = {
        "format": "pt",
        "content": "robustai adversarial examples",
        "keys": json.dumps(sorted(r.outcomes)),
    }
    p = Path(path)
    atomic_write(p, lambda t: save_file(tensors, str(t), metadata=meta))
    log.info("adversarial examples: %s", p)
    return p
