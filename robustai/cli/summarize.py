"""``robustai summarize <sweep folder>``: compare a sweep's members.

Reads every member's ``.hydra/overrides.yaml`` and ``metrics.json`` (or its failure record),
prints a table sorted by the sweep's objective, writes it as ``summary.csv`` (full precision,
the same numbers as metrics.json) and ``summary.md``, and plots the Pareto front of robust
against clean accuracy (``pareto.png``, privacy epsilon as colour when the members report one).
An Optuna sweep's ``optimization_results.yaml`` is matched back to the member it names.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from robustai.cli.common import fail
from robustai.cli.sweep_status import (
    FAILED,
    OK,
    find_members,
    member_status,
    result_file,
)
from robustai.errors import UserError
from robustai.tracking.hparams import (
    better_direction,
    flat_metrics,
    known_metric_name,
    metric_names_help,
    metric_value,
)

log = logging.getLogger(__name__)

CSV_FILE, MARKDOWN_FILE, PLOT_FILE = "summary.csv", "summary.md", "pareto.png"
OPTUNA_RESULTS = "optimization_results.yaml"
DEFAULT_OBJECTIVE = "worst_case_acc"


class SummaryError(UserError):
    """The folder holds nothing to summarize."""


@dataclass
class Member:
    name: str  # folder relative to the sweep folder, e.g. "3"
    folder: Path
    status: str
    error: str = ""
    overrides: dict[str, str] = field(default_factory=dict)  # key -> value as written
    values: dict[str, Any] = field(default_factory=dict)  # key -> parsed value
    metrics: dict[str, Any] = field(default_factory=dict)  # metrics.json as written
    objectives: list[str] = field(default_factory=list)  # the member's optimized_metric
    directions: list[str] = field(default_factory=list)  # from an Optuna sweeper, if any
    objective: float | None = None
    pareto: bool = False
    optuna_best: bool = False
    command: str | None = None  # the Hydra job's name: train or evaluate (None: not recorded)

    @property
    def flat(self) -> dict[str, float]:
        return flat_metrics(self.metrics)

    @property
    def robust(self) -> float | None:
        """Worst case over the evaluator's attacks at the first eps (the Pareto plot's y); None
        where it is not available (NaN: a suite without attacks, or an empty eval split), so
        the member is neither plotted nor put on the Pareto front."""
        value = metric_value(self.metrics, "worst_case_acc")
        return None if value is None or math.isnan(value) else value


@dataclass
class Summary:
    folder: Path
    members: list[Member]
    objective: str
    maximize: bool
    columns: list[str]  # override keys shown
    metric_columns: list[str]
    optuna: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)  # what the ranking cannot be trusted for

    @property
    def best(self) -> Member | None:
        # NaN (no attack measured it) ranks nothing: it sorts last, and is no "best"
        ranked = [
            m for m in self.members if m.objective is not None and not math.isnan(m.objective)
        ]
        return ranked[0] if ranked else None


def read_member(root: Path, folder: Path) -> Member:
    """One member's record; files that cannot be read (a member killed while writing them, or
    edited by hand) make it a failed row naming the file, so the rest are still summarized."""
    status, error = member_status(folder)
    member = Member(name=str(folder.relative_to(root)), folder=folder, status=status, error=error)
    try:
        _read_records(member)
    except _Unreadable as e:
        member.status, member.error = FAILED, str(e)
    return member


class _Unreadable(Exception):
    """A member's file that is not what robustai writes."""


def _load(path: Path, kind: type) -> Any:
    """``path`` (YAML, or JSON for ``.json``) as plain data of type ``kind``."""
    from omegaconf import OmegaConf

    try:
        if path.suffix == ".json":
            data = json.loads(path.read_text())
        else:
            data = OmegaConf.to_container(OmegaConf.load(path))
    except Exception as e:  # yaml's, OmegaConf's and json's errors, and OSError
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise _Unreadable(f"unreadable {path.name}: {first}") from e
    if not data:  # an empty file: nothing recorded (Hydra writes [] for no overrides)
        return kind()
    if not isinstance(data, kind):
        raise _Unreadable(f"unreadable {path.name}: not a {kind.__name__}")
    return data


def _read_records(member: Member) -> None:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    hydra_dir = member.folder / ".hydra"
    if (hydra_dir / "overrides.yaml").is_file():
        lines = _load(hydra_dir / "overrides.yaml", list)
        member.overrides, member.values = _parse_overrides([str(x) for x in lines])
    objective: Any = DEFAULT_OBJECTIVE
    if (hydra_dir / "config.yaml").is_file():
        objective = _load(hydra_dir / "config.yaml", dict).get("optimized_metric", objective)
    if isinstance(objective, str):
        objective = [objective]
    names_ok = isinstance(objective, list) and all(isinstance(o, str) for o in objective)
    if not (names_ok and objective):
        raise _Unreadable(
            "unreadable config.yaml: optimized_metric is not a metric name or a list of them"
        )
    member.objectives = objective
    if (hydra_dir / "hydra.yaml").is_file():
        hydra_cfg = OmegaConf.create(_load(hydra_dir / "hydra.yaml", dict))
        try:
            direction = OmegaConf.select(hydra_cfg, "hydra.sweeper.direction", default=None)
        except OmegaConfBaseException as e:  # e.g. an interpolation that no longer resolves
            raise _Unreadable(
                f"unreadable hydra.yaml: hydra.sweeper.direction: {str(e).splitlines()[0]}"
            ) from e
        job = OmegaConf.select(
            hydra_cfg, "hydra.job.name", default=None, throw_on_resolution_failure=False
        )
        member.command = job if isinstance(job, str) else None
        if direction is not None:
            raw = OmegaConf.to_container(direction) if OmegaConf.is_config(direction) else direction
            member.directions = [str(d) for d in (raw if isinstance(raw, list) else [raw])]
    result = result_file(member.folder) if member.status == OK else None
    if result is not None:  # metrics.json, or an evaluation's report.json (the same keys)
        member.metrics = _checked_metrics(_load(result, dict), result.name)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _checked_metrics(metrics: dict[str, Any], name: str) -> dict[str, Any]:
    """The keys the table, the ranking and the Pareto front read, as robustai writes them."""
    if not _is_number(metrics.get("clean_acc")):
        raise _Unreadable(f"unreadable {name}: clean_acc is not a number")
    worst = metrics.get("worst_case_acc", {})
    if not isinstance(worst, dict) or not all(_is_number(v) for v in worst.values()):
        raise _Unreadable(f"unreadable {name}: worst_case_acc is not a map of eps to numbers")
    try:
        [float(k) for k in worst]
    except ValueError:
        raise _Unreadable(f"unreadable {name}: worst_case_acc's keys are not eps values") from None
    return metrics


def _parse_overrides(lines: list[str]) -> tuple[dict[str, str], dict[str, Any]]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    text: dict[str, str] = {}
    values: dict[str, Any] = {}
    for line in lines:
        key_part, _, value_text = line.partition("=")
        try:
            (o,) = OverridesParser.create().parse_overrides([line])
            key, value = o.key_or_group, o.value()
        except Exception:  # an override Hydra wrote is valid; stay readable regardless
            key, value = key_part.lstrip("+~"), value_text
        if key.split("/")[0].split(".")[0] == "hydra":
            continue
        text[key] = value_text
        values[key] = value
    return text, values


def summarize(folder: Path, objective: str | None = None, ascending: bool = False) -> Summary:
    """Read a sweep folder (or any folder of runs) into a :class:`Summary`, best first."""
    if not folder.is_dir():
        what = " is a file, not a folder" if folder.exists() else ": no such folder"
        raise SummaryError(
            f"{folder}{what}; give a sweep folder such as experiments/multirun/<date>/<time>"
        )
    if objective is not None and not known_metric_name(objective):
        raise SummaryError(
            f"--objective {objective}: not a metrics.json name; valid: {metric_names_help()}"
        )
    found = find_members(folder)
    if folder in found or folder.resolve() in found:  # its tables would land in the run's folder
        raise SummaryError(
            f"{folder} is one run's folder, not a folder of runs; give the sweep folder (or any"
            f" folder holding runs, e.g. {folder.parent})"
        )
    members = [read_member(folder, f) for f in found]
    members, left_out = _without_evaluations_of_runs(folder, members)
    if not members:
        raise SummaryError(
            f"{folder}: no runs found (expected member folders with .hydra/ and metrics.json, "
            "as `robustai train -m ...` writes them)"
        )
    name = objective or _common(m.objectives[0] for m in members if m.objectives)
    name = name or DEFAULT_OBJECTIVE
    # the direction of the sweep(s) that optimized this objective: a folder may hold sweeps
    # with other objectives and directions (minimize privacy/epsilon beside a grid sweep)
    own = [m.directions[0] for m in members if m.directions and m.objectives[:1] == [name]]
    directions = _common(own)
    if ascending:
        maximize = False
    elif objective is None and directions is not None:  # the Optuna sweep's own direction
        maximize = directions != "minimize"
    else:  # lower is better for privacy/epsilon and times, higher for accuracies
        maximize = better_direction(name) != "minimize"
    for m in members:
        m.objective = metric_value(m.metrics, name) if m.metrics else None
    done = [m for m in members if m.metrics]
    if objective is not None and done and all(m.objective is None for m in done):
        have = sorted(
            {
                f"{group}/{key}"
                for m in done
                for group in ("robust_acc", "worst_case_acc")
                for key in (m.metrics.get(group) or {})
            }
        )
        raise SummaryError(
            f"--objective {objective}: no member reports it; the members report "
            f"{', '.join(have) or 'no robust accuracies'}, and clean_acc"
            + (", privacy/epsilon" if objective != "privacy/epsilon" and _any_epsilon(done) else "")
        )
    sign = -1.0 if maximize else 1.0
    members.sort(
        key=lambda m: (
            m.objective is None or math.isnan(m.objective),
            sign * m.objective if m.objective is not None and not math.isnan(m.objective) else 0,
        )
    )
    summary = Summary(
        folder=folder,
        members=members,
        objective=name,
        maximize=maximize,
        columns=_varying_keys(members),
        metric_columns=_metric_columns(members),
    )
    _mark_pareto(members)
    summary.optuna = _read_optuna(folder, members)
    summary.notes = (
        left_out
        + _eps_notes(members, name)
        + _privacy_notes(members)
        + _mixed_notes(members, name, objective)
    )
    for note in summary.notes:  # the command prints them; INFO keeps Python's fallback
        log.info("%s", note)  # handler from printing each a second time, on stderr
    return summary


def _without_evaluations_of_runs(
    folder: Path, members: list[Member]
) -> tuple[list[Member], list[str]]:
    """An experiment's folder holds its training runs and, under ``evaluate/``, evaluations of
    their models: ranked together, a re-measurement (20 samples, clean accuracy 1.0) came out
    best, and the run it measured dropped off the Pareto front. Beside training runs the
    evaluations are left out, with a note saying how to summarize them."""
    evaluations = [m for m in members if m.command == "evaluate"]
    if not evaluations or len(evaluations) == len(members):
        return members, []
    shared = Path(os.path.commonpath([m.folder.parent for m in evaluations]))  # no one run
    n = len(evaluations)
    what = "1 evaluation" if n == 1 else f"{n} evaluations"
    again = "it measures a model" if n == 1 else "they measure the models"
    return [m for m in members if m.command != "evaluate"], [
        f"{what} (robustai evaluate) below {folder} left out: {again} of these runs again;"
        f" summarize {'it' if n == 1 else 'them'} on {'its' if n == 1 else 'their'} own:"
        f" robustai summarize {shared if shared != folder else folder / 'evaluate'}"
    ]


def _mixed_notes(members: list[Member], name: str, given: str | None) -> list[str]:
    """Sweeps with other objectives, or one objective optimized in both directions, in one
    folder: a single ranking serves only some of them."""
    notes = []
    others = sorted({m.objectives[0] for m in members if m.objectives} - {name})
    if others and given is None:
        notes.append(
            f"the folder holds sweeps with other objectives ({', '.join(others)}); ranked by"
            f" {name}: give --objective to rank by another, or summarize each sweep's folder"
        )
    ways = {m.directions[0] for m in members if m.directions and m.objectives[:1] == [name]}
    if len(ways) > 1 and given is None:
        notes.append(
            f"sweeps here optimized {name} in both directions; ranked with the first found"
            " (--ascending ranks lowest first)"
        )
    return notes


def _eps_notes(members: list[Member], name: str) -> list[str]:
    """``worst_case_acc`` (and the Pareto plot) read each member's first eps; a sweep over
    ``attack.eps`` evaluates each member at its own, and a ranking across eps compares threat
    models, not models."""
    firsts = {
        next(iter(m.metrics["worst_case_acc"]))
        for m in members
        if isinstance(m.metrics.get("worst_case_acc"), dict) and m.metrics["worst_case_acc"]
    }
    if len(firsts) < 2:
        return []
    shown = ", ".join(sorted(firsts, key=float))
    if name == "worst_case_acc":  # the ranking reads the first eps too
        return [
            f"members were evaluated at different eps ({shown}): worst_case_acc and the Pareto "
            "front compare each at its own, so they mix threat models; give every member the "
            "same evaluator.eps=[...] and rank by --objective worst_case_acc/<eps>"
        ]
    # Another objective ranks as it should, but the Pareto front (pareto.png) still plots each
    # member's worst case at its own first eps.
    return [
        f"members were evaluated at different eps ({shown}): the Pareto front compares each "
        "member's worst_case_acc at its own, so it mixes threat models; give every member the "
        "same evaluator.eps=[...]"
    ]


def _privacy_notes(members: list[Member]) -> list[str]:
    """An epsilon is a bound at one delta for one notion of neighbouring data sets (DP-SGD's
    adding or removing a record, the input mechanisms' replacing one): epsilons recorded at
    other deltas or adjacencies rank and colour side by side, but do not compare."""
    records = [
        m.metrics["privacy"]
        for m in members
        if isinstance(m.metrics.get("privacy"), dict)
        and _is_number(m.metrics["privacy"].get("epsilon"))
    ]
    deltas = {float(r["delta"]) for r in records if _is_number(r.get("delta"))}
    adjacencies = {str(r["adjacency"]) for r in records if r.get("adjacency")}
    notes = []
    if len(deltas) > 1:
        shown = ", ".join(f"{d:g}" for d in sorted(deltas))
        notes.append(
            f"members report privacy/epsilon at different delta ({shown}): their epsilons are "
            "not comparable, and neither are a ranking or the Pareto plot's colours by them; "
            "compare epsilons at one privacy/delta"
        )
    if len(adjacencies) > 1:
        shown = "; ".join(sorted(adjacencies))
        notes.append(
            f"members report privacy/epsilon for different adjacency ({shown}): their "
            "epsilons bound different changes to the training data and are not comparable"
        )
    return notes


def _any_epsilon(members: list[Member]) -> bool:
    return any(metric_value(m.metrics, "privacy/epsilon") is not None for m in members)


def _common(values: Any) -> str | None:
    seen = list(dict.fromkeys(values))
    return seen[0] if seen else None


def _varying_keys(members: list[Member]) -> list[str]:
    keys = list(dict.fromkeys(k for m in members for k in m.overrides))
    varying = [k for k in keys if len({m.overrides.get(k) for m in members}) > 1]
    return varying or keys


def _metric_columns(members: list[Member]) -> list[str]:
    names = list(dict.fromkeys(n for m in members for n in m.flat))
    ordered = ["clean_acc"] if "clean_acc" in names else []
    for prefix in ("robust_acc/", "worst_case_acc/"):
        ordered += [n for n in names if n.startswith(prefix)]
    if "privacy/epsilon" in names:  # an epsilon means nothing without the delta it holds at
        ordered += [n for n in ("privacy/epsilon", "privacy/delta") if n in names]
    return ordered


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats in both coordinates (both maximized)."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any(
            (a >= x and b >= y) and (a > x or b > y) for j, (a, b) in enumerate(points) if j != i
        )
        if not dominated:
            front.append(i)
    return front


def _mark_pareto(members: list[Member]) -> None:
    done = [m for m in members if m.status == OK and m.robust is not None]
    pts = [(float(m.metrics["clean_acc"]), float(m.robust)) for m in done]  # type: ignore[arg-type]
    for i in pareto_front(pts):
        done[i].pareto = True


def _read_optuna(folder: Path, members: list[Member]) -> dict[str, Any] | None:
    """The Optuna sweeper's result file, with the member(s) it refers to."""

    path = folder / OPTUNA_RESULTS
    if not path.is_file():
        return None
    try:
        raw = _load(path, dict)
    except _Unreadable as e:
        log.warning("%s; the Optuna result is left out", e)
        return None
    try:
        return _optuna_result(path, raw, members)
    except (TypeError, ValueError, KeyError, AttributeError):
        log.warning("%s does not hold what Optuna's sweeper writes; it is left out", path.name)
        return None


def _optuna_result(path: Path, raw: dict[str, Any], members: list[Member]) -> dict[str, Any]:
    result: dict[str, Any] = {"file": path}
    if "best_params" in raw:
        params, value = dict(raw["best_params"]), raw.get("best_value")
        matches = [m for m in members if _same_params(m, params)]
        exact = [m for m in matches if _close(m.objective, value)]
        best = (exact or matches or [None])[0]
        if best is not None:
            best.optuna_best = True
        result.update(best_params=params, best_value=value, best=best)
    elif "solutions" in raw:
        sols = []
        for sol in raw["solutions"]:
            params = dict(sol["params"])
            match = next((m for m in members if _same_params(m, params)), None)
            if match is not None:
                match.optuna_best = True
            sols.append({"params": params, "values": sol["values"], "member": match})
        result["solutions"] = sols
    return result


def _same_params(member: Member, params: dict[str, Any]) -> bool:
    for key, want in params.items():
        if key not in member.values:
            return False
        got = member.values[key]
        if isinstance(want, int | float) and isinstance(got, int | float):
            if not math.isclose(float(got), float(want), rel_tol=1e-9, abs_tol=1e-12):
                return False
        elif str(got) != str(want):
            return False
    return True


def _close(a: float | None, b: Any) -> bool:
    return a is not None and isinstance(b, int | float) and math.isclose(a, float(b))


# ----------------------------------------------------------------------------- output


def table_rows(summary: Summary, precise: bool) -> tuple[list[str], list[list[str]]]:
    """Header and rows: full precision for CSV, rounded for people."""
    header = ["member", *summary.columns, f"objective ({summary.objective})"]
    header += [*summary.metric_columns, "seconds", "status"]
    rows = []
    for m in summary.members:
        flat = m.flat
        row = [m.name + (" *" if m.optuna_best and not precise else "")]
        row += [m.overrides.get(k, "") for k in summary.columns]
        row.append(_fmt_metric(summary.objective, m.objective, precise))
        row += [_fmt_metric(c, flat.get(c), precise) for c in summary.metric_columns]
        # the run's or evaluation's wall time (a report.json written before it had only its
        # attack suite's eval_seconds)
        seconds = flat.get("wall_seconds", flat.get("eval_seconds"))
        row.append(_fmt(seconds, precise, digits=1))
        row.append(m.status)
        rows.append(row)
    return header, rows


def _fmt(value: float | None, precise: bool, digits: int = 4) -> str:
    if value is None:
        return ""
    return repr(float(value)) if precise else f"{value:.{digits}f}"


def _fmt_metric(name: str, value: float | None, precise: bool) -> str:
    # a delta such as 1e-05 is all zeros at four decimals; at 3 significant digits it is rounded
    # up, as the privacy statement rounds it, so that it never reads smaller than it was proved
    if name == "privacy/delta" and value is not None and not precise:
        from robustai.privacy.statement import rounded_up

        return rounded_up(float(value))
    if name == "privacy/epsilon" and value is not None and not precise:
        return _epsilon_up(float(value))
    return _fmt(value, precise)


def _epsilon_up(value: float) -> str:
    """An epsilon at four decimals, rounded up: rounded to nearest, 2.99404 read 2.9940, more
    privacy than was proved."""
    text = f"{value:.4f}"
    if not math.isfinite(value) or float(text) >= value:
        return text
    return f"{math.ceil(value * 1e4) / 1e4:.4f}"


def write_csv(summary: Summary, path: Path) -> None:
    header, rows = table_rows(summary, precise=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*header, "pareto", "error", "folder"])
        for m, row in zip(summary.members, rows, strict=True):
            w.writerow([*row, str(m.pareto).lower(), m.error, str(m.folder)])


def markdown(summary: Summary, plot: Path | None) -> str:
    header, rows = table_rows(summary, precise=False)
    counts = {s: sum(m.status == s for m in summary.members) for s in ("ok", "failed")}
    other = len(summary.members) - counts["ok"] - counts["failed"]
    lines = [
        f"# Sweep summary: {summary.folder}",
        "",
        f"{len(summary.members)} members: {counts['ok']} ok, {counts['failed']} failed"
        + (f", {other} incomplete" if other else "")
        + f". Sorted by {summary.objective} "
        + ("(higher is better)." if summary.maximize else "(lower is better)."),
        "",
    ]
    lines += [f"- {line}" for line in headline(summary)]
    lines += [
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(" --- " for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    if failed := failures(summary):
        lines += ["", "Failures:", ""] + [f"- {line}" for line in failed]
    if plot is not None:
        lines += ["", f"![Pareto front: robust vs clean accuracy]({plot.name})"]
    return "\n".join(lines) + "\n"


def failures(summary: Summary) -> list[str]:
    """``member: why`` for each failed member that says why (its status.json, a broken file)."""
    return [f"{m.name}: {m.error}" for m in summary.members if m.status == FAILED and m.error]


def headline(summary: Summary) -> list[str]:
    """The best member, and what an Optuna sweep reported."""
    out = []
    best = summary.best
    if best is not None:
        out.append(
            f"best member: {best.name} ({_describe(best, summary.columns)}) "
            f"{summary.objective} = {_fmt_metric(summary.objective, best.objective, False)}"
        )
    opt = summary.optuna
    if opt and "best_params" in opt:
        m = opt["best"]
        params = ", ".join(f"{k}={v}" for k, v in opt["best_params"].items())
        # No match: a stored study's best trial may come from an earlier sweep's folder.
        where = f"member {m.name}" if m is not None else "an earlier sweep's (no member matches)"
        out.append(f"Optuna best trial: {where} ({params}) value = {opt['best_value']}")
    elif opt and "solutions" in opt:
        names = [s["member"].name for s in opt["solutions"] if s["member"] is not None]
        out.append(f"Optuna Pareto-optimal trials: members {', '.join(names) or 'none matched'}")
    front = [m.name for m in summary.members if m.pareto]
    if front:
        out.append(f"Pareto front (clean vs worst-case robust accuracy): {', '.join(front)}")
    out += [f"note: {n}" for n in summary.notes]
    return out


def _describe(m: Member, keys: list[str]) -> str:
    return ", ".join(f"{k}={m.overrides[k]}" for k in keys if k in m.overrides) or "no overrides"


def plot_pareto(summary: Summary, path: Path) -> Path | None:
    """Robust against clean accuracy per finished member; the Pareto front joined by a line."""
    fig = pareto_figure(summary)
    if fig is None:
        log.warning("no finished member has a robust accuracy (worst_case_acc): no Pareto plot")
        return None
    import matplotlib.pyplot as plt

    fig.savefig(path)
    plt.close(fig)
    return path


def pareto_figure(summary: Summary) -> Any:
    """The figure :func:`plot_pareto` saves; None when no finished member has a robust
    accuracy."""
    done = [m for m in summary.members if m.status == OK and m.robust is not None]
    if not done:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [float(m.metrics["clean_acc"]) for m in done]
    ys = [float(m.robust) for m in done]  # type: ignore[arg-type]
    eps = [metric_value(m.metrics, "privacy/epsilon") for m in done]
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    if any(e is not None for e in eps):
        have = [i for i, e in enumerate(eps) if e is not None]
        sc = ax.scatter(
            [xs[i] for i in have],
            [ys[i] for i in have],
            c=[eps[i] for i in have],
            cmap="viridis",
            s=40,
            zorder=3,
        )
        fig.colorbar(sc, ax=ax, label="privacy epsilon (training data)")
        rest = [i for i, e in enumerate(eps) if e is None]
        if rest:
            ax.scatter(
                [xs[i] for i in rest],
                [ys[i] for i in rest],
                facecolors="none",
                edgecolors="grey",
                s=40,
                label="no privacy accounting",
                zorder=3,
            )
            ax.legend(loc="best", fontsize=8)
    else:
        ax.scatter(xs, ys, color="tab:blue", s=40, zorder=3)
    front = sorted((x, y) for m, x, y in zip(done, xs, ys, strict=True) if m.pareto)
    if front:
        # markers too: a front of one member (it dominates the rest) is a point, no line
        xs_f, ys_f = zip(*front, strict=True)
        ax.plot(xs_f, ys_f, color="tab:red", lw=1.2, marker="o", ms=8, mfc="none", zorder=4)
    for m, x, y in zip(done, xs, ys, strict=True):
        ax.annotate(m.name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    keys = {k for m in done for k in m.flat if k.startswith("worst_case_acc/")}
    at = f" at eps={sorted(keys)[0].split('/', 1)[1]}" if len(keys) == 1 else " (first eps)"
    ax.set_xlabel("clean accuracy")
    ax.set_ylabel(f"worst-case robust accuracy{at}")
    ax.set_title(f"{summary.folder.name}: Pareto front (red)")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def write_all(summary: Summary, plot: bool = True) -> dict[str, Path]:
    folder = summary.folder
    out = {"csv": folder / CSV_FILE, "markdown": folder / MARKDOWN_FILE}
    png = plot_pareto(summary, folder / PLOT_FILE) if plot else None
    if png is not None:
        out["plot"] = png
    write_csv(summary, out["csv"])
    out["markdown"].write_text(markdown(summary, png))
    return out


# ----------------------------------------------------------------------------- CLI


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        fail("summarize", message)


def main(argv: Sequence[str]) -> int:
    parser = _Parser(
        prog="robustai summarize",
        description="Compare a sweep's members: a table (printed, summary.csv, summary.md) "
        "sorted by the objective, and a Pareto plot of robust vs clean accuracy (pareto.png).",
    )
    parser.add_argument(
        "folder", type=Path, help="a sweep folder, e.g. experiments/multirun/<date>/<time>"
    )
    parser.add_argument(
        "--objective",
        help="metric to sort by (default: the sweep's optimized_metric), e.g. clean_acc, "
        "robust_acc/pgd20@0.1, privacy/epsilon",
    )
    parser.add_argument("--ascending", action="store_true", help="lower is better")
    parser.add_argument("--no-plot", action="store_true", help="skip pareto.png")
    args = parser.parse_args(list(argv))
    try:
        summary = summarize(args.folder, args.objective, args.ascending)
    except UserError as e:
        fail("summarize", str(e))
    unwritten = None
    try:
        written = write_all(summary, plot=not args.no_plot)
    except OSError as e:  # a read-only or shared sweep folder: the table is printed all the same
        written, unwritten = {}, e
    header, rows = table_rows(summary, precise=False)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    out = [
        "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
        *("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows),
        "",
        *(f"failed {line}" for line in failures(summary)),
        *headline(summary),
        *(["written: " + ", ".join(str(p) for p in written.values())] if written else []),
    ]
    sys.stdout.write("\n".join(out) + "\n")
    if unwritten is not None:
        fail(
            "summarize",
            f"cannot write the summary files into {summary.folder} ({unwritten}); the table"
            " above is the summary",
        )
    return 0
