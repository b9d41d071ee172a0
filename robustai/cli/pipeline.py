"""From a validated :class:`TrainConfig` to a finished run folder.

This is the glue between config and library: it turns config dataclasses into plain keyword
arguments for the library's classes, runs training and evaluation, and writes the run's files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import random
import shlex
import signal
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import Tensor, nn

from robustai.attacks import Attack, build_attack
from robustai.attacks.registry import accepted_kwargs
from robustai.cli.evaluate import (
    check_strict,
    evaluation_metrics,
    run_evaluation,
    write_evaluation,
)
from robustai.config.schema import AttackConfig, TrainConfig
from robustai.config.validate import ATTACK_NONE, unused_settings
from robustai.data import SPLIT_SETTINGS, DataBundle, TensorLoader, build_data
from robustai.data.registry import idx_paths
from robustai.distributed import (
    SINGLE,
    DistContext,
    DistributedSetupError,
    broadcast_tensor,
    broadcast_text,
    in_turn,
    init_distributed,
    launcher_env,
    rank_seed,
    shutdown,
    unwrap_model,
    wrap_ddp,
)
from robustai.errors import ConfigError, RunInterrupted
from robustai.evaluation import check_metric_keys, eot_averaging, metric_key
from robustai.fileio import write_json
from robustai.models import build_model, save_model
from robustai.privacy import build_privacy
from robustai.security import redact_tree, secret_env_values, signing_key_from_env
from robustai.tracking import TensorBoardLogger, quiet_writer_thread_errors
from robustai.tracking.hparams import eval_metrics, log_hparams
from robustai.training import (
    CHECKPOINT_DIR,
    AdversarialObjective,
    AutocastObjective,
    CatastrophicOverfittingWatchdog,
    CheckpointCallback,
    EpochAccuracy,
    FreeAdversarialObjective,
    GatherRankStatesCallback,
    RankLocalState,
    RNGState,
    StandardObjective,
    Trainer,
    TrainingDiverged,
    TrainingInterrupted,
    WatchdogCallback,
    build_schedule,
    list_checkpoints,
    load_checkpoint,
    read_checkpoint,
    stop_on_signals,
)
from robustai.training.signals import Terminated, raise_on_sigterm

log = logging.getLogger(__name__)

METRICS = "metrics.json"
#: TensorBoard tag prefix of the watchdog's per-epoch PGD accuracy, by the split it watches
WATCH_TAG = {"train": "train/robust_acc", "eval": "val/robust_acc"}


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Same seed, same CPU run: python, numpy and torch generators, optionally strict kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)


def resolve_device(name: str, ctx: DistContext = SINGLE) -> torch.device:
    """``auto``: a GPU where there is one. Under DDP each process takes its local rank's GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if ctx.enabled and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.device={name}: no CUDA device is available; use trainer.device=cpu"
        )
    if device.type == "cuda" and device.index is not None:
        count = torch.cuda.device_count()
        if device.index >= count:
            raise ConfigError(
                f"trainer.device={name}: this machine has {count} CUDA device(s), "
                f"numbered 0 to {count - 1}; use trainer.device=cuda:0 or trainer.device=auto"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(
            f"trainer.device={name}: no Apple MPS device is available; use trainer.device=cpu"
        )
    return device


def attack_kwargs(cfg: AttackConfig, eps: float | None = None) -> dict[str, Any]:
    """The attack's keyword arguments: every field that is set, except its registry name."""
    kwargs = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name != "name"}
    if eps is not None:
        kwargs["eps"] = eps
    return {k: v for k, v in kwargs.items() if v is not None}


def make_attack(cfg: AttackConfig, eps: float | None = None, prefix: str = "attack") -> Attack:
    try:
        return build_attack(cfg.name, **attack_kwargs(cfg, eps))
    except ValueError as e:
        raise ConfigError(f"{prefix}: {e}") from e


def check_suite_keys(evaluator: Any, eps: Sequence[float]) -> None:
    """Attacks of the suite that would share a metrics.json key: one line before any work."""
    from robustai.cli.evaluate import attack_factories

    try:
        check_metric_keys(attack_factories(evaluator), eps)
    except ValueError as e:
        raise ConfigError(f"evaluator.attacks: {e}") from e


def check_attack_classes(attacks: Sequence[tuple[str, Attack]], num_classes: int) -> None:
    """Attacks whose loss needs more classes than the data has (DLR: 3, targeted DLR: 4): one
    line before any work, not a traceback in the first training step, or a refusal after
    training. ``attacks``: (config key, attack) pairs."""
    for prefix, attack in attacks:
        need = int(getattr(attack, "min_classes", 2))
        if num_classes < need:
            # APGD takes loss=ce; the targeted APGD-T has no other loss
            untargeted = "loss" in accepted_kwargs(type(attack))
            if prefix == "attack":
                hint = "attack=pgd" + (", or attack.loss=ce" if untargeted else "")
            else:
                other = "loss: ce in that entry" if untargeted else "an untargeted attack there"
                hint = f"evaluator=quick, or {other}"
            raise ConfigError(
                f"{prefix}: {attack.label} needs at least {need} classes; the data has"
                f" {num_classes} (use {hint})"
            )


def make_data(cfg: TrainConfig) -> DataBundle:
    d = cfg.data
    return build_data(
        d.name,
        batch_size=d.batch_size,
        eval_batch_size=d.eval_batch_size,
        seed=cfg.trainer.seed,
        split_seed=d.split_seed,
        holdout=d.holdout,
        train_size=d.train_size,
        eval_size=d.eval_size,
        root=d.root,
        download=d.download,
        images=d.images,
        labels=d.labels,
        num_samples=d.num_samples,
        input_shape=tuple(d.input_shape),  # type: ignore[arg-type]
        num_classes=d.num_classes,
        noise=d.noise,
        augment=d.augment,
    )


def idx_files(images: Any, labels: Any) -> dict[str, dict[str, str]]:
    """The IDX files a run read, by path and content sha256 (see :func:`idx_sha256`): the file
    itself, e.g. ``t10k-images-idx3-ubyte`` where the configured ``.gz`` name is not there."""
    from robustai.data.idx import idx_sha256, resolved_path

    return {
        key: {"path": str(resolved_path(str(path)).resolve()), "sha256": idx_sha256(str(path))}
        for key, path in (("images", images), ("labels", labels))
    }


def recorded_files(files: dict[str, dict[str, str]], privacy: Any) -> dict[str, dict[str, str]]:
    """``files`` as meta.json records them: by path alone beside a differential-privacy
    guarantee over the training data. A content hash is a function of every training image:
    whoever knows all of them but one could confirm a guess at that one, which the guarantee
    rules out (meta.json travels with the weights)."""
    if privacy.summary() is None:
        return files
    return {key: {"path": record["path"]} for key, record in files.items()}


def make_privacy(cfg: TrainConfig) -> Any:
    """The privacy plan of ``privacy=<option>`` (see :mod:`robustai.privacy.plans`)."""
    p = cfg.privacy
    kwargs = {f.name: getattr(p, f.name) for f in dataclasses.fields(p) if f.name != "name"}
    with privacy_errors(p.name):
        return build_privacy(p.name, **kwargs)


@contextlib.contextmanager
def privacy_errors(name: str) -> Iterator[None]:
    """A privacy setting that does not fit the data or model: one line, exit 2."""
    try:
        yield
    except ValueError as e:
        raise ConfigError(f"privacy={name}: {e}") from e


def check_training_steps(loader: Any, train: TensorLoader, world_size: int) -> None:
    """Refuse a run whose epochs would take no training step (it would "finish" untrained)."""
    if len(loader) > 0:
        return
    need = train.min_batch * world_size
    per = f" ({train.min_batch} for each of {world_size} processes)" if world_size > 1 else ""
    raise ConfigError(
        f"{train.num_samples} training image(s) make no training step: one needs at least "
        f"{need}{per}; use more training data"
        + (" or fewer processes" if world_size > 1 else "")
    )


def batchnorm_min_batch(model: nn.Module, x: Tensor) -> int:
    """2 where a BatchNorm layer of ``model`` sees one value per channel for each image (a 1x1
    feature map, or BatchNorm1d on vectors): in training it cannot normalize a batch of one
    image; else 1. Measured by one eval-mode forward pass of one image ``x``, which leaves the
    running statistics alone."""
    sizes: list[int] = []
    hooks = [
        m.register_forward_pre_hook(lambda _, args: sizes.append(args[0][0, 0].numel()))
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]
    if not hooks or len(x) == 0:
        for h in hooks:
            h.remove()
        return 1
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in hooks:
            h.remove()
        for m, mode in modes:
            m.training = mode
    return 2 if 1 in sizes else 1


def make_model(cfg: TrainConfig, data: DataBundle) -> nn.Module:
    try:
        model = build_model(
            cfg.model.name,
            input_shape=data.input_shape,
            num_classes=data.num_classes,
            mean=data.mean,
            std=data.std,
            **cfg.model.params,
        )
    except TypeError as e:
        raise ConfigError(f"model.params: {e}") from e
    except ValueError as e:
        raise ConfigError(
            f"model={cfg.model.name} does not fit data={data.name} of shape "
            f"{tuple(data.input_shape)}: {e}"
        ) from e
    except (RuntimeError, MemoryError) as e:  # e.g. model.params.hidden=[100000000000]
        raise ConfigError(
            f"model={cfg.model.name} with model.params={dict(cfg.model.params)} cannot be built "
            f"here ({str(e).splitlines()[0] if str(e) else type(e).__name__}); use smaller "
            "model.params"
        ) from e
    x = data.train.x[:2]
    try:
        # In eval mode: BatchNorm's running statistics stay untouched, and a training set of
        # one image reaches the check that says so (check_training_steps).
        model.eval()
        with torch.no_grad():
            out = model(x)
        model.train()
    except RuntimeError as e:
        raise ConfigError(
            f"model={cfg.model.name} does not fit data={data.name}: inputs of shape "
            f"{tuple(data.input_shape)} fail in the model ({str(e).splitlines()[0]})"
        ) from e
    if out.shape != (len(x), data.num_classes):
        raise ConfigError(
            f"model={cfg.model.name} returns shape {tuple(out.shape[1:])} for data={data.name}, "
            f"expected ({data.num_classes},) logits"
        )
    return model


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    t = cfg.trainer
    if t.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=t.lr,
            momentum=t.momentum,
            weight_decay=t.weight_decay,
            nesterov=t.nesterov and t.momentum > 0,
        )
    return torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)


def config_yaml(cfg: TrainConfig) -> str:
    """The resolved config as YAML, with secret-looking keys and secret env values redacted."""
    tree = OmegaConf.to_container(OmegaConf.structured(cfg))
    return OmegaConf.to_yaml(OmegaConf.create(redact_tree(tree, secret_env_values())))


# Hyperparameters every run shows in TensorBoard's HParams dashboard (swept ones are added).
KEY_HPARAMS = (
    "data.name",
    "model.name",
    "attack.name",
    "attack.eps",
    "attack.alpha",
    "attack.steps",
    "attack.random_start",
    "trainer.objective",
    "trainer.epochs",
    "trainer.optimizer",
    "trainer.lr",
    "trainer.schedule",
    "trainer.weight_decay",
    "trainer.seed",
    "data.batch_size",
)


def key_hparams(
    cfg: TrainConfig, attack: Attack | None = None, objective: str | None = None
) -> dict[str, Any]:
    """:data:`KEY_HPARAMS` and the privacy option's own settings. With the training
    ``attack``, step sizes and steps left null in the config show the values it uses (e.g.
    FGSM-RS's default alpha of 1.25 eps); ``objective`` is the one the run trained with (the
    config's ``adversarial`` trains without an attack under ``attack=none``), and free training
    adds its ``trainer.replays``."""
    out: dict[str, Any] = {}
    for path in KEY_HPARAMS:
        node: Any = cfg
        for part in path.split("."):
            node = getattr(node, part, None)
        group, _, field = path.partition(".")
        if node is None and group == "attack" and attack is not None:
            node = getattr(attack, field, None)
        if node is not None:
            out[path] = node
    if objective is not None:
        out["trainer.objective"] = objective
    if out.get("trainer.objective") == "free":  # its cost and strength depend on the replays
        out["trainer.replays"] = cfg.trainer.replays
        for unused in ("attack.alpha", "attack.steps", "attack.random_start"):  # eps alone
            out.pop(unused, None)
    privacy = getattr(cfg, "privacy", None)
    if dataclasses.is_dataclass(privacy):
        from robustai.privacy.plans import privacy_params

        # the fields the chosen option reads: the others hold the schema's defaults, noise or
        # clipping the run never applied
        used = {"name", *privacy_params(privacy.name)}
        for f in dataclasses.fields(privacy):
            value = getattr(privacy, f.name)
            if f.name in used and (value is None or isinstance(value, bool | int | float | str)):
                out[f"privacy.{f.name}"] = value
    return out


def checkpoint_components(
    trainer: Trainer,
    loader: TensorLoader,
    watchdog: CatastrophicOverfittingWatchdog,
    rank: int = 0,
    world_size: int = 1,
) -> dict[str, Any]:
    """Everything a resumed run needs, in load order (RNG last: loading others may draw)."""
    comps: dict[str, Any] = {
        # the plain model's keys with or without DDP and Opacus' wrappers (DP-SGD)
        "model": unwrap_model(trainer.model),
        "optimizer": trainer.optimizer,
        "loader": loader,
        "watchdog": watchdog,
        "trainer": trainer,
    }
    if trainer.scheduler is not None:
        comps["scheduler"] = trainer.scheduler
    if hasattr(trainer.objective, "state_dict"):  # e.g. free training's carried perturbation,
        # which each rank keeps for its own shard
        comps["objective"] = RankLocalState(trainer.objective, rank, world_size)
    comps["rng"] = RNGState(rank, world_size)
    return comps


# Keys that may differ between a run and its resumption: they do not change what is trained.
_RESUME_FREE = (
    "name", "optimized_metric", "paths.", "logger.", "evaluator.", "trainer.resume",
    "trainer.progress", "trainer.threads", "trainer.device", "trainer.checkpoint_every",
    "trainer.keep_checkpoints", "trainer.distributed", "trainer.backend", "trainer.cuda_graphs",
)


def resume_free(key: str) -> bool:
    """Whether config key (or group) ``key`` may differ between a run and its resumption."""
    return key.startswith(_RESUME_FREE) or f"{key}." in _RESUME_FREE


def resume_fingerprint(cfg: TrainConfig) -> dict[str, str]:
    """The config values a resumed run must share with the run it continues."""
    flat: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            flat[prefix[:-1]] = repr(node)

    walk(OmegaConf.to_container(OmegaConf.structured(cfg)), "")
    return {k: v for k, v in flat.items() if not k.startswith(_RESUME_FREE)}


def config_changes(cfg: TrainConfig, saved: Mapping[str, Any]) -> str | None:
    """What differs between ``cfg`` and a checkpoint's recorded :func:`resume_fingerprint`
    (``key: old -> new``, the first five), or None where it would train the same."""
    now = resume_fingerprint(cfg)
    changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if not changed:
        return None
    return ", ".join(f"{k}: {saved.get(k, '-')} -> {now.get(k, '-')}" for k in changed[:5])


def check_resume_config(cfg: TrainConfig, checkpoint: Path, saved: Mapping[str, Any]) -> None:
    """Refuse to continue a checkpoint whose run was made with a config that trains otherwise
    (``saved``: the :func:`resume_fingerprint` the checkpoint recorded)."""
    diffs = config_changes(cfg, saved)
    if diffs:
        raise ConfigError(
            f"cannot resume from {checkpoint}: it was made with a different config ({diffs}); "
            "resume with the run's original overrides"
        )


def _resume_checkpoint(
    cfg: TrainConfig, out_dir: Path
) -> tuple[Path, dict[str, Any], dict[str, Any]] | None:
    """The newest checkpoint of ``trainer.resume`` or of this run folder (path, state, info),
    checked against this run's config; None for a fresh run."""
    source = Path(cfg.trainer.resume).expanduser() if cfg.trainer.resume else out_dir
    found = list_checkpoints(source / CHECKPOINT_DIR)
    if not found:
        if cfg.trainer.resume:
            raise ConfigError(f"trainer.resume={cfg.trainer.resume}: no checkpoint to resume from")
        return None
    latest = found[0].path
    state, info = read_checkpoint(latest)
    check_resume_config(cfg, latest, info.get("config", {}))
    return latest, state, info


Checkpoint = tuple[Path, dict[str, Any], dict[str, Any]]


def resume_release(cfg: TrainConfig, out_dir: Path, privacy: Any) -> Checkpoint | None:
    """A privacy plan that releases the training images once (``where=input``) takes, in a
    resumed run, the release its checkpoint holds, before :meth:`prepare_data` would draw a
    second one: training on two releases of an image spends its budget twice. Returns the
    checkpoint it read, for :func:`resume` (it holds the whole release: read it once)."""
    if not privacy.releases_inputs:
        return None
    found = _resume_checkpoint(cfg, out_dir)
    if found is None:
        return None
    latest, state, _ = found
    if "privacy" not in state:
        raise ConfigError(
            f"cannot resume from {latest}: it does not hold the released training images "
            f"(privacy={cfg.privacy.name}), and releasing them again would spend the privacy "
            "budget twice; start a new run"
        )
    load_checkpoint({"privacy": privacy}, state, latest)
    return found


def resume(
    cfg: TrainConfig,
    out_dir: Path,
    components: Mapping[str, Any],
    found: Checkpoint | None = None,
) -> None:
    """Continue from the newest checkpoint of ``trainer.resume`` or of this run folder, if any
    (``found``: that checkpoint, where it was read already)."""
    found = found or _resume_checkpoint(cfg, out_dir)
    if found is None:
        return
    latest, state, info = found
    load_checkpoint(components, state, latest)
    # A checkpoint records the epochs completed and the steps taken into the next one; the log
    # counts epochs from 1, as the "interrupted at epoch N, step S" line that made it did.
    epoch, step = int(info["epoch"]), int(info["step"])
    where = f"epoch {epoch + 1}, step {step}" if step else f"the end of epoch {epoch}"
    log.info("resumed from %s: at %s", latest, where)


def fast_path(
    cfg: TrainConfig, model: nn.Module, objective: Any, device: torch.device, data: DataBundle
) -> tuple[nn.Module, Any]:
    """Optional speed-ups that leave the training semantics alone: NHWC memory format, bf16
    autocast, torch.compile. The returned model is used for training only; evaluation and the
    saved weights use the plain module."""
    t = cfg.trainer
    if t.channels_last:
        model.to(memory_format=torch.channels_last)
        for loader in (data.train, data.eval):
            loader.x = loader.x.contiguous(memory_format=torch.channels_last)
    if t.amp:
        objective = AutocastObjective(objective, device.type)
    if t.compile:
        model = torch.compile(model)  # type: ignore[assignment]
    if t.amp or t.channels_last or t.compile:
        log.info("fast path: amp=%s channels_last=%s compile=%s", t.amp, t.channels_last, t.compile)
    return model, objective


def start_distributed_error(ddp: bool, world_size: int | None) -> str | None:
    """Why ``trainer.distributed`` does not fit how this process was started, if it does not.

    ``world_size``: the launcher's (torchrun or submitit), None without one.
    """
    if not ddp and world_size is not None and world_size > 1:
        return (
            f"this process is one of {world_size} that a launcher started (torchrun, or "
            f"submitit with tasks_per_node > 1), but trainer.distributed=none would train "
            f"{world_size} separate copies; add trainer=ddp, or start a single process"
        )
    if ddp and world_size is None:
        return (
            "trainer=ddp needs a launcher that starts one process per device: torchrun "
            "--nproc_per_node=N -m robustai train trainer=ddp ..., or a submitit job with one "
            "task per device (hydra/launcher=slurm_ddp)"
        )
    return None


def start_distributed(cfg: TrainConfig) -> DistContext:
    """Join the launcher's process group for ``trainer=ddp``; refuse a multi-process launch
    without it (every process would train its own copy and write its own run folder)."""
    ddp = cfg.trainer.distributed == "ddp"
    env = launcher_env()
    message = start_distributed_error(ddp, env["world_size"] if env else None)
    if message:
        raise ConfigError(message)
    if not ddp:
        return SINGLE
    try:
        return init_distributed(cfg.trainer.backend, resolve_device(cfg.trainer.device).type)
    except DistributedSetupError as e:
        raise ConfigError(str(e)) from e


def share_inputs(data: DataBundle, device: torch.device) -> None:
    """Rank 0's training inputs and normalization on every rank: a privacy mechanism that
    releases the inputs must release each record once for the whole job, not once per rank."""
    stats = torch.tensor([*data.mean, *data.std], dtype=torch.float64, device=device)
    x = broadcast_tensor(data.train.x.to(device))
    broadcast_tensor(stats)
    data.train.x = x.to(data.train.x.device)
    c = len(data.mean)
    data.mean, data.std = tuple(stats[:c].tolist()), tuple(stats[c:].tolist())


def run_train(
    cfg: TrainConfig, out_dir: Path, hparams: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Train, evaluate and write the run folder; returns what went into metrics.json.

    ``hparams`` (e.g. a sweep member's overridden values) join :func:`key_hparams` in the run's
    TensorBoard HParams entry. Under ``trainer=ddp`` every process calls this; rank 0 writes the
    run folder and returns the metrics, the other ranks train and return ``{}``.
    """
    ctx = start_distributed(cfg)
    try:
        with raise_on_sigterm():
            return _run_train(cfg, out_dir, hparams, ctx)
    except KeyboardInterrupt as e:
        # Ctrl-C outside the training loop (loading the data, the final evaluation), where
        # no stop handler turns it into a checkpoint: one line saying what is left to resume.
        raise RunInterrupted(signal.SIGINT, interrupted_message(out_dir, ctx)) from e
    except Terminated as e:  # the same for SIGTERM (e.g. a scheduler's), which ended silently
        raise RunInterrupted(signal.SIGTERM, interrupted_message(out_dir, ctx)) from e
    finally:
        shutdown(ctx)


def resumed_tensorboard(out_dir: Path, trainer: Trainer, robust_tag: str) -> TensorBoardLogger:
    """The run's TensorBoard writer. A resumed run purges the steps from its checkpoint's last
    epoch on (an epoch logged before the kill, the final evaluation's step if training was done)
    and logs that epoch again from the checkpoint, so the steps go on without repeats or gaps."""
    retry = "resume the run with trainer.resume=<its folder> (its last complete checkpoint is kept)"
    if not trainer.epoch and not trainer.state_dict()["partial"]["step"]:
        return TensorBoardLogger(out_dir, robust_tag=robust_tag, retry=retry)
    # From the checkpoint's last epoch on, which is logged again: the checkpoint is saved
    # before the epoch's scalars are written, so a write that failed left it out.
    tb = TensorBoardLogger(
        out_dir,
        robust_tag=robust_tag,
        purge_step=trainer.epoch if trainer.history else trainer.epoch + 1,
        retry=retry,
    )
    if trainer.history:
        tb.on_epoch_end(trainer, trainer.history[-1])
    return tb


def interrupted_message(out_dir: Path, ctx: DistContext = SINGLE) -> str:
    """What a run interrupted outside its training loop leaves to resume from (said by rank 0:
    another rank's ``out_dir`` is a scratch folder of its own)."""
    if not ctx.is_main:
        return "interrupted; rank 0 reports what is left to resume"
    found = list_checkpoints(out_dir / CHECKPOINT_DIR)
    if not found:
        return f"interrupted before {out_dir} held a checkpoint; nothing to resume"
    return (
        f"interrupted; checkpoint {found[0].path.name} is kept; "
        f"{resume_advice(out_dir, ctx)}"
    )


def launch_prefix(ctx: DistContext) -> str:
    """How the run was started, for a resume command to paste."""
    return "torchrun --nproc_per_node=N -m robustai" if ctx.enabled else "robustai"


def resume_advice(out_dir: Path, ctx: DistContext = SINGLE) -> str:
    """The command that continues the run in ``out_dir``. A sweep member's pastes its own
    overrides with ``hydra.mode=RUN``: they hold the sweep's (an Optuna search's
    ``hparams_search=...``), which would otherwise start a new sweep; a grid sweep also resumes
    as a whole, run again into its folder."""
    member = f"{launch_prefix(ctx)} train {resume_argument(out_dir)}"
    sweep = _sweep_of_member(out_dir)
    if sweep is None:
        return f"resume with: {member} (and the same overrides)"
    overrides = shlex.quote(str(out_dir / ".hydra" / "overrides.yaml"))
    alone = f"{member} hydra.mode=RUN (and the overrides in {overrides})"
    if "optuna" in sweep[1]:  # a search does not run again into its own folder
        return f"resume this trial with: {alone}"
    return (
        f"resume the sweep with the same command and hydra.sweep.dir={shlex.quote(sweep[0])}"
        f", or this member alone with: {alone}"
    )


def _sweep_of_member(out_dir: Path) -> tuple[str, str] | None:
    """(sweep folder, sweeper target) when this job, in ``out_dir``, is a member of a Hydra
    multirun. The folder is the one that holds ``out_dir`` (a sweep folder named by the time
    and resolved again in another process would name another)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return None
    sweep = Path(str(hc.sweep.dir)).absolute()
    if not out_dir.absolute().is_relative_to(sweep):
        sweep = out_dir.absolute().parent
    return str(sweep), str(hc.sweeper.get("_target_", ""))


def resume_argument(out_dir: Path) -> str:
    """``trainer.resume=<out_dir>`` as one shell word, so the printed command can be pasted
    as it is where the folder's name holds a space or a quote."""
    return shlex.quote(f"trainer.resume={out_dir}")


def _run_train(
    cfg: TrainConfig, out_dir: Path, hparams: Mapping[str, Any] | None, ctx: DistContext
) -> dict[str, Any]:
    wall_start = time.perf_counter()
    if ctx.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        if not os.access(out_dir, os.W_OK):
            raise ConfigError(
                f"output folder {out_dir} is not writable; set hydra.run.dir=<writable folder>"
            )
    # Rank 0's folder everywhere: a resumed run reads its checkpoints from there.
    out_dir = Path(broadcast_text(str(out_dir), ctx))
    signing_key_from_env()  # an unusable ROBUSTAI_SIGNING_KEY fails now, not after training
    seed_everything(cfg.trainer.seed, cfg.trainer.deterministic)
    if cfg.trainer.threads is not None:
        torch.set_num_threads(cfg.trainer.threads)
    device = resolve_device(cfg.trainer.device, ctx)
    # a download writes files the processes share: one process at a time
    data = in_turn(lambda: make_data(cfg), ctx) if cfg.data.download else make_data(cfg)
    # recorded as read (data.images=null reads root's files), not when the run is saved
    d = cfg.data
    data_files = idx_files(*idx_paths(d.root, d.images, d.labels)) if data.name == "idx" else None
    privacy = make_privacy(cfg)
    # A resumed run keeps its one release of the inputs.
    release_checkpoint = resume_release(cfg, out_dir, privacy)
    with privacy_errors(cfg.privacy.name):
        privacy.prepare_data(data)  # e.g. DP normalization, or releasing the inputs once
        if ctx.world_size > 1 and privacy.releases_inputs:
            share_inputs(data, device)
        model = privacy.prepare_model(make_model(cfg, data)).to(device)
    need = batchnorm_min_batch(model, data.train.x[:1].to(device))
    if need > 1:  # a batch of one image cannot train the model
        per_process = data.train.batch_size // ctx.world_size
        if per_process < need:
            each = f" to some of the {ctx.world_size} processes" if ctx.world_size > 1 else ""
            raise ConfigError(
                f"data.batch_size={data.train.batch_size} gives {per_process} image per step"
                f"{each}, but model={cfg.model.name} has BatchNorm layers that see one value per"
                f" channel for inputs of shape {tuple(data.input_shape)}, and cannot train on"
                f" one image; use data.batch_size={need * ctx.world_size} or more"
            )
        data.train.min_batch = need  # and leave out a last batch of one
    data.train.to(device)
    data.eval.to(device)
    if ctx.rank > 0:  # same initial weights as rank 0, but its own attack random starts
        torch.manual_seed(rank_seed(cfg.trainer.seed, ctx.rank))
    log.info(
        "data %s: %d train / %d eval images of shape %s, %d classes; model %s (%d params) on %s",
        data.name,
        data.train.num_samples,
        data.eval.num_samples,
        data.input_shape,
        data.num_classes,
        cfg.model.name,
        sum(p.numel() for p in model.parameters()),
        device,
    )

    if ctx.is_main:
        for line in unused_settings(cfg):
            log.warning("%s", line)
    adversarial = cfg.attack.name != ATTACK_NONE
    threat_eps = float(cfg.attack.eps if cfg.attack.eps is not None else cfg.data.eps)
    replays = 1
    train_attack: Attack | None = None
    if adversarial and cfg.trainer.objective == "free":
        objective: Any = FreeAdversarialObjective(
            threat_eps, cfg.trainer.replays, cfg.trainer.eps_warmup_epochs
        )
        replays = cfg.trainer.replays
        log.info("objective: free adversarial training, %d replays at eps=%g", replays, threat_eps)
        trained_with = "free"
    elif adversarial and cfg.trainer.objective == "adversarial":
        train_attack = make_attack(cfg.attack).with_cuda_graph(cfg.trainer.cuda_graphs)
        objective = AdversarialObjective(train_attack, cfg.trainer.eps_warmup_epochs)
        log.info(
            "objective: adversarial training with %s at eps=%g",
            train_attack.label,
            train_attack.eps,
        )
        trained_with = "adversarial"
    else:
        objective = StandardObjective()
        log.info("objective: standard training (no attack)")
        trained_with = "standard"
    trained_by = train_attack.label if train_attack is not None else ATTACK_NONE
    if trained_with == "free":
        trained_by = "free"
    suite_eps = (list(cfg.evaluator.eps) or [threat_eps])[0]
    check_attack_classes(
        ([("attack", train_attack)] if train_attack is not None else [])
        + [
            (f"evaluator.attacks[{i}]", make_attack(a, suite_eps, prefix=f"evaluator.attacks[{i}]"))
            for i, a in enumerate(cfg.evaluator.attacks)
        ],
        data.num_classes,
    )
    check_suite_keys(cfg.evaluator, cfg.evaluator.eps)

    optimizer = make_optimizer(cfg, model)
    # DP-SGD swaps in Opacus' model wrapper, DP optimizer, Poisson loader and budget callback.
    with privacy_errors(cfg.privacy.name):
        parts = privacy.wrap(
            model, optimizer, objective, data.train, cfg.trainer.epochs, distributed=ctx.enabled
        )
    ddp = ctx.enabled and not privacy.handles_distributed  # DP-SGD synchronizes ranks itself
    if ddp:
        data.train.shard(ctx.rank, ctx.world_size)
    check_training_steps(parts.loader, data.train, ctx.world_size)
    # Sized by the loader as it will run: sharding (and BatchNorm's smallest batch) can drop a
    # step per epoch, and a schedule sized for more steps would never reach its end.
    scheduler = build_schedule(
        cfg.trainer.schedule,
        optimizer,
        cfg.trainer.epochs * len(parts.loader) * replays,
        cfg.trainer.warmup_fraction,
    )
    left_out = data.train.num_samples - len(data.train) * data.train.batch_size
    if left_out > 0 and parts.loader is data.train and ctx.is_main:
        log.info(
            "each epoch leaves out its last %d training image(s): %s; another data.batch_size"
            " uses them",
            left_out,
            "BatchNorm cannot train on a batch of one"
            if data.train.min_batch > 1
            else f"too few to give each of the {ctx.world_size} processes one",
        )
    wd = cfg.trainer.watchdog
    watch_attack = build_attack(  # in the run's threat model: PGD in the attack's norm
        "pgd", eps=threat_eps, steps=wd.steps, norm=cfg.attack.norm, model_mode="eval"
    )
    # A fixed batch of training images, as Wong et al. (2020) did: the epoch it restores is then
    # not chosen on the images the run reports its accuracy on. DP-SGD must not look at training
    # records outside its accountant, so there the watchdog watches eval images (metrics.json
    # and the TensorBoard tag say which).
    watch_split = "eval" if cfg.privacy.name == "dpsgd" else "train"
    watch = data.eval if watch_split == "eval" else data.train
    watchdog = CatastrophicOverfittingWatchdog(
        watch_attack, watch.x[: wd.samples], watch.y[: wd.samples], max_drop=wd.max_drop
    )
    callbacks: list[Any] = []
    if ctx.is_main:  # validation, watchdog, privacy budget and logging: rank 0's (see Trainer)
        callbacks = [
            EpochAccuracy(
                data.train.x[:512],
                data.train.y[:512],
                data.eval.x,
                data.eval.y,
                cfg.data.eval_batch_size,
            ),
            WatchdogCallback(
                watchdog, active=wd.enabled and objective.adversarial, split=watch_split
            ),
            *parts.callbacks,  # before TensorBoard, which logs what they measure
        ]
    train_model, train_objective = fast_path(cfg, parts.model, parts.objective, device, data)
    if ddp:
        if device.type == "cuda":  # batch statistics over the global batch, as on one device
            train_model = nn.SyncBatchNorm.convert_sync_batchnorm(train_model)
        train_model = wrap_ddp(train_model, ctx, device)
    with stop_on_signals() as stop:
        trainer = Trainer(
            train_model,
            train_objective,
            parts.optimizer,
            scheduler,
            epochs=cfg.trainer.epochs,
            callbacks=callbacks,
            progress=cfg.trainer.progress and ctx.is_main,
            stop_event=stop,
            world_size=ctx.world_size,
        )
        components = {
            **parts.state,  # e.g. the privacy accountant; RNG state stays last
            **checkpoint_components(trainer, parts.loader, watchdog, ctx.rank, ctx.world_size),
        }
        rng: RNGState = components["rng"]
        resume(cfg, out_dir, components, release_checkpoint)
        if ctx.rank > 0 and not rng.restored_own:  # a fresh run, or a checkpoint without
            step = trainer.state_dict()["partial"]["step"]  # this rank's random state
            torch.manual_seed(rank_seed(cfg.trainer.seed, ctx.rank, trainer.epoch, step))
            if trainer.epoch or step:  # resumed (ranks > 0 log warnings only)
                log.warning(
                    "rank %d: the checkpoint holds no random state for this rank (written by an "
                    "older version or another number of processes); its random starts are reseeded",
                    ctx.rank,
                )
        own = components.get("objective")
        if ctx.rank > 0 and isinstance(own, RankLocalState) and not own.restored_own:
            step = trainer.state_dict()["partial"]["step"]
            if trainer.epoch or step:
                log.warning(
                    "rank %d: the checkpoint holds no free-training perturbation for this rank "
                    "(written by an older version or another number of processes); it starts "
                    "again from zero",
                    ctx.rank,
                )
        tb = None
        if cfg.logger.tensorboard and ctx.is_main:  # after resume: where its steps go on
            quiet_writer_thread_errors()
            robust_tag = f"{WATCH_TAG[watch_split]}/{watch_attack.label}"
            tb = resumed_tensorboard(out_dir, trainer, robust_tag)
            if tb.purge_step == 0:  # a new run (a resumed one has it from the first)
                tb.log_text("config", "```yaml\n" + config_yaml(cfg) + "```")
        saver = CheckpointCallback(
            out_dir / CHECKPOINT_DIR,
            components,
            every=cfg.trainer.checkpoint_every,
            keep=cfg.trainer.keep_checkpoints,
            info={"config": resume_fingerprint(cfg)},
        )
        # every rank: the ranks' own states (random, free training's) for rank 0's checkpoint
        rank_states = [c for c in components.values() if isinstance(c, RankLocalState)] + [rng]
        if ctx.world_size > 1:
            trainer.callbacks.append(GatherRankStatesCallback(*rank_states))
        if ctx.is_main:
            trainer.callbacks.append(saver)  # it saves what the other callbacks left
        if tb is not None:
            # after the callbacks whose measures it logs, and after the checkpoint: an event
            # file that cannot be written then ends the run with the epoch saved
            trainer.callbacks.append(tb)
        try:
            fit = trainer.fit(parts.loader)
        except TrainingInterrupted as e:
            for state in rank_states:  # every rank stops at the same step (the trainer agrees)
                state.gather()
            if not ctx.is_main:
                raise RunInterrupted(stop.signum or 2, f"{e}; rank 0 saved the checkpoint") from e
            path = saver.save(trainer, step=e.step)
            raise RunInterrupted(
                stop.signum or 2,
                f"{e}; checkpoint {path.name} saved; {resume_advice(out_dir, ctx)}",
            ) from e
        except TrainingDiverged as e:
            dp = getattr(privacy, "dp", None)
            if dp is None:
                raise
            # with a huge noise multiplier or clipping norm, the learning rate is not the cause
            raise TrainingDiverged(
                f"{e}; under DP-SGD the noise added to the summed gradients has std"
                f" privacy.noise_multiplier x privacy.max_grad_norm ="
                f" {dp.noise_multiplier * dp.max_grad_norm:g}, which a smaller"
                " privacy.max_grad_norm or privacy.noise_multiplier lowers"
            ) from e
        if stop.is_set():
            # It came during the last epoch's last step or end (its checkpoint is saved): the
            # signal still means stop now, not after the whole final evaluation (a scheduler's
            # grace period would end that in SIGKILL).
            raise RunInterrupted(stop.signum or signal.SIGINT, interrupted_message(out_dir, ctx))
    model = privacy.finish(model)  # the plain model again (DP-SGD: Opacus' hooks removed)
    if not ctx.is_main:
        log.info("rank %d: training done; rank 0 evaluates and writes %s", ctx.rank, out_dir)
        return {}

    # Final evaluation on the eval split: the suite, then the robustness curve, sanity checks
    # and per-class accuracy (cli/evaluate.py, shared with `robustai evaluate`).
    ev = cfg.evaluator
    x_ev, y_ev = data.eval.x, data.eval.y
    if ev.samples is not None:
        x_ev, y_ev = x_ev[: ev.samples], y_ev[: ev.samples]
    evaluation = run_evaluation(
        ev,
        model,
        x_ev,
        y_ev,
        eps=ev.eps,
        num_classes=data.num_classes,
        batch_size=cfg.data.eval_batch_size,
    )
    result = evaluation.result

    weights = save_model(
        model,
        out_dir,
        overwrite=True,  # a finished run started again evaluates and saves into its own folder
        name=cfg.model.name,
        params=dict(cfg.model.params),
        input_shape=data.input_shape,
        num_classes=data.num_classes,
        mean=data.mean,
        std=data.std,
        extra={
            "data": data.name,
            # what trained it: e.g. fgsm_rs (the attack group's name is fgsm for both FGSMs),
            # free, or none (objective=standard trains on clean inputs whatever the attack)
            "attack": trained_by,
            # none for a model trained without an attack: it was not trained for one
            "threat_model": None
            if trained_with == "standard"
            else {"norm": cfg.attack.norm, "eps": threat_eps},
            "privacy": privacy.describe(),
            # what `robustai evaluate` needs to evaluate on this run's eval split, not on
            # images the model was trained on
            "split": {k: getattr(cfg.data, k) for k in SPLIT_SETTINGS.get(data.name, ())},
            # IDX files can be any data set (Fashion-MNIST's files bear MNIST's names): their
            # content, so that evaluate can tell other files from these
            **({"data_files": recorded_files(data_files, privacy)} if data_files else {}),
        },
    )
    metrics: dict[str, Any] = {
        "clean_acc": result.clean_acc,
        "robust_acc": result.robust_acc,
        "worst_case_acc": result.worst_case,
        "train_seconds": fit.train_seconds,
        "epochs": fit.epochs,
        "images_per_s": fit.images_per_s,
        "privacy": privacy.summary(),  # {"epsilon", "delta", ...} or None without a DP guarantee
        "privacy_statement": privacy.statement(),
        # a mechanism inside the model (privacy.where=features|output) protects queries only
        "query_privacy": privacy.query_summary(),
        "eval_seconds": result.seconds,
        "eval_samples": result.samples,
        "wall_seconds": time.perf_counter() - wall_start,
        "stopped_early": fit.stopped_early,
        "stop_reason": fit.stop_reason,
        "watchdog": {
            **watchdog.summary(),
            "attack": watch_attack.label,
            "eps": threat_eps,
            "samples": len(watchdog.y),
            "split": watch_split,
        },
        "seed": cfg.trainer.seed,
        "device": str(device),
        "distributed": (
            {"world_size": ctx.world_size, "backend": ctx.backend} if ctx.enabled else None
        ),
        "weights": weights.name,
        **evaluation_metrics(evaluation),  # sanity, per_class, curve, report
    }
    write_evaluation(
        out_dir,
        evaluation,
        x_ev,
        y_ev,
        title=f"Robustness evaluation: {cfg.model.name} on {data.name} (trained with {trained_by})",
        context={
            "model": cfg.model.name,
            "data": f"{data.name}, eval",
            "device": str(device),
            # the Privacy section of report.md and TensorBoard's report, and its numbers, as in
            # a `robustai evaluate` report
            **{k: metrics[k] for k in ("privacy", "query_privacy", "privacy_statement")},
        },
        save_examples=ev.save_examples,
        tb=tb,
        step=fit.epochs,
    )
    if tb is not None:
        tb.log_eval(result.clean_acc, result.robust_acc, fit.epochs)
        k = min(cfg.logger.image_grid, len(x_ev))
        if k > 0 and ev.attacks:
            grid_attack = eot_averaging(
                lambda eps: make_attack(ev.attacks[-1], eps), ev.eot_iter
            )(ev.eps[0])
            x_adv = grid_attack(model.eval(), x_ev[:k], y_ev[:k])
            tb.log_adversarial_grid(
                x_ev[:k],
                x_adv,
                ev.eps[0],
                f"eval/adversarial/{metric_key(grid_attack)}",
                fit.epochs,
            )
        logged = {"eval/clean_acc", *(f"eval/robust_acc/{k}" for k in result.robust_acc)}
        with tb.writing():
            log_hparams(
                tb.writer,
                redact_tree(
                    {**key_hparams(cfg, train_attack, trained_with), **(hparams or {})},
                    secret_env_values(),
                ),
                eval_metrics(metrics),
                fit.epochs,
                already_logged=logged,  # log_eval wrote these tags already
            )
        tb.close()
    metrics["wall_seconds"] = time.perf_counter() - wall_start
    write_json(out_dir / METRICS, metrics)
    log.info("privacy: %s", metrics["privacy_statement"])
    robust = ", ".join(f"{k} {v:.3f}" for k, v in result.robust_acc.items())
    log.info(
        "clean acc %.3f | %s | %.1fs training",
        result.clean_acc,
        robust or "no attacks",
        fit.train_seconds,
    )
    log.info("run folder: %s", out_dir)
    if any(math.isnan(v) for v in [result.clean_acc, *result.robust_acc.values()]):
        log.warning("some accuracies are NaN: the eval split is empty")
    check_strict(evaluation, ev.strict)  # evaluator.strict: a failed sanity check -> exit 1
    return metrics
