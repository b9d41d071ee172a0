"""``robustai evaluate``: the Hydra app over ``configs/evaluate.yaml``, and the config glue of the
full evaluation (suite, curve, sanity checks, report) that ``robustai train`` runs at its end.

    robustai evaluate checkpoint=experiments/<name>/<date>/<time>
    robustai evaluate checkpoint=<run> evaluator=quick evaluator.eps=[0.05,0.1] \
        evaluator.strict=true

The model is rebuilt from ``weights.safetensors`` + ``meta.json`` (never a pickle). Bad input
(config, a missing or unreadable checkpoint, a checkpoint that does not fit the data) ends with one
line and exit status 2; a failed sanity check with ``evaluator.strict=true`` with exit status 1.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from robustai.cli.common import EXIT_BAD_INPUT, EXIT_FAILURE, fail
from robustai.errors import CheckpointError, ConfigError, DataError, RunFailure, UserError

log = logging.getLogger(__name__)

CURVE_TAG = "eval/robustness_curve"
SANITY_SCORE = {"pass": 1.0, "warn": 0.5, "fail": 0.0}


# ---------------------------------------------------------------------------- shared glue
def attack_factories(evaluator: Any) -> list[Any]:
    """``eps -> Attack`` for every ``evaluator.attacks`` entry (bad arguments: ConfigError)."""
    from robustai.cli.pipeline import make_attack

    return [
        (lambda eps, a=a, i=i: make_attack(a, eps, prefix=f"evaluator.attacks[{i}]"))
        for i, a in enumerate(evaluator.attacks)
    ]


def run_evaluation(
    evaluator: Any,
    model: Any,
    x: Any,
    y: Any,
    *,
    eps: Sequence[float],
    num_classes: int,
    batch_size: int,
) -> Any:
    """The evaluation an ``EvaluatorConfig`` asks for, on ``(x, y)`` (``evaluator.samples``
    applied): suite, per-sample worst case, curve, sanity checks, per class."""
    from robustai.cli.pipeline import check_attack_classes
    from robustai.evaluation import CurveSettings, SanitySettings, evaluate_model

    if evaluator.samples is not None:
        x, y = x[: evaluator.samples], y[: evaluator.samples]
    s = evaluator.sanity
    sanity = (
        SanitySettings(
            samples=s.samples,
            tolerance=s.tolerance,
            large_eps=s.large_eps,
            chance_margin=s.chance_margin,
            black_box_queries=s.black_box_queries,
        )
        if s.enabled
        else None
    )
    c = evaluator.curve
    curve = CurveSettings(eps=list(c.eps), samples=c.samples) if c.enabled else None
    factories = attack_factories(evaluator)
    check_attack_classes(
        [(f"evaluator.attacks[{i}]", make(eps[0])) for i, make in enumerate(factories)],
        num_classes,
    )
    return evaluate_model(
        model,
        x,
        y,
        attacks=factories,
        eps=list(eps),
        num_classes=num_classes,
        batch_size=batch_size,
        curve=curve,
        sanity=sanity,
        per_class=evaluator.per_class,
        keep_examples=evaluator.save_examples,
        early_stop=evaluator.early_stop,
        cuda_graphs=evaluator.cuda_graphs,
        eot_iter=evaluator.eot_iter,
        seed=evaluator.seed,
    )


def write_evaluation(
    out_dir: Path,
    evaluation: Any,
    x: Any,
    y: Any,
    *,
    title: str,
    context: dict[str, Any],
    save_examples: bool,
    tb: Any = None,
    step: int = 0,
) -> dict[str, Any]:
    """Write the curve PNG, the adversarial examples (if asked), report.json and report.md into
    ``out_dir``; log the curve and the checks to TensorBoard. Returns report.json's content."""
    from robustai.evaluation.curve import save_curve_png
    from robustai.evaluation.report import (
        CURVE_PNG,
        EXAMPLES,
        build_report,
        render_markdown,
        write_report,
    )
    from robustai.evaluation.report import (
        save_examples as save_examples_file,
    )

    curve_png = None
    image = None
    if evaluation.curve is not None:
        curve_title = f"{title} ({evaluation.curve.samples} samples)"
        image = save_curve_png(evaluation.curve, out_dir / CURVE_PNG, title=curve_title)
        curve_png = CURVE_PNG
    examples = None
    if save_examples:
        n = evaluation.result.samples
        save_examples_file(out_dir / EXAMPLES, x[:n], y[:n], evaluation)
        examples = EXAMPLES
    report = build_report(
        evaluation, title=title, context=context, curve_png=curve_png, examples=examples
    )
    write_report(out_dir, report)
    if tb is not None:
        if image is not None:
            tb.log_image(CURVE_TAG, image, step)
        if evaluation.sanity is not None:
            for check in evaluation.sanity.checks:
                if check.status in SANITY_SCORE:
                    tb.log_scalar(f"eval/sanity/{check.name}", SANITY_SCORE[check.status], step)
        tb.log_text("eval/report", render_markdown(report), step)
    return report


def evaluation_metrics(evaluation: Any) -> dict[str, Any]:
    """What metrics.json gains from the full evaluation (new keys only)."""
    from robustai.evaluation.report import REPORT_MD

    return {
        "sanity": None if evaluation.sanity is None else evaluation.sanity.to_dict(),
        "per_class": evaluation.per_class,
        "curve": None if evaluation.curve is None else evaluation.curve.to_dict(),
        "report": REPORT_MD,
    }


def check_strict(evaluation: Any, strict: bool) -> None:
    """With ``strict``, a failed sanity check ends the command (exit status 1)."""
    if strict and evaluation.sanity is not None and not evaluation.sanity.passed:
        raise RunFailure(evaluation.sanity.failure_message())


# ---------------------------------------------------------------------------- the command
def _checkpoint_files(path: str) -> tuple[Path, dict[str, Any]]:
    from robustai.models.artifact import read_meta

    return read_meta(Path(path).expanduser())


def _check_output_folder(cfg: Any) -> None:
    """An evaluation writes its own .hydra/ record and report into its folder: pointed at a
    finished run or evaluation (hydra.run.dir=<a training run>), it would replace theirs."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if "MULTIRUN" in str(OmegaConf.select(cfg, "hydra.mode", default="")):
        return
    try:
        folder = OmegaConf.select(cfg, "hydra.run.dir", default=None)
    except OmegaConfBaseException:
        return  # an unresolvable folder is reported by Hydra itself
    if not folder:
        return
    from robustai.training.checkpoint import CHECKPOINT_DIR, list_checkpoints

    target = Path(str(folder)).expanduser()
    held = [n for n in ("weights.safetensors", "metrics.json", "report.json")
            if (target / n).is_file()]
    if list_checkpoints(target / CHECKPOINT_DIR):  # an interrupted training run, to resume
        held.append(f"{CHECKPOINT_DIR}/")
    found = list_checkpoints(target)  # a run's checkpoints folder itself
    if found:
        held.append(found[0].path.name)
    if held:
        raise ConfigError(
            f"hydra.run.dir={folder} holds a run or evaluation ({', '.join(held)}), whose"
            " records an evaluation there would replace or mix with; give another hydra.run.dir"
        )


def check_evaluate_config(cfg: Any) -> Any:
    """Pre-flight: the schema, the device, every attack's arguments, and a readable
    checkpoint."""
    from robustai.cli.preflight import check_device
    from robustai.config import to_evaluate_config
    from robustai.models import load_model

    ev_cfg = to_evaluate_config(cfg)
    check_device(cfg, ev_cfg.device, "device")
    _check_output_folder(cfg)
    # sha256, signature, safetensors, shapes (the query mechanism, which logs what it
    # protects, is checked with the privacy record and attached when the model is loaded)
    _, meta = load_model(Path(ev_cfg.checkpoint).expanduser(), query_mechanism=False)
    check_recorded_data(ev_cfg.data, meta)
    _check_privacy_record(meta, ev_cfg.checkpoint)
    eps_list = ev_cfg.evaluator.eps or [_threat_eps(meta, ev_cfg.data.eps)]
    factories = attack_factories(ev_cfg.evaluator)
    threat = meta.get("threat_model")
    norm = (threat or {}).get("norm", "linf")
    norms = {ac.norm for ac in ev_cfg.evaluator.attacks}
    if not ev_cfg.evaluator.eps and "l2" in norms and _threat_eps(meta, 0.0) == 0.0:
        # no threat model: the eps would be data.eps, an L-inf budget, as an L2 radius
        raise ConfigError(
            f"the checkpoint records no threat model (trained without an attack), so the eps"
            f" would be data.eps={eps_list[0]:g}, the data set's L-inf budget, which the suite's"
            " L2 attacks would take as their radius; give evaluator.eps=[...] as L2 radii, e.g."
            " [0.5,1.0]"
        )
    if not ev_cfg.evaluator.eps and threat and norms and norm not in norms:
        # the checkpoint's eps is a radius in its own norm, not in the suite's
        suite = "standard_l2 (or quick_l2)" if norm == "l2" else "standard (or quick)"
        raise ConfigError(
            f"the checkpoint's threat model is {norm} at eps {eps_list[0]:g}, but every attack"
            f" of evaluator.attacks is {'/'.join(sorted(norms))}; choose evaluator={suite}, or"
            " give evaluator.eps=[...] for the suite's norm"
        )
    for make in factories:
        for eps in eps_list:
            try:
                make(eps)
            except ConfigError as e:
                if ev_cfg.evaluator.eps or "eps" not in str(e):
                    raise  # the hint is about eps; other errors stand alone
                raise ConfigError(
                    f"{e} (eps {eps:g} is the checkpoint's {norm} threat model; give "
                    "evaluator.eps=[...], or attacks in its norm)"
                ) from e
    from robustai.cli.pipeline import check_suite_keys

    check_suite_keys(ev_cfg.evaluator, eps_list)
    return ev_cfg


def _check_privacy_record(meta: dict[str, Any], checkpoint: str) -> None:
    """The report states what ``meta.json``'s privacy record guarantees; a record it cannot
    read (edited, damaged) is refused now, not after the whole evaluation."""
    from robustai.privacy.plans import query_mechanism_plan
    from robustai.privacy.statement import privacy_statement

    try:
        privacy_statement(meta.get("privacy"))
        query_mechanism_plan(meta.get("privacy"))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(
            f"checkpoint={checkpoint}: meta.json's privacy record is incomplete or damaged"
            f" ({type(e).__name__}: {e}); the file was edited, or written by another version"
        ) from e


def check_recorded_data(data: Any, meta: dict[str, Any]) -> None:
    """On the data set a model was trained on, its eval split must be the run's: a split
    setting given on the command line that differs from the recorded one (``meta.json``'s
    ``split``), or IDX files with other content than the run read (``data_files``), would put
    images the model was trained on into the eval split, and its accuracies would read high."""
    from robustai.data import SPLIT_SETTINGS

    if data.name != meta.get("data"):
        _check_other_set(data, meta)
        return  # another data set: evaluate warns that it is one
    split = meta.get("split")
    for key in SPLIT_SETTINGS.get(data.name, ()):
        if not isinstance(split, dict) or key not in split:
            continue
        given = getattr(data, key)
        given = list(given) if isinstance(given, list | tuple) else given
        if given != split[key]:
            raise ConfigError(
                f"data.{key}={_shown(given)}: the model was trained with data.{key}="
                f"{_shown(split[key])} (meta.json), and another split's eval images include"
                f" images it was trained on; leave data.{key} out"
            )
    files = meta.get("data_files")
    if data.name != "idx" or not isinstance(files, dict):
        return
    from robustai.data.idx import idx_sha256
    from robustai.data.registry import idx_paths

    paths = idx_paths(data.root, data.images, data.labels)
    for key, path in zip(("images", "labels"), paths, strict=True):
        recorded = files.get(key)
        if not isinstance(recorded, dict):
            continue
        if "sha256" not in recorded:  # a DP run records its files by path alone
            _check_path_only(key, path, recorded)
            continue
        try:
            found = idx_sha256(str(path))
        except DataError:
            continue  # a missing or unreadable file is the data loader's to report
        if found != recorded.get("sha256"):
            raise ConfigError(
                f"data.{key}={path} holds other content than the file the model was trained on"
                f" ({recorded.get('path')}, per meta.json); point data.root, or data.images and"
                " data.labels, at those files"
            )


def _check_path_only(key: str, path: Any, recorded: dict[str, Any]) -> None:
    """Without a content hash (see ``pipeline.recorded_files``) other content cannot be told
    from the run's: say so where the file is not the one the run read."""
    from robustai.data.idx import resolved_path

    try:
        same = str(resolved_path(str(path)).resolve()) == recorded.get("path")
    except OSError:
        same = False
    if not same:
        log.warning(
            "data.%s=%s: the model was trained on %s (meta.json records it by path alone, as for"
            " every run with a differential-privacy guarantee), so whether this file holds the"
            " same images cannot be checked; if it holds others, the eval split may include"
            " images the model was trained on",
            key, path, recorded.get("path"),
        )  # fmt: skip


def _check_other_set(data: Any, meta: dict[str, Any]) -> None:
    """A model trained on part of an IDX file (``data=idx``, e.g. MNIST's test images split
    into train and eval parts) and evaluated on a published set whose test split is that very
    file (``data=mnist``) is evaluated mostly on its own training images."""
    from robustai.data.idx import idx_sha256
    from robustai.data.torchvision_sets import test_images_file

    files = meta.get("data_files")
    recorded = files.get("images") if isinstance(files, dict) else None
    test_file = test_images_file(data.name, data.root)
    if meta.get("data") != "idx" or not isinstance(recorded, dict) or test_file is None:
        return
    try:
        found = idx_sha256(test_file) if "sha256" in recorded else None
    except DataError:
        return  # not there (yet): the loader reports it, or downloads the set
    same_path = str(Path(test_file).resolve()) == recorded.get("path")  # a DP run's record
    if found == recorded.get("sha256") or (found is None and same_path):
        raise ConfigError(
            f"data={data.name}: its test images ({test_file}) are the file the model was trained"
            f" on a part of (data=idx, {recorded.get('path')}, per meta.json), so they include"
            " its training images; leave data= out to evaluate on the run's own eval split"
        )


def _shown(value: Any) -> str:
    return json.dumps(value).replace(" ", "") if isinstance(value, list) else str(value)


def data_from_checkpoint(argv: Sequence[str]) -> list[str]:
    """Without a ``data=`` choice, evaluate on the data set the checkpoint was trained on
    (``meta.json``'s ``data``), with its config group's settings; ``data.*`` overrides (e.g.
    ``data.root`` of an IDX copy) then apply to that group.

    On that data set, the split settings the training run recorded (``meta.json``'s ``split``:
    ``data.split_seed``, ``data.holdout``, ...) apply unless given: with the group's defaults
    instead, the eval split of a run trained with another split would hold images it was
    trained on, and its accuracies would be too high. A sweep over checkpoints
    (``checkpoint=a,b``) gets them where every checkpoint records the same, and is refused
    where they differ: one data set and split for all would do exactly that to some."""
    args = list(argv)
    if {"--hydra-help", "--help", "-h"}.intersection(a.split("=", 1)[0] for a in args):
        return args  # help composes Hydra's own config alone, which takes no data= choice
    keys = {a.split("=", 1)[0].lstrip("+~"): a.split("=", 1)[-1] for a in args}
    given = [(i, a) for i, a in enumerate(args) if a.split("=", 1)[0].lstrip("+") == "checkpoint"]
    if len(given) != 1:
        return args
    at, paths = given[0][0] + 1, _checkpoint_paths(given[0][1])
    found = [_recorded_data(path, keys) for path in paths or []]
    recorded = [r for r in found if r is not None]
    if not paths or not found or len(recorded) < len(found):
        return args  # unreadable checkpoints: the pre-flight check reports them
    extras = [e for e, _ in recorded]
    differ = [
        (path, e) for path, (e, same) in zip(paths, recorded, strict=True) if same != recorded[0][1]
    ]
    if differ:
        shown = [(paths[0], extras[0]), differ[0]]
        which = "; ".join(f"{c}: {' '.join(e) or 'the default data'}" for c, e in shown)
        raise ConfigError(
            f"checkpoint=...: these runs were trained on different data or splits ({which}),"
            " so one eval split would hold another's training images; evaluate them one at a"
            " time, each on its own data and split"
        )
    # beside checkpoint=, among the overrides: after a trailing flag (-m, --cfg job) argparse
    # would take them for arguments it does not know
    return args[:at] + extras[0] + args[at:]


def name_from_checkpoint(argv: Sequence[str]) -> list[str]:
    """Without ``name=``, an evaluation lands in its model's experiment, as
    ``<experiment>/evaluate/<date>/<time>``: dashboard grants are per experiment (the first
    folder under ``paths.experiments_dir``), and in one shared ``evaluate`` experiment a viewer
    of any evaluation saw every model's (reports, adversarial images, privacy statement). A
    checkpoint outside that folder keeps ``name=evaluate``, as does a sweep over checkpoints
    (it lands under ``multirun``)."""
    args = list(argv)
    keys = {a.split("=", 1)[0].lstrip("+~"): a.split("=", 1)[-1] for a in args}
    if "name" in keys or "hydra.run.dir" in keys:
        return args
    given = [i for i, a in enumerate(args) if a.split("=", 1)[0].lstrip("+") == "checkpoint"]
    paths = _checkpoint_paths(args[given[0]]) if len(given) == 1 else None
    root = keys.get("paths.experiments_dir") or os.environ.get("ROBUSTAI_EXPERIMENTS_DIR")
    root = root or "experiments"
    if paths is None or len(paths) != 1 or "$" in root:
        return args
    try:
        top = Path(root).expanduser().resolve()
        inside = Path(paths[0]).expanduser().resolve().relative_to(top)
    except (OSError, RuntimeError, ValueError):  # elsewhere (or a path that cannot resolve)
        return args
    experiment = inside.parts[0] if len(inside.parts) > 1 else None
    if experiment is None or not re.fullmatch(r"[\w.+@%-]+", experiment):
        return args  # a name Hydra would need quoted: the default, as for a model elsewhere
    # beside checkpoint=, among the overrides: after a trailing flag (-m, --cfg job) argparse
    # would take it for an argument it does not know
    at = given[0] + 1
    return [*args[:at], f"name={experiment}/evaluate", *args[at:]]


def _checkpoint_paths(override: str) -> list[str] | None:
    """The checkpoint(s) a ``checkpoint=`` override names, as Hydra will read them: quoted or
    escaped (a path with a space or comma), with ``+``/``++``, or a sweep ``a,b``; None for a
    malformed one (Hydra's own check says why)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        (o,) = OverridesParser.create().parse_overrides([override])
        if o.is_sweep_override():  # quoted elements come back as QuotedString
            return [str(getattr(v, "text", v)) for v in o.sweep_iterator()]
        value = o.value()
        return [str(value)] if isinstance(value, str) and value else None
    except Exception:  # a malformed override: Hydra's own check says why
        return None


def _recorded_data(checkpoint: str, keys: dict[str, str]) -> tuple[list[str], list[str]] | None:
    """The ``data=`` choice and split overrides that evaluate ``checkpoint`` on its own
    training run's data and eval split (see :func:`data_from_checkpoint`), and the same with
    IDX files named by content, not path (the same files under two spellings of their path,
    or gzipped and not, are the same data); None if unreadable."""
    from robustai.data import SPLIT_SETTINGS, data_names

    try:
        _, meta = _checkpoint_files(checkpoint)
    except UserError:
        return None
    chosen = keys.get("data", keys.get("data.name"))
    name = meta.get("data")
    if not isinstance(name, str) or name not in data_names():
        return [], []
    out = []
    if chosen is None and name != "digits":  # digits: the default group
        out.append(f"data={name}")
    split = meta.get("split")
    if chosen in (None, name) and isinstance(split, dict):
        for key in SPLIT_SETTINGS.get(name, ()):
            if key in split and f"data.{key}" not in keys:
                if not _is_number_or_numbers(split[key]):  # a string would be interpolated
                    raise ConfigError(
                        f"checkpoint={checkpoint}: meta.json's split.{key} is not a number;"
                        " the file was edited or damaged"
                    )
                out.append(f"data.{key}={json.dumps(split[key])}")
    same = list(out)
    if name == "idx" and chosen in (None, name):
        files = _recorded_files(meta, keys)
        out += files
        if files:  # the paths exist and are recorded with their content
            record = meta["data_files"]
            same += [  # by content; by path where a DP run recorded no content
                f"data.{k}:sha256={record[k].get('sha256') or record[k].get('path')}"
                for k in ("images", "labels")
            ]
    return out, same


def _recorded_files(meta: dict[str, Any], keys: dict[str, str]) -> list[str]:
    """``data.images`` / ``data.labels`` at the IDX files the run read (``meta.json``'s
    ``data_files``), where they still are and no data path is given: the group's default folder
    is seldom where a run's files were (pre-flight then checks their content)."""
    from robustai.data.idx import resolved_path

    files = meta.get("data_files")
    if not isinstance(files, dict) or {"data.root", "data.images", "data.labels"} & set(keys):
        return []
    out = []
    for key in ("images", "labels"):
        record = files.get(key)
        path = record.get("path") if isinstance(record, dict) else None
        if not isinstance(path, str) or any(c in path for c in "$'\\\n"):
            return []  # no path to quote safely: the group's settings apply
        if not resolved_path(path).is_file():
            return []
        out.append(f"data.{key}='{path}'")
    return out


def _is_number_or_numbers(value: Any) -> bool:
    if isinstance(value, list):
        return all(_is_number_or_numbers(v) for v in value)
    return isinstance(value, int | float) and not isinstance(value, bool)


def _threat_eps(meta: dict[str, Any], default: float) -> float:
    tm = meta.get("threat_model")
    if isinstance(tm, dict) and isinstance(tm.get("eps"), int | float) and tm["eps"] > 0:
        return float(tm["eps"])
    return float(default)


def run_evaluate(cfg: Any, out_dir: Path) -> dict[str, Any]:
    """Load the checkpoint, evaluate it on the data's eval split and write the run folder;
    returns report.json's content."""
    import torch

    from robustai.cli.pipeline import make_data, resolve_device, seed_everything
    from robustai.config import TrainConfig
    from robustai.models import load_model
    from robustai.privacy.statement import privacy_statement
    from robustai.tracking import TensorBoardLogger, quiet_writer_thread_errors

    start = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    try:
        device = resolve_device(cfg.device)
    except ConfigError as e:
        raise ConfigError(str(e).replace("trainer.device", "device")) from e
    checkpoint = Path(cfg.checkpoint).expanduser()
    # with the noise mechanism the run trained and evaluated inside the model, if any
    # (privacy.where=features|output): part of the model it reported on
    model, meta = load_model(checkpoint, map_location=device)
    data = make_data(TrainConfig(data=cfg.data))
    model_shape = tuple(int(v) for v in meta["input_shape"])
    if model_shape != tuple(data.input_shape):
        raise CheckpointError(
            f"checkpoint {checkpoint} expects inputs of shape {model_shape} but data="
            f"{data.name} has shape {tuple(data.input_shape)}; choose the data set it was "
            f"trained on (meta.json says data={meta.get('data', 'unknown')})"
        )
    if int(meta["num_classes"]) != data.num_classes:
        # more classes than the data's: per-class rows for classes the data lacks, and labels
        # that mean something else to the model
        raise CheckpointError(
            f"checkpoint {checkpoint} predicts {meta['num_classes']} classes but data="
            f"{data.name} has {data.num_classes}; choose the data set it was trained on"
            f" (meta.json says data={meta.get('data', 'unknown')})"
        )
    if meta.get("data") not in (None, data.name):
        log.warning(
            "the model was trained on data=%s and is evaluated on data=%s", meta["data"], data.name
        )
    ev = cfg.evaluator
    eps = list(ev.eps) or [_threat_eps(meta, cfg.data.eps)]
    if not ev.eps and eps[0] != (meta.get("threat_model") or {}).get("eps"):
        # trained without an attack (or at eps 0): robust accuracy at 0 is clean accuracy
        log.info(
            "the checkpoint records no threat model with eps > 0; evaluating at data.eps=%g, the"
            " data set's usual one (give evaluator.eps=[...] for others)",
            eps[0],
        )
    x, y = data.eval.x.to(device), data.eval.y.to(device)
    log.info(
        "evaluating %s (%s) on %s: %d eval images, suite %s at eps %s, on %s",
        checkpoint,
        meta["model"]["name"],
        data.name,
        len(x) if ev.samples is None else min(ev.samples, len(x)),
        ev.name,
        ", ".join(f"{e:g}" for e in eps),
        device,
    )
    evaluation = run_evaluation(
        ev, model, x, y, eps=eps, num_classes=data.num_classes, batch_size=cfg.data.eval_batch_size
    )
    r = evaluation.result
    context = {
        "checkpoint": str(checkpoint),
        "model": f"{meta['model']['name']} {meta['model'].get('params') or ''}".strip(),
        "data": f"{data.name}, eval split",
        "suite": f"{ev.name}: " + ", ".join(dict.fromkeys(a.label for a in r.attacks.values())),
        "device": str(device),
        "eps": eps,
        "trained": {k: meta.get(k) for k in ("data", "attack", "threat_model") if k in meta},
        "weights_sha256": meta.get("weights_sha256"),
    }
    described = meta.get("privacy")
    if described:  # what the evaluated model guarantees, as its training report said
        context["privacy_statement"] = privacy_statement(described)
        if isinstance(described, dict) and described.get("dp") is not False:
            # the accounting as numbers too, under metrics.json's keys (summarize reads them)
            where = described.get("where")
            context["query_privacy" if where in ("features", "output") else "privacy"] = described
    tb = None
    if cfg.logger.tensorboard:
        quiet_writer_thread_errors()
        tb = TensorBoardLogger(out_dir)
        tb.log_eval(r.clean_acc, r.robust_acc, 0)
        for e, acc in r.worst_case.items():
            if not math.isnan(acc):  # no attack tested it (as a training run's log skips it)
                tb.log_scalar(f"eval/worst_case_acc/{e}", acc, 0)
        first = next(iter(r.worst_case.values()), math.nan)
        if not math.isnan(first):  # the first eps's, under one name, as a training run logs it
            tb.log_scalar("eval/worst_case_acc", first, 0)
        k = min(cfg.logger.image_grid, r.samples)
        if k > 0 and r.attacks:
            key, attack = next(reversed(r.attacks.items()))
            tb.log_adversarial_grid(
                x[:k], attack(model, x[:k], y[:k]), attack.eps, f"eval/adversarial/{key}", 0
            )
    # the command's time to its report, as a training run's wall_seconds (summarize's column);
    # eval_seconds is the attack suite's alone
    context["wall_seconds"] = time.perf_counter() - start
    report = write_evaluation(
        out_dir,
        evaluation,
        x,
        y,
        title=f"Robustness evaluation of {checkpoint.name or checkpoint}",
        context=context,
        save_examples=ev.save_examples,
        tb=tb,
    )
    if tb is not None:
        tb.close()
    if "privacy_statement" in context:  # report.md's Privacy section (render_markdown)
        log.info("privacy: %s", context["privacy_statement"])
    worst = ", ".join(f"{e}: {a:.3f}" for e, a in r.worst_case.items())
    log.info("clean acc %.3f | worst case %s", r.clean_acc, worst)
    if evaluation.sanity is not None:
        log.info("sanity checks: %s", evaluation.sanity.summary())
    log.info("report: %s (%.1fs)", out_dir / "report.md", time.perf_counter() - start)
    check_strict(evaluation, ev.strict)
    return report


def _check_sweep_folder(cdir: Path, argv: Sequence[str]) -> None:
    """An evaluation sweep writes each member's .hydra/ record and report into its folder: one
    into a folder holding training runs would replace their records (and a later ``summarize``
    would show a training run's metrics as an evaluation), and one into an earlier evaluation
    sweep of other overrides would mix the two. Refused before Hydra writes there; the same
    sweep run again (after a failure or an interruption) evaluates its members again."""
    from hydra.errors import HydraException
    from omegaconf import OmegaConf, open_dict, read_write
    from omegaconf.errors import OmegaConfBaseException

    from robustai.cli.preflight import sweep_plan
    from robustai.cli.train import _check_member_folders
    from robustai.training.checkpoint import CHECKPOINT_DIR, list_checkpoints

    plan = sweep_plan(cdir, "evaluate", argv)
    if plan is None:
        return
    _check_member_folders(plan)
    try:
        sweep_dir = Path(str(OmegaConf.select(plan.cfg, "hydra.sweep.dir", throw_on_missing=True)))
    except OmegaConfBaseException:
        return
    sweep_dir = sweep_dir.expanduser()
    if not sweep_dir.is_dir():
        return

    def training_run(folder: Path) -> None:
        held = [n for n in ("weights.safetensors", "metrics.json") if (folder / n).is_file()]
        if list_checkpoints(folder / CHECKPOINT_DIR):
            held.append(f"{CHECKPOINT_DIR}/")
        if held:
            raise ConfigError(
                f"hydra.sweep.dir={sweep_dir} holds training runs ({folder}: {', '.join(held)}),"
                " whose records the evaluations would replace; give a new hydra.sweep.dir"
            )

    if plan.jobs is None:  # members chosen as the sweep goes: any run folder there may be one
        for saved_file in sorted(sweep_dir.glob("**/.hydra/overrides.yaml")):
            training_run(saved_file.parent.parent)
        return
    for num, overrides in enumerate(plan.jobs):
        job = plan.cfg.copy()
        with read_write(job.hydra.job), open_dict(job.hydra.job):
            job.hydra.job.num = num
        try:
            folder = sweep_dir / str(OmegaConf.select(job, "hydra.sweep.subdir"))
        except OmegaConfBaseException:
            return  # a subdir named after what only the job knows
        training_run(folder)
        saved_file = folder / ".hydra" / "overrides.yaml"
        if not saved_file.is_file():
            continue
        try:
            saved = _override_values([str(o) for o in OmegaConf.load(saved_file)])
        except (OSError, OmegaConfBaseException, HydraException, TypeError):
            saved = None
        if saved != _override_values(overrides):
            raise ConfigError(
                f"hydra.sweep.dir={sweep_dir} holds the evaluations of another sweep: member "
                f"{folder.name} was made with other overrides ({saved_file}); give a new "
                "hydra.sweep.dir, or that sweep's overrides to run it again"
            )


def _override_values(lines: Sequence[str]) -> list[tuple[str, str]]:
    """A job's overrides as (key, value) pairs, Hydra's own left out: the job's
    ``.hydra/overrides.yaml`` writes them normalized (``False`` for ``false``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(lines))
    return sorted((o.key_or_group, repr(o.value())) for o in parsed if not o.is_hydra_override())


def _task(cfg: Any) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from robustai.cli.sweep_signals import member as sweep_member

    hc = HydraConfig.get()
    with sweep_member():  # stays until an interrupted member has said so
        _member(cfg, Path(hc.runtime.output_dir), hc.mode == RunMode.MULTIRUN)


def _member(cfg: Any, out_dir: Path, multirun: bool) -> None:
    from robustai.cli.sweep_status import REPORT_FILE, clear_failure, record_failure
    from robustai.config import to_evaluate_config
    from robustai.training.signals import Terminated, raise_on_sigterm

    try:
        if multirun:
            # A member run again (the same sweep repeated after a failure or an interruption;
            # the pre-flight refuses a folder of other runs): its earlier record and report are
            # stale, and would be read as this attempt's outcome if it stopped before its own.
            clear_failure(out_dir)
            (out_dir / REPORT_FILE).unlink(missing_ok=True)
        with raise_on_sigterm():
            run_evaluate(to_evaluate_config(cfg), out_dir)
    except (KeyboardInterrupt, Terminated) as e:  # a traceback (Ctrl-C), or silence (SIGTERM)
        signum = signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT
        fail(
            "evaluate",
            f"interrupted: the evaluation in {out_dir} did not finish; run the command again",
            code=128 + signum,
        )
    except (UserError, RunFailure) as e:
        if multirun:
            log.error("evaluation failed: %s", e)
            record_failure(out_dir, e)
            return
        fail("evaluate", str(e), code=EXIT_BAD_INPUT if isinstance(e, UserError) else EXIT_FAILURE)
    except Exception as e:
        if not multirun:
            raise
        # A crash (a bug, out of memory, ...) in one member: keep its traceback, go on.
        log.exception("evaluation failed")
        record_failure(out_dir, e)


def _check_one_process() -> None:
    """An evaluation runs in one process: started by torchrun (or a multi-task launcher), every
    process evaluated the whole model and wrote the same run folder's reports at once."""
    from robustai.distributed import launcher_env

    env = launcher_env()
    if env is not None and env["world_size"] > 1:
        raise ConfigError(
            f"robustai evaluate runs in one process, and this is one of {env['world_size']}"
            " (torchrun, or a launcher with several tasks per job): start it without torchrun"
            " (device=cuda:N picks a GPU)"
        )


def main(argv: Sequence[str]) -> int:
    import hydra

    from robustai.cli.common import config_dir
    from robustai.cli.preflight import config_dir_as_searchpath, preflight
    from robustai.cli.sweep_signals import release as release_sweep_signals
    from robustai.cli.sweep_status import SweepStatus

    try:
        _check_one_process()
        cdir = config_dir("evaluate")
        args = data_from_checkpoint(config_dir_as_searchpath(argv, cdir))
        args = name_from_checkpoint(args)
        preflight(cdir, "evaluate", args, check_evaluate_config)
        _check_sweep_folder(cdir, args)
    except UserError as e:
        fail("evaluate", str(e))
    app = hydra.main(config_path=str(cdir), config_name="evaluate", version_base="1.3")(_task)
    sys.argv = ["robustai evaluate", *args]
    SweepStatus.last = SweepStatus.started = None
    SweepStatus.before = {}
    try:
        app()
    finally:
        release_sweep_signals()  # a sweep that raised never reached on_multirun_end
    sweep = SweepStatus.last  # a sweep (-m): did any member fail, or end without a report?
    if sweep is not None and (sweep.failed or sweep.incomplete):
        bad = sweep.failed + sweep.incomplete
        fail(
            "evaluate",
            f"{len(bad)} of {sweep.members} sweep members failed ({', '.join(bad)}); see "
            f"status.json and evaluate.log in each, or: robustai summarize {sweep.sweep_dir}",
            code=EXIT_FAILURE,
        )
    return 0
