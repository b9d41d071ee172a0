"""``robustai train``: the Hydra app over ``configs/train.yaml``."""

from __future__ import annotations

import logging
import math
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from robustai.cli.common import EXIT_BAD_INPUT, EXIT_FAILURE, fail
from robustai.errors import ConfigError, RunFailure, RunInterrupted, UserError

if TYPE_CHECKING:
    from robustai.cli.preflight import SweepPlan

log = logging.getLogger(__name__)


def objective_names(value: Any) -> list[str]:
    """``optimized_metric`` as a list of metric names (one per objective)."""
    from robustai.tracking.hparams import known_metric_name, metric_names_help

    names = [value] if isinstance(value, str) else value
    if (
        not isinstance(names, list | tuple)
        or not names
        or not all(isinstance(n, str) for n in names)
    ):
        raise ConfigError(
            f"optimized_metric={value}: give a metric name or a list of them, "
            "e.g. optimized_metric=worst_case_acc or optimized_metric=[clean_acc,worst_case_acc]"
        )
    for name in names:
        if not known_metric_name(name):
            raise ConfigError(
                f"optimized_metric={name}: not a metrics.json name; valid: {metric_names_help()}"
            )
    return list(names)


def _check_launcher_processes(cfg: Any, train_cfg: Any) -> None:
    """trainer=ddp if and only if several processes train one run: started by torchrun, or by a
    launcher with several tasks per run (submitit's tasks_per_node). Checked before Hydra makes
    a run folder; :func:`robustai.cli.pipeline.start_distributed` checks the same at run time."""
    from omegaconf import OmegaConf

    from robustai.cli.pipeline import start_distributed_error
    from robustai.distributed import launcher_env

    tasks = OmegaConf.select(cfg, "hydra.launcher.tasks_per_node", default=None)
    nodes = OmegaConf.select(cfg, "hydra.launcher.nodes", default=None) or 1
    ddp = train_cfg.trainer.distributed == "ddp"
    if isinstance(tasks, int) and tasks * nodes > 1:
        if "MULTIRUN" not in str(OmegaConf.select(cfg, "hydra.mode", default="")):
            # a single run starts no launcher: it would run here, alone, as one process
            raise ConfigError(
                f"hydra.launcher starts {tasks * nodes} processes per run, but only for a sweep:"
                " add -m (with no sweep in the overrides, -m runs the config once)"
            )
        if not ddp:
            raise ConfigError(
                f"hydra.launcher starts {tasks * nodes} processes per run (tasks_per_node="
                f"{tasks}, nodes={nodes}); add trainer=ddp so that they train one model together"
            )
        _check_global_batch(train_cfg, tasks * nodes)
        return  # the launcher's tasks will rendezvous
    env = launcher_env()
    message = start_distributed_error(ddp, env["world_size"] if env else None)
    if message:
        raise ConfigError(message)
    if ddp and env:
        _check_global_batch(train_cfg, env["world_size"])


#: searches tuned for one recipe: the data sets their ranges are meant for, and the experiments
#: that set the rest of the recipe (optimizer, eps)
_SEARCH_DATA = {
    "mnist_optuna": (("mnist", "idx"), "experiment=mnist_idx_fgsm_rs (or mnist_fgsm_rs)")
}


def _check_search_data(cfg: Any, train_cfg: Any) -> None:
    """hparams_search=mnist_optuna alone searched Adam's learning rates and alpha for eps 0.3
    on the default experiment (digits, SGD, eps 0.1), without a word."""
    from omegaconf import OmegaConf

    search = OmegaConf.select(cfg, "hydra.runtime.choices.hparams_search", default=None)
    if search not in _SEARCH_DATA:
        return
    data, experiments = _SEARCH_DATA[search]
    if train_cfg.data.name not in data:
        raise ConfigError(
            f"hparams_search={search} tunes the MNIST recipe (Adam, eps 0.3), and this run"
            f" trains on data={train_cfg.data.name}; add {experiments}"
        )


def _check_backend(cfg: Any, train_cfg: Any) -> None:
    """trainer.backend=nccl connects GPUs: on this machine's CPU it is refused before Hydra
    makes a run folder (not for a Slurm launcher, whose jobs run on the cluster's machines)."""
    from omegaconf import OmegaConf

    from robustai.cli.pipeline import resolve_device
    from robustai.distributed import DistributedSetupError, resolve_backend

    target = str(OmegaConf.select(cfg, "hydra.launcher._target_", default="") or "")
    trainer = train_cfg.trainer
    if trainer.distributed != "ddp" or target.endswith("SlurmLauncher"):
        return
    try:
        resolve_backend(trainer.backend, resolve_device(trainer.device).type)
    except DistributedSetupError as e:
        raise ConfigError(str(e)) from e


def _check_global_batch(train_cfg: Any, processes: int) -> None:
    """Under DDP ``data.batch_size`` is the global batch, cut into one part per process: each
    process needs at least one image (DP-SGD samples its batches on each rank instead)."""
    batch = train_cfg.data.batch_size
    if train_cfg.privacy.name != "dpsgd" and batch < processes:
        raise ConfigError(
            f"data.batch_size={batch} is smaller than the {processes} processes: each needs at"
            " least one image per step (data.batch_size is the global batch, split over them);"
            f" use data.batch_size={processes} or more"
        )


def check_train_config(cfg: Any) -> Any:
    """Pre-flight check: the schema, then that every ``optimized_metric`` name will exist."""
    from robustai.config import to_train_config

    train_cfg = to_train_config(cfg)  # before torch loads: a typo is refused in about a second

    from robustai.cli.pipeline import make_attack
    from robustai.cli.preflight import check_device, is_optuna_search
    from robustai.evaluation import metric_key

    _check_launcher_processes(cfg, train_cfg)
    check_device(cfg, train_cfg.trainer.device, "trainer.device")
    _check_backend(cfg, train_cfg)
    _check_search_data(cfg, train_cfg)
    ev = train_cfg.evaluator
    tables = {
        "robust_acc": [
            metric_key(make_attack(a, eps, prefix=f"evaluator.attacks[{i}]"))
            for eps in ev.eps
            for i, a in enumerate(ev.attacks)
        ],
        "worst_case_acc": [f"{eps:g}" for eps in ev.eps],
    }
    names = objective_names(train_cfg.optimized_metric)
    for name in names:
        table, _, key = name.partition("/")
        if key and table in tables and key not in tables[table]:
            valid = ", ".join(f"{table}/{k}" for k in tables[table]) or "none (no attacks)"
            raise ConfigError(
                f"optimized_metric={name}: this run reports no such value; valid: {valid}"
            )
        if table == "privacy":
            _check_privacy_metric(name, key, train_cfg.privacy)
    if is_optuna_search(cfg) and not ev.attacks:
        # worst_case_acc is then NaN in every trial: a search that cannot rank anything
        for name in names:
            if name.partition("/")[0] in ("robust_acc", "worst_case_acc"):
                raise ConfigError(
                    f"optimized_metric={name}: evaluator.attacks is empty, so every trial"
                    " reports NaN for it; give the evaluator attacks, or optimize clean_acc"
                )
    _check_search_direction(cfg, names)
    _check_dp_model(train_cfg)
    _check_resume_config(cfg, train_cfg)
    return train_cfg


def _check_resume_config(cfg: Any, train_cfg: Any) -> None:
    """A resume made with another config is refused before Hydra writes into the run folder,
    which would otherwise record the refused config in place of the one the run was made with.
    The checkpoint's own JSON says which config that was; the run reads it again in full."""

    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from robustai.cli.pipeline import check_resume_config
    from robustai.training.checkpoint import CHECKPOINT_DIR, list_checkpoints

    folder = train_cfg.trainer.resume
    single = "MULTIRUN" not in str(OmegaConf.select(cfg, "hydra.mode", default=""))
    try:
        run_dir = OmegaConf.select(cfg, "hydra.run.dir", default=None) if single else None
    except OmegaConfBaseException:
        run_dir = None
    if folder and run_dir:
        _check_resume_target(str(folder), str(run_dir))
    if not folder:
        folder = run_dir  # a run started again in its own folder continues from its checkpoints
    if not folder:
        return
    run = Path(str(folder)).expanduser()
    saved = _saved_config(run)
    if saved is None and not train_cfg.trainer.resume:
        finished = _finished_files(run)
        if finished:  # nothing to continue: the run would train again and overwrite them
            raise ConfigError(
                f"hydra.run.dir={folder} holds a finished run or evaluation"
                f" ({', '.join(finished)}) and no checkpoint to continue from; give another"
                " hydra.run.dir"
            )
    if not saved:
        return  # an unreadable checkpoint is reported, with its reason, when the run reads it
    check_resume_config(train_cfg, list_checkpoints(run / CHECKPOINT_DIR)[0].path, saved)
    if not run_dir or Path(str(run_dir)).expanduser().resolve() == run.resolve():
        _check_evaluated_with(run, train_cfg, f"hydra.run.dir={folder}")


def _check_resume_target(resume: str, run_dir: str) -> None:
    """``trainer.resume=A hydra.run.dir=B`` continues A's run in B: B must not be another run,
    whose weights, metrics and checkpoints the resumed one would write over and mix with."""
    from robustai.training.checkpoint import CHECKPOINT_DIR, list_checkpoints

    source, target = Path(resume).expanduser(), Path(run_dir).expanduser()
    if not target.is_dir() or target.resolve() == source.resolve():
        return
    held = _finished_files(target)
    if list_checkpoints(target / CHECKPOINT_DIR):
        held.append(f"{CHECKPOINT_DIR}/")
    if held:
        raise ConfigError(
            f"hydra.run.dir={run_dir} holds another run ({', '.join(held)}), which resuming"
            f" {resume} there would write over; leave hydra.run.dir out to continue in {resume},"
            " or give a new folder"
        )


def _check_sweep_folder(cdir: Path, argv: Sequence[str]) -> None:
    """A sweep into a folder that holds an earlier sweep's runs is refused before Hydra writes
    there. Each member resumes the checkpoint in its folder (so the same sweep run again goes
    on); a job of another config there fails, after Hydra has put the refused config into that
    run's .hydra/ record and a failure record over its metrics."""
    from omegaconf import OmegaConf, open_dict, read_write
    from omegaconf.errors import OmegaConfBaseException

    from robustai.cli.pipeline import config_changes, resume_fingerprint
    from robustai.cli.preflight import sweep_plan
    from robustai.config import to_train_config

    plan = sweep_plan(cdir, "train", argv)
    if plan is None:
        return
    _check_member_folders(plan)
    cfg = plan.cfg
    try:
        sweep_dir = Path(str(OmegaConf.select(cfg, "hydra.sweep.dir", throw_on_missing=True)))
    except OmegaConfBaseException:
        return
    if not sweep_dir.expanduser().is_dir():
        return
    count = len(plan.jobs) if plan.jobs is not None else cfg.hydra.sweeper.get("n_trials") or 0
    for num in range(int(count)):
        job = cfg.copy()
        with read_write(job.hydra.job), open_dict(job.hydra.job):
            job.hydra.job.num = num
        try:
            folder = sweep_dir.expanduser() / str(OmegaConf.select(job, "hydra.sweep.subdir"))
        except OmegaConfBaseException:
            return  # a subdir named after what only the job knows (override_dirname, say)
        saved = _saved_config(folder)
        if saved is None:
            finished = _finished_files(folder)
            if finished:  # nothing to continue: the member would train over it
                raise ConfigError(
                    f"hydra.sweep.dir={sweep_dir} holds a finished run or evaluation without a"
                    f" checkpoint (member {folder.name}: {', '.join(finished)}); give a new"
                    " hydra.sweep.dir"
                )
            earlier = _recorded_overrides(folder)
            if earlier is None:
                continue  # nothing there yet
            # a member that failed or was stopped before its first checkpoint: only the same
            # sweep may try it again (its failure record would be replaced); compared by the
            # config it recorded, or where that does not load, by its overrides
            if plan.jobs is not None:
                recorded = _recorded_config(folder)
                if recorded is not None:
                    now = to_train_config(plan.compose(num))
                    diffs = config_changes(now, resume_fingerprint(recorded))
                    if diffs is None:
                        continue
                    raise ConfigError(
                        f"hydra.sweep.dir={sweep_dir} holds the runs of another sweep: member "
                        f"{folder.name} (failed or stopped before its first checkpoint) was made"
                        f" with a different config ({diffs}); give a new hydra.sweep.dir, or"
                        " that sweep's overrides to continue it"
                    )
                elif _trained_by(earlier) == _trained_by(plan.jobs[num]):
                    continue
        if plan.jobs is None:
            raise ConfigError(
                f"hydra.sweep.dir={sweep_dir} holds the runs of an earlier sweep (member "
                f"{folder.name}): this search's trials would land in their folders; give a new "
                "hydra.sweep.dir (a study kept in hydra.sweeper.storage goes on from there)"
            )
        if saved is None:  # .hydra/ of a member without a checkpoint, of another sweep
            raise ConfigError(
                f"hydra.sweep.dir={sweep_dir} holds the runs of another sweep: member "
                f"{folder.name} (failed or stopped before its first checkpoint) was made with "
                "other overrides; give a new hydra.sweep.dir, or that sweep's overrides to "
                "continue it"
            )
        if not saved:
            continue  # an unreadable checkpoint: its member says why when it reads it
        job_cfg = to_train_config(plan.compose(num))
        diffs = config_changes(job_cfg, saved)
        if diffs:
            raise ConfigError(
                f"hydra.sweep.dir={sweep_dir} holds the runs of another sweep: member "
                f"{folder.name} was made with a different config ({diffs}); give a new "
                "hydra.sweep.dir, or that sweep's overrides to continue it"
            )
        where = f"hydra.sweep.dir={sweep_dir} (member {folder.name})"
        _check_evaluated_with(folder, job_cfg, where)


def _check_member_folders(plan: SweepPlan) -> None:
    """Two grid members whose hydra.sweep.subdir resolves to one folder would share a run: the
    second rewrites the first's .hydra/ record, then resumes it (or trains over it) or marks it
    failed. Refused before the sweep starts. A subdir built only from the values Hydra numbers
    each job with (the default ${hydra.job.num}, ${hydra.job.override_dirname}) is resolved for
    every member; one that reads anything else (the config, or Hydra's other values such as
    ${hydra.runtime.choices.attack}, which differ by member) is resolved in each member's own
    composed config, for the first members only (as the pre-flight checks them)."""
    import copy
    import os
    import re

    from hydra._internal.config_loader_impl import get_overrides_dirname
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf, open_dict, read_write
    from omegaconf.errors import OmegaConfBaseException

    from robustai.cli.preflight import MAX_COMBINATIONS
    from robustai.security.redact import redact_override

    if plan.jobs is None or len(plan.jobs) < 2:
        return  # Optuna numbers its trials as it goes: the default subdir keeps them apart
    cfg = plan.cfg
    try:
        raw = str(OmegaConf.to_container(cfg.hydra.sweep, resolve=False).get("subdir"))
        naming = cfg.hydra.job.config.override_dirname
        exclude, item_sep, kv_sep = list(naming.exclude_keys), naming.item_sep, naming.kv_sep
    except OmegaConfBaseException:
        return
    if _reads_the_time(cfg, raw):
        # A folder named after the time (${now:...}, here or in a value it reads) is named when
        # its member starts, and members start at different times: resolved now, all would get
        # the same name. It cannot be checked in advance, so it is not checked (nor refused).
        return
    refs = re.findall(r"\$\{([^}]*)\}", raw)
    composed = any(_as_key(r) not in _NUMBERED_BY_HYDRA for r in refs)
    parser = OverridesParser.create()
    seen: dict[str, int] = {}
    jobs = plan.jobs[:MAX_COMBINATIONS] if composed else plan.jobs
    for num, overrides in enumerate(jobs):
        try:
            job = plan.compose(num) if composed else copy.deepcopy(cfg)
            with read_write(job.hydra.job), open_dict(job.hydra.job):
                job.hydra.job.num = num
                job.hydra.job.id = num
                if not composed:
                    parsed = parser.parse_overrides(overrides)
                    task = [o for o in parsed if not o.is_hydra_override()]
                    job.hydra.job.override_dirname = get_overrides_dirname(
                        task, exclude, item_sep, kv_sep
                    )
            HydraConfig.instance().set_config(job)  # ${hydra:...} reads it, as in the job
            subdir = str(OmegaConf.select(job, "hydra.sweep.subdir", throw_on_missing=True))
        except (OmegaConfBaseException, ConfigError):
            return  # not known before the member runs: Hydra says so then
        folder = os.path.normpath(os.path.join("<sweep>", subdir))
        first = seen.setdefault(folder, num)
        if first != num:
            ours, theirs = plan.jobs[first], overrides
            a = " ".join(redact_override(o) for o in ours if o not in theirs)
            b = " ".join(redact_override(o) for o in theirs if o not in ours)
            if not (a or b):  # one value listed twice (attack.eps=0.1,0.10): the same member
                given = [o for o in theirs if o.split("=", 1)[0].lstrip("+~") in plan.swept]
                same = " ".join(redact_override(o) for o in given) or "the same overrides"
                raise ConfigError(
                    f"hydra.sweep.subdir={raw} puts sweep members {first} and {num} (both"
                    f" {same}) in the same folder ({subdir or '.'}): the sweep lists one value"
                    " twice (0.1 and 0.10 are one value); list each value once"
                )
            raise ConfigError(
                f"hydra.sweep.subdir={raw} puts sweep members {first} ({a or 'no override'}) and"
                f" {num} ({b or 'no override'}) in the same folder ({subdir or '.'}); make"
                " hydra.sweep.subdir distinct for each member, e.g. keep the default"
                " ${hydra.job.num}"
            )


# The values Hydra gives each job of a sweep itself, which a subdir may read without a compose.
_NUMBERED_BY_HYDRA = {"hydra.job.num", "hydra.job.id", "hydra.job.override_dirname"}


def _as_key(ref: str) -> str:
    """The key an interpolation reads: ``${hydra:job.num}`` reads ``hydra.job.num``."""
    ref = ref.strip()
    return f"hydra.{ref[len('hydra:') :]}" if ref.startswith("hydra:") else ref


def _reads_the_time(cfg: Any, text: str, depth: int = 0) -> bool:
    """Whether ``text`` resolves through ``${now:...}``: directly, or through the unresolved
    value of a key it interpolates (followed a few levels deep)."""
    import re

    from omegaconf import OmegaConf

    if re.search(r"\$\{\s*now\s*:", text):
        return True
    if depth > 8:
        return False
    for ref in re.findall(r"\$\{\s*([\w.:\[\]-]+)\s*\}", text):
        key = _as_key(ref)
        parent, _, leaf = key.rpartition(".")
        try:
            node = OmegaConf.select(cfg, parent) if parent else cfg
            value = OmegaConf.to_container(node, resolve=False)[leaf]  # type: ignore[index]
        except Exception:  # not a plain key (a resolver's), or not there: nothing to follow
            continue
        if isinstance(value, str) and _reads_the_time(cfg, value, depth + 1):
            return True
    return False


def _recorded_overrides(folder: Path) -> list[str] | None:
    """The overrides a run folder's ``.hydra/overrides.yaml`` records (None without one; [] where
    it cannot be read)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    path = folder / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return None
    try:
        loaded = OmegaConf.to_container(OmegaConf.load(path))
    except (OSError, ValueError, OmegaConfBaseException):
        return []
    return [str(o) for o in loaded] if isinstance(loaded, list) else []


def _trained_by(overrides: Sequence[str]) -> list[str]:
    """The overrides among ``overrides`` that can change what a run trains: not Hydra's own, and
    not the keys a resume may change (see ``pipeline._RESUME_FREE``); sorted, as a sweep lists
    them in its own order."""
    from robustai.cli.pipeline import resume_free

    kept = []
    for line in overrides:
        key = line.lstrip("+~").split("=", 1)[0]
        if key.split("/")[0].split(".")[0] == "hydra" or resume_free(key):  # hydra/launcher=..
            continue
        kept.append(line.lstrip("+"))
    return sorted(kept)


def _recorded_config(folder: Path) -> Any:
    """The config a run folder's ``.hydra/config.yaml`` records, read as a run reads its own
    (fractions parsed, defaults filled in), or None where it does not load (another version's
    keys, a redacted value)."""
    from omegaconf import OmegaConf, open_dict
    from omegaconf.errors import OmegaConfBaseException

    from robustai.config import to_train_config

    try:
        cfg = OmegaConf.load(folder / ".hydra" / "config.yaml")
        with open_dict(cfg):
            cfg.name = "recorded"  # Hydra's ${hydra:...} values resolve only inside a job
        return to_train_config(cfg)
    except (OSError, ValueError, TypeError, AttributeError, OmegaConfBaseException, UserError):
        return None


def _check_evaluated_with(folder: Path, train_cfg: Any, where: str) -> None:
    """A finished run started again in its folder resumes its last checkpoint and evaluates
    again, replacing ``metrics.json`` and the report: the same evaluation (one interrupted, say)
    is let through, another one refused, as it would replace the run's results with others.
    The settings are compared as the run reads them (``1/10`` is 0.1, defaults filled in)."""
    from omegaconf import OmegaConf

    if not (folder / "metrics.json").is_file():
        return
    recorded = _recorded_config(folder)
    if recorded is None:
        return  # no readable record to compare with
    before = OmegaConf.to_container(OmegaConf.structured(recorded.evaluator))
    now = OmegaConf.to_container(OmegaConf.structured(train_cfg.evaluator))
    if not isinstance(before, dict) or not isinstance(now, dict) or before == now:
        return
    changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
    keys = ", ".join(f"evaluator.{k}" for k in changed[:4])
    raise ConfigError(
        f"{where} holds a finished run evaluated with other settings ({keys} differ), whose"
        f" metrics.json and report this run would replace; evaluate it again with robustai"
        f" evaluate checkpoint={folder} (into a folder of its own), or give a new folder"
    )


def _finished_files(folder: Path) -> list[str]:
    """What a finished run (its weights, its metrics) or a ``robustai evaluate`` (its report)
    left in ``folder``, if anything: a run there would write over them."""
    names = ("weights.safetensors", "metrics.json", "report.json")
    return [n for n in names if (folder / n).is_file()]


def _saved_config(folder: Path) -> dict[str, Any] | None:
    """The config the newest checkpoint in run ``folder`` recorded ({} where it cannot be read);
    None without a checkpoint."""
    import json

    from robustai.training.checkpoint import CHECKPOINT_DIR, list_checkpoints

    found = list_checkpoints(folder / CHECKPOINT_DIR)
    if not found:
        return None
    try:
        saved = json.loads(found[0].path.read_text())["info"]["config"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return saved if isinstance(saved, dict) else {}


# The input shape of each data set, for checks that build the model before the data is loaded.
_USUAL_SHAPES = {"digits": (1, 8, 8), "cifar10": (3, 32, 32)}


def _check_dp_model(train_cfg: Any) -> None:
    """DP-SGD refuses a model with BatchNorm (unless privacy.fix_model): say so before a sweep
    trains the members before such a one. Which layers a model has does not depend on the data,
    so it is built on the meta device (no memory, no data) with the data set's usual shape; a
    model that does not build so is left to the run."""
    if train_cfg.privacy.name != "dpsgd" or train_cfg.privacy.fix_model:
        return
    import torch

    from robustai.cli.pipeline import privacy_errors
    from robustai.models import build_model
    from robustai.privacy import check_dp_compatible

    data = train_cfg.data
    shape = tuple(data.input_shape) if data.name == "synthetic" else None
    shape = shape or _USUAL_SHAPES.get(data.name, (1, 28, 28))
    try:
        with torch.device("meta"):
            model = build_model(train_cfg.model.name, shape, 10, **train_cfg.model.params)
    except Exception:  # e.g. a shape the guess got wrong: the run reports what is wrong
        return
    with privacy_errors(train_cfg.privacy.name):
        check_dp_compatible(model)


# The numbers of metrics.json's ``privacy`` table, by the privacy option that writes one.
_PRIVACY_KEYS = {
    "dpsgd": (
        "epsilon",
        "delta",
        "noise_multiplier",
        "max_grad_norm",
        "sample_rate",
        "expected_batch_size",
        "steps",
        "steps_per_epoch",
        "num_samples",
        "target_epsilon",
        "max_epsilon",
    ),
    "mechanism": ("epsilon", "delta", "sensitivity", "clip_bound", "noise_scale", "num_samples"),
}


def _check_privacy_metric(name: str, key: str, privacy: Any) -> None:
    """``privacy/<key>`` exists only where the run gives the training data a DP guarantee:
    DP-SGD, or a mechanism that releases the training images (``where=input``)."""
    kind = privacy.name
    if kind in ("laplace", "gaussian"):
        if privacy.where != "input":
            raise ConfigError(
                f"optimized_metric={name}: privacy={kind} with where={privacy.where} protects"
                " queries, not the training data, so metrics.json has no privacy table; use"
                " privacy.where=input, or privacy=dpsgd"
            )
        kind = "mechanism"
    if kind not in _PRIVACY_KEYS:
        raise ConfigError(
            f"optimized_metric={name}: privacy={privacy.name} gives no privacy guarantee, so"
            " this run reports no privacy values; add privacy=dpsgd (or privacy=input_laplace,"
            " privacy=input_gaussian)"
        )
    if key not in _PRIVACY_KEYS[kind]:
        valid = ", ".join(f"privacy/{k}" for k in _PRIVACY_KEYS[kind])
        raise ConfigError(
            f"optimized_metric={name}: this run reports no such value; valid: {valid}"
        )


def _check_search_direction(cfg: Any, names: list[str]) -> None:
    """An Optuna search must move each objective the way it improves. The sweeper's default
    direction is minimize, which for an accuracy would crown the least robust trial."""
    from omegaconf import OmegaConf

    from robustai.cli.preflight import is_optuna_search
    from robustai.tracking.hparams import better_direction

    raw = OmegaConf.select(cfg, "hydra.sweeper.direction", default=None)
    if raw is None or not is_optuna_search(cfg):
        return
    given = [raw] if isinstance(raw, str) or not OmegaConf.is_list(raw) else list(raw)
    given = [str(getattr(d, "name", d)) for d in given]  # the sweeper's Direction enum, or text
    for d in given:  # Optuna takes these two words only, in lower case
        if d not in ("minimize", "maximize"):
            raise ConfigError(
                f"hydra.sweeper.direction={d}: not a direction; give minimize or maximize (lower"
                " case; one per objective, e.g. [maximize,minimize])"
            )
    if len(given) != len(names):
        raise ConfigError(
            f"optimized_metric has {len(names)} objective(s) ({', '.join(names)}) but "
            f"hydra.sweeper.direction has {len(given)}; give one direction per objective"
        )
    wanted = [better_direction(n) or d for n, d in zip(names, given, strict=True)]
    if wanted != given:
        name, way = next((n, d) for n, d, w in zip(names, given, wanted, strict=True) if d != w)
        fix = wanted[0] if len(wanted) == 1 else f"[{','.join(wanted)}]"
        extreme = "lowest" if way == "minimize" else "highest"
        raise ConfigError(
            f"hydra.sweeper.direction={way} would pick the trial with the {extreme} {name};"
            f" add hydra.sweeper.direction={fix}"
        )


def _objective(metrics: dict[str, Any], names: list[str]) -> float | list[float] | None:
    """What the sweeper optimizes: the ``optimized_metric`` values (None if one is missing)."""
    from robustai.tracking.hparams import metric_value

    values = [metric_value(metrics, name) for name in names]
    missing = [n for n, v in zip(names, values, strict=True) if v is None]
    if missing:
        log.warning("optimized_metric %s: this run reports no value", ", ".join(missing))
        return None
    undefined = [n for n, v in zip(names, values, strict=True) if math.isnan(v)]
    if undefined:  # a sweeper must not rank it (Optuna records the trial as failed)
        log.warning("optimized_metric %s: NaN in this run, so no objective", ", ".join(undefined))
        return None
    return values[0] if len(values) == 1 else values  # type: ignore[return-value]


def _threads_from_launcher(train_cfg: Any, hc: Any) -> None:
    """Under a submitit launcher, ``trainer.threads=null`` means the CPUs it reserved per task,
    so members that share a machine do not each start one torch thread per core."""
    from omegaconf import OmegaConf

    cpus = OmegaConf.select(hc, "launcher.cpus_per_task", default=None)
    if train_cfg.trainer.threads is None and isinstance(cpus, int) and cpus > 0:
        train_cfg.trainer.threads = cpus
        log.info("torch threads: %d (hydra.launcher.cpus_per_task)", cpus)


# Overrides that say where and how a run goes, not what it trains or measures: a run resumed
# with trainer.resume=... got a column in TensorBoard's HParams table its twin lacked.
_NOT_HPARAMS = (
    "trainer.resume",
    "trainer.progress",
    "trainer.threads",
    "trainer.checkpoint_every",
    "trainer.keep_checkpoints",
    "paths",
    "logger",
)


def _swept_hparams(hc: Any, train_cfg: Any) -> dict[str, Any]:
    """The member's own overrides (group choices and keys) with their final values."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    choices = hc.runtime.choices
    node = OmegaConf.structured(train_cfg)
    parser = OverridesParser.create()
    out: dict[str, Any] = {}
    for line in hc.overrides.task:
        try:
            (o,) = parser.parse_overrides([line])
            key, delete = o.key_or_group, o.is_delete()
        except Exception:  # Hydra's record of a value it resolved (data.root=~/x) may not parse
            key, delete = str(line).split("=", 1)[0].lstrip("+"), str(line).startswith("~")
        if delete or key.split("/")[0].split(".")[0] == "hydra" or key.startswith(_NOT_HPARAMS):
            continue
        if key in choices:
            out[key] = choices[key]
            continue
        value = OmegaConf.select(node, key, default=None)
        if OmegaConf.is_config(value):
            value = str(OmegaConf.to_container(value))
        out[key] = value
    return out


def _task(cfg: Any) -> float | list[float] | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from robustai.cli.sweep_signals import member as sweep_member
    from robustai.cli.sweep_status import clear_failure
    from robustai.distributed import process_rank

    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    secondary = process_rank() > 0
    if secondary:
        _quiet_secondary_rank()
    else:
        clear_failure(out_dir)
    with sweep_member():  # stays until the interrupted member has said what to resume
        return _member(cfg, hc, out_dir, multirun, secondary)


def _member(
    cfg: Any, hc: Any, out_dir: Path, multirun: bool, secondary: bool
) -> float | list[float] | None:
    from robustai.cli.pipeline import run_train
    from robustai.cli.sweep_status import record_failure
    from robustai.config import to_train_config

    try:
        train_cfg = to_train_config(cfg)
        if multirun:  # a single run launches nothing, whatever launcher the config names
            _threads_from_launcher(train_cfg, hc)
        metrics = run_train(train_cfg, out_dir, hparams=_swept_hparams(hc, train_cfg))
        if secondary:
            return None  # rank 0 reports the run
    except RunInterrupted as e:
        _to_run_log(logging.WARNING, str(e))
        fail("train", str(e), code=e.exit_code)
    except (UserError, RunFailure) as e:
        if multirun:
            # One bad member must not end the sweep: record it and go on.
            log.error("run failed: %s", e)
            record_failure(out_dir, e)
            return None
        _to_run_log(logging.ERROR, f"run failed: {e}")
        fail("train", str(e), code=EXIT_BAD_INPUT if isinstance(e, UserError) else EXIT_FAILURE)
    except Exception as e:
        if not multirun:
            raise
        # A crash (a bug, out of memory, ...) in one member: keep its traceback, go on.
        log.exception("run failed")
        record_failure(out_dir, e)
        return None
    return _objective(metrics, objective_names(train_cfg.optimized_metric))


def _to_run_log(level: int, message: str) -> None:
    """``message`` into the run's own log file, not the console (where the command's one line
    says it): a single run's train.log ended without saying why it stopped, as a sweep
    member's does. Only a log file the run has written to already: one the run never opened
    (a folder another run works in, refused) is left as it is."""
    from robustai.security.redact import scrub_message, secret_env_values

    text = scrub_message(message, secret_env_values())
    record = logging.LogRecord(log.name, level, __file__, 0, text, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and handler.stream is not None:
            handler.handle(record)


def _quiet_secondary_rank() -> None:
    """Ranks > 0 of a DDP job: warnings and errors on the console only. Rank 0 writes the run's
    log file; a job whose ranks share one run folder (submitit) would interleave theirs."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(logging.WARNING)


def _torchrun_args(argv: list[str]) -> tuple[list[str], Path | None]:
    """Under torchrun: refuse a sweep, and give ranks > 0 a scratch run folder to discard (rank 0
    alone writes the real one, whose name it resolves, e.g. from the time, and shares)."""
    from robustai.distributed import torchrun_env

    env = torchrun_env()
    if env is None or env["world_size"] <= 1:
        return argv, None
    if any(a in ("-m", "--multirun") for a in argv):
        raise ConfigError(
            "a sweep (-m) cannot run under torchrun: torchrun starts the processes of one run; "
            "sweep with a submitit launcher instead (hydra/launcher=slurm_ddp)"
        )
    if env["rank"] == 0:
        return argv, None
    scratch = Path(tempfile.mkdtemp(prefix=f"robustai-rank{env['rank']}-"))
    args = [a for a in argv if not a.startswith("hydra.run.dir=")]
    return [*args, f"hydra.run.dir={scratch}"], scratch


def _resume_in_place(argv: Sequence[str]) -> list[str]:
    """``trainer.resume=DIR`` continues in DIR itself, unless hydra.run.dir says otherwise."""
    args = list(argv)
    resume = [a.split("=", 1)[1] for a in args if a.startswith("trainer.resume=")]
    if resume and Path(resume[-1]).expanduser().is_file():
        # a checkpoint's file (or weights): the run folder holding it is what resumes
        given = Path(resume[-1])
        run = given.parent.parent if given.parent.name == "checkpoints" else given.parent
        raise ConfigError(
            f"trainer.resume={resume[-1]} is a file; give the run folder to continue"
            f" (trainer.resume={run}), which resumes from its newest checkpoint"
        )
    if resume and resume[-1] not in ("", "null") and not any(
        a.startswith("hydra.run.dir=") for a in args
    ):
        args.append(f"hydra.run.dir={resume[-1]}")
    return args


def _run_app(app: Any) -> None:
    """Run the Hydra app. A sweeper that raises once its members are done (Optuna's, when every
    trial failed: "No trials are completed yet") would end in Hydra's traceback; the failed
    members are reported as any failed sweep's are, in one line (exit 1)."""
    import os

    from hydra._internal.utils import run_and_report

    from robustai.cli.sweep_status import SweepStatus, tally

    previous = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises instead of printing and exiting
    try:
        app()
        return
    except BrokenPipeError:  # `robustai train --help | head`: main() handles it
        raise
    except Exception as e:
        error = e
    finally:
        if previous is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = previous
    started = SweepStatus.started
    if started is not None and SweepStatus.last is None:
        sweep = tally(started, SweepStatus.before)
        if sweep.failed:
            fail(
                "train",
                f"{len(sweep.failed)} of {sweep.members} sweep members failed "
                f"({', '.join(sweep.failed)}) and the sweeper stopped ({_first_line(error)}); "
                f"see status.json and train.log in each, or: robustai summarize {started}",
                code=EXIT_FAILURE,
            )
        unranked = _without_objective(started, sweep.finished)
        if unranked:
            fail(
                "train",
                f"{len(unranked)} of {sweep.members} sweep members reported no value (or NaN)"
                f" for optimized_metric ({', '.join(unranked)}) and the sweeper stopped"
                f" ({_first_line(error)}); see train.log in each, or: robustai summarize"
                f" {started}",
                code=EXIT_FAILURE,
            )

    def again() -> None:
        raise error

    run_and_report(again)  # anything else: reported as Hydra would have


def _without_objective(sweep_dir: Path, finished: list[str]) -> list[str]:
    """Finished members whose metrics.json has no number for their ``optimized_metric``: the
    trials a sweeper (Optuna's) counts as failed although the member's own run went well."""
    from robustai.cli.summarize import read_member
    from robustai.tracking.hparams import metric_value

    out = []
    for name in finished:
        member = read_member(sweep_dir, sweep_dir / name)
        values = [metric_value(member.metrics, o) for o in member.objectives]
        if any(v is None or math.isnan(v) for v in values):
            out.append(name)
    return out


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def main(argv: Sequence[str]) -> int:
    import hydra

    from robustai.cli.common import config_dir
    from robustai.cli.optuna_trials import fail_unfinished as fail_unfinished_trials
    from robustai.cli.optuna_trials import release as release_unfinished_trials
    from robustai.cli.preflight import config_dir_as_searchpath, preflight
    from robustai.cli.sweep_signals import release as release_sweep_signals
    from robustai.cli.sweep_status import SweepStatus
    from robustai.security import signing_key_from_env

    try:
        cdir = config_dir()
        argv = config_dir_as_searchpath(argv, cdir)
        in_place = _resume_in_place(argv)  # checked with the run folder the run will use
        preflight(cdir, "train", in_place, check_train_config)
        signing_key_from_env()  # an unusable key fails here, before Hydra makes the run folder
        _check_sweep_folder(cdir, argv)
        args, scratch = _torchrun_args(in_place)
    except UserError as e:
        fail("train", str(e))
    app = hydra.main(config_path=str(cdir), config_name="train", version_base="1.3")(_task)
    sys.argv = ["robustai train", *args]
    SweepStatus.last = SweepStatus.started = None
    SweepStatus.before = {}
    try:
        _run_app(app)
    except BaseException:  # e.g. an interrupted member: its search's trials must not stay RUNNING
        fail_unfinished_trials()
        raise
    finally:
        release_unfinished_trials()  # a sweep that raised never reached on_multirun_end
        release_sweep_signals()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    sweep = SweepStatus.last
    if sweep is not None and (sweep.failed or sweep.incomplete):
        bad = sweep.failed + sweep.incomplete
        fail(
            "train",
            f"{len(bad)} of {sweep.members} sweep members failed ({', '.join(bad)}); "
            f"see status.json and train.log in each, or: robustai summarize {sweep.sweep_dir}",
            code=EXIT_FAILURE,
        )
    return 0
