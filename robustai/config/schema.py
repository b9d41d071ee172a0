"""Typed schemas for every config group.

Hydra composes YAML overlays from ``configs/``; the CLI merges the result into these dataclasses,
so a misspelt key or a wrong type is caught before any work starts. Range and name checks live in
:mod:`robustai.config.validate`. Library code never sees these: the CLI turns them into plain
keyword arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class DataConfig:
    name: str = "digits"
    batch_size: int = 128
    eval_batch_size: int = 512
    split_seed: int = 0  # fixes the train/eval split of sets without an official one
    holdout: float = 0.2  # eval fraction for digits, idx and synthetic
    train_size: int | None = None  # optional seeded subset sizes
    eval_size: int | None = None
    root: str = "data"
    download: bool = False
    images: str | None = None  # data=idx: path of the images IDX file (.gz or raw)
    labels: str | None = None  # data=idx: path of the labels IDX file
    num_samples: int = 1024  # data=synthetic only
    input_shape: list[int] = field(default_factory=lambda: [1, 8, 8])  # data=synthetic only
    num_classes: int = 10  # data=synthetic only
    noise: float = 0.3  # data=synthetic only
    eps: float = 0.1  # the customary L-inf threat model for this data set


@dataclass
class ModelConfig:
    name: str = "small_cnn"
    params: dict[str, Any] = field(default_factory=dict)  # extra keyword arguments of the model


@dataclass
class AttackConfig:
    """An attack (``name: none`` trains without one); null fields take the attack's default."""

    name: str = "fgsm"
    eps: float | None = None
    alpha: float | None = None
    steps: int | None = None
    random_start: bool | None = None
    restarts: int | None = None
    norm: str = "linf"
    model_mode: str = "eval"  # the model's mode while the attack runs: eval | train | keep


@dataclass
class WatchdogConfig:
    """Catastrophic-overfitting watchdog (Wong et al. 2020): PGD accuracy on a held-out batch."""

    enabled: bool = True
    samples: int = 256
    steps: int = 10
    max_drop: float = 0.2  # stop when PGD accuracy falls this far below its best


@dataclass
class TrainerConfig:
    objective: str = (
        "adversarial"  # used when an attack is set; attack=none means standard training
    )
    epochs: int = 10
    optimizer: str = "sgd"  # sgd | adam
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    schedule: str = "onecycle"  # constant | onecycle | cyclic
    warmup_fraction: float = 0.3  # share of training spent ramping the LR up (onecycle, cyclic)
    eps_warmup_epochs: float = 0.0  # ramp attack eps linearly from 0 over this many epochs
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    deterministic: bool = False  # torch.use_deterministic_algorithms (slower on GPU)
    progress: bool = True  # a progress bar within an epoch (on a terminal only)
    watchdog: WatchdogConfig = field(default_factory=WatchdogConfig)


@dataclass
class EvaluatorConfig:
    """Clean accuracy, then robust accuracy for every attack at every eps."""

    name: str = "quick"
    eps: list[float] = field(default_factory=lambda: [0.1])
    attacks: list[AttackConfig] = field(default_factory=list)
    samples: int | None = None  # evaluate on the first N eval images (null: all)


@dataclass
class LoggerConfig:
    tensorboard: bool = True
    image_grid: int = 8  # clean | adversarial | perturbation rows in TensorBoard (0: none)


@dataclass
class PathsConfig:
    data_dir: str = "data"
    experiments_dir: str = "experiments"


@dataclass
class TrainConfig:
    name: str = "default"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    evaluator: EvaluatorConfig = field(default_factory=EvaluatorConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
