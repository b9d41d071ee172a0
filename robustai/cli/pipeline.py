"""From a validated :class:`TrainConfig` to a finished run folder.

This is the glue between config and library: it turns config dataclasses into plain keyword
arguments for the library's classes, runs training and evaluation, and writes the run's files.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import nn

from robustai.attacks import Attack, build_attack
from robustai.config.schema import AttackConfig, TrainConfig
from robustai.config.validate import ATTACK_NONE
from robustai.data import DataBundle, build_data
from robustai.errors import ConfigError
from robustai.evaluation import Evaluator, metric_key
from robustai.models import build_model, save_model
from robustai.tracking import TensorBoardLogger
from robustai.training import (
    AdversarialObjective,
    CatastrophicOverfittingWatchdog,
    EpochAccuracy,
    StandardObjective,
    Trainer,
    WatchdogCallback,
    build_schedule,
)

log = logging.getLogger(__name__)

METRICS = "metrics.json"


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Same seed, same CPU run: python, numpy and torch generators, optionally strict kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.device={name}: no CUDA device is available; use trainer.device=cpu"
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
    )


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
        raise ConfigError(f"model={cfg.model.name}: {e}") from e
    x = data.train.x[:2]
    try:
        with torch.no_grad():
            out = model(x)
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
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Atomic: a reader never sees a half-written file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2, allow_nan=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def run_train(cfg: TrainConfig, out_dir: Path) -> dict[str, Any]:
    """Train, evaluate and write the run folder; returns what went into metrics.json."""
    wall_start = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    if not os.access(out_dir, os.W_OK):
        raise ConfigError(
            f"output folder {out_dir} is not writable; set hydra.run.dir=<writable folder>"
        )
    seed_everything(cfg.trainer.seed, cfg.trainer.deterministic)
    device = resolve_device(cfg.trainer.device)
    data = make_data(cfg)
    model = make_model(cfg, data).to(device)
    data.train.to(device)
    data.eval.to(device)
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

    adversarial = cfg.attack.name != ATTACK_NONE
    threat_eps = float(cfg.attack.eps if cfg.attack.eps is not None else cfg.data.eps)
    if adversarial and cfg.trainer.objective == "adversarial":
        train_attack = make_attack(cfg.attack)
        objective: Any = AdversarialObjective(train_attack, cfg.trainer.eps_warmup_epochs)
        log.info(
            "objective: adversarial training with %s at eps=%g",
            train_attack.label,
            train_attack.eps,
        )
    else:
        objective = StandardObjective()
        log.info("objective: standard training (no attack)")

    optimizer = make_optimizer(cfg, model)
    scheduler = build_schedule(
        cfg.trainer.schedule,
        optimizer,
        cfg.trainer.epochs * len(data.train),
        cfg.trainer.warmup_fraction,
    )
    wd = cfg.trainer.watchdog
    watch_attack = build_attack("pgd", eps=threat_eps, steps=wd.steps, model_mode="eval")
    watchdog = CatastrophicOverfittingWatchdog(
        watch_attack, data.eval.x[: wd.samples], data.eval.y[: wd.samples], max_drop=wd.max_drop
    )
    callbacks: list[Any] = [
        EpochAccuracy(
            data.train.x[:512],
            data.train.y[:512],
            data.eval.x,
            data.eval.y,
            cfg.data.eval_batch_size,
        ),
        WatchdogCallback(watchdog, active=wd.enabled and objective.adversarial),
    ]
    tb = (
        TensorBoardLogger(out_dir, robust_tag=watch_attack.label)
        if cfg.logger.tensorboard
        else None
    )
    if tb is not None:
        callbacks.append(tb)
        tb.log_text("config", "```yaml\n" + config_yaml(cfg) + "```")

    trainer = Trainer(
        model,
        objective,
        optimizer,
        scheduler,
        epochs=cfg.trainer.epochs,
        callbacks=callbacks,
        progress=cfg.trainer.progress,
    )
    fit = trainer.fit(data.train)

    # Final evaluation on the eval split.
    ev = cfg.evaluator
    factories = [
        (lambda eps, a=a, i=i: make_attack(a, eps, prefix=f"evaluator.attacks[{i}]"))
        for i, a in enumerate(ev.attacks)
    ]
    x_ev, y_ev = data.eval.x, data.eval.y
    if ev.samples is not None:
        x_ev, y_ev = x_ev[: ev.samples], y_ev[: ev.samples]
    result = Evaluator(factories, ev.eps, batch_size=cfg.data.eval_batch_size).run(
        model, x_ev, y_ev
    )

    weights = save_model(
        model,
        out_dir,
        name=cfg.model.name,
        params=dict(cfg.model.params),
        input_shape=data.input_shape,
        num_classes=data.num_classes,
        mean=data.mean,
        std=data.std,
        extra={
            "data": data.name,
            "attack": cfg.attack.name,
            "threat_model": {"norm": cfg.attack.norm, "eps": threat_eps},
        },
    )
    metrics: dict[str, Any] = {
        "clean_acc": result.clean_acc,
        "robust_acc": result.robust_acc,
        "worst_case_acc": result.worst_case,
        "train_seconds": fit.train_seconds,
        "epochs": fit.epochs,
        "images_per_s": fit.images_per_s,
        "privacy": None,
        "eval_seconds": result.seconds,
        "eval_samples": result.samples,
        "wall_seconds": time.perf_counter() - wall_start,
        "stopped_early": fit.stopped_early,
        "stop_reason": fit.stop_reason,
        "watchdog": {
            **watchdog.state_dict(),
            "attack": watch_attack.label,
            "eps": threat_eps,
            "samples": len(watchdog.y),
            "split": "eval",
        },
        "seed": cfg.trainer.seed,
        "device": str(device),
        "weights": weights.name,
    }
    if tb is not None:
        tb.log_eval(result.clean_acc, result.robust_acc, fit.epochs)
        k = min(cfg.logger.image_grid, len(x_ev))
        if k > 0 and ev.attacks:
            grid_attack = make_attack(ev.attacks[-1], ev.eps[0])
            x_adv = grid_attack(model.eval(), x_ev[:k], y_ev[:k])
            tb.log_adversarial_grid(
                x_ev[:k],
                x_adv,
                ev.eps[0],
                f"eval/adversarial/{metric_key(grid_attack)}",
                fit.epochs,
            )
        tb.close()
    metrics["wall_seconds"] = time.perf_counter() - wall_start
    write_json(out_dir / METRICS, metrics)
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
    return metrics
