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
    train_size: int | None = None  # optional seeded, stratified subset sizes
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
    augment: str = "none"  # training batches: none | crop_flip (random crop, padding 4, + flip)


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
    loss: str | None = None  # apgd: ce | dlr
    n_target_classes: int | None = None  # apgd_t: target classes tried per sample
    n_queries: int | None = None  # square: model queries per restart
    p_init: float | None = None  # square: initial fraction of pixels changed per query
    eot_iter: int | None = None  # fgsm, pgd, apgd, apgd_t: passes averaged per gradient (EOT)


@dataclass
class WatchdogConfig:
    """Catastrophic-overfitting watchdog (Wong et al. 2020): PGD accuracy on a held-out batch."""

    enabled: bool = True
    samples: int = 256
    steps: int = 10
    max_drop: float = 0.2  # stop when PGD accuracy falls this far below its best


@dataclass
class TrainerConfig:
    # used when an attack is set (attack=none means standard training): adversarial | free
    objective: str = "adversarial"
    replays: int = 4  # objective=free: minibatch replays m (Shafahi et al. 2019)
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
    amp: bool = False  # bf16 autocast for forward passes (on CUDA; also works on CPU)
    channels_last: bool = False  # NHWC memory format for convolutions (on CUDA)
    compile: bool = False  # torch.compile the model for training and attacks
    # on CUDA, replay the training attack (FGSM, PGD) from CUDA graphs; see evaluator.cuda_graphs
    cuda_graphs: bool = False
    progress: bool = True  # a progress bar within an epoch (on a terminal only)
    threads: int | None = None  # torch CPU threads (null: torch's default, all cores)
    checkpoint_every: int = 1  # epochs between resumable checkpoints (0: none)
    keep_checkpoints: int = 2  # newest checkpoints kept in <run>/checkpoints
    resume: str | None = None  # a run folder to continue (its last complete checkpoint)
    # none | ddp: one process per device under torchrun or submitit (trainer=ddp; README)
    distributed: str = "none"
    backend: str = "auto"  # auto (nccl on GPUs, gloo on CPUs) | nccl | gloo
    watchdog: WatchdogConfig = field(default_factory=WatchdogConfig)


@dataclass
class CurveConfig:
    """Robust accuracy against eps (PNG plot, report, TensorBoard)."""

    enabled: bool = True
    eps: list[float] = field(default_factory=list)  # empty: 0 and 1/4..2x the largest eps
    samples: int | None = 200  # on the first N evaluated images (null: all)


@dataclass
class SanityConfig:
    """Checks that flag an untrustworthy evaluation (masked gradients, weak attacks)."""

    enabled: bool = True
    samples: int = 100  # the checks that attack use the first N evaluated images
    tolerance: float = 0.01  # accuracy differences within this (and one sample) are noise
    large_eps: float = 0.5  # L-inf eps at which accuracy must fall to about chance
    chance_margin: float = 0.1  # accuracy up to chance + this passes at large_eps
    black_box_queries: int = 1000  # Square's queries when the suite has no black-box attack


@dataclass
class EvaluatorConfig:
    """Clean accuracy, then robust accuracy for every attack at every eps."""

    name: str = "quick"
    eps: list[float] = field(default_factory=lambda: [0.1])
    attacks: list[AttackConfig] = field(default_factory=list)
    samples: int | None = None  # evaluate on the first N eval images (null: all)
    strict: bool = False  # a failed sanity check makes the command exit with status 1
    per_class: bool = True  # robust accuracy per class in metrics / the report
    save_examples: bool = False  # adversarial examples + per-sample outcomes (safetensors)
    # per sample, keep the first iterate that fools the model and stop attacking it (PGD);
    # robust accuracy is the same or lower (AutoAttack's counting), the evaluation much faster
    early_stop: bool = True
    # on CUDA, replay FGSM / PGD from a CUDA graph captured per batch shape (same iterates;
    # several times faster for small models); Python code in the model's forward runs once only
    cuda_graphs: bool = False
    # gradient attacks average each gradient over this many forward/backward passes
    # (Expectation over Transformation), for models whose forward pass is randomized
    eot_iter: int = 1
    # seeds the evaluation's random draws (PGD's random starts, noise layers drawing from torch), so
    # the same model and data give the same numbers whatever ran before; null: unseeded
    seed: int | None = 0
    curve: CurveConfig = field(default_factory=CurveConfig)
    sanity: SanityConfig = field(default_factory=SanityConfig)


@dataclass
class PrivacyConfig:
    """``none``, DP-SGD (``dpsgd``), a DP noise mechanism (``laplace``, ``gaussian``) or noise
    augmentation without a DP guarantee (``gaussian_noise``). Each option reads its own keys."""

    name: str = "none"  # none | dpsgd | laplace | gaussian | gaussian_noise
    # dpsgd: give noise_multiplier, or target_epsilon to calibrate it for trainer.epochs
    noise_multiplier: float | None = None
    target_epsilon: float | None = None
    delta: float | None = None  # dpsgd: null means min(1e-5, 1/(10 N)); gaussian: required
    max_grad_norm: float = 1.0  # per-sample gradient clipping norm
    accountant: str = "prv"  # prv | rdp
    max_epsilon: float | None = None  # stop before an epoch would spend more than this
    grad_sample_mode: str = "auto"  # auto (ghost clipping where possible) | ghost | hooks
    fix_model: bool = False  # replace BatchNorm by GroupNorm instead of refusing the model
    noise_seed: int | None = None  # reproducible noise: removes the privacy; tests only
    # laplace | gaussian | gaussian_noise
    where: str = "input"  # input | features | output
    sensitivity: float = 1.0  # L1 (laplace) or L2 (gaussian) distance between any two records
    epsilon: float | None = None  # per record and release (laplace, gaussian)
    sigma: float = 0.1  # gaussian_noise: noise std (no DP guarantee)


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
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    # What a sweeper optimizes: a metrics.json name (clean_acc, worst_case_acc, ...) or a list
    optimized_metric: Any = "worst_case_acc"


@dataclass
class EvaluateConfig:
    """``robustai evaluate``: a saved model against the evaluator's attack suite."""

    name: str = "evaluate"
    checkpoint: str | None = None  # a run folder, or its weights.safetensors / meta.json
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    seed: int = 0  # the evaluation's seed: configs/evaluate.yaml sets evaluator.seed to it
    threads: int | None = None  # torch CPU threads (null: torch's default)
    data: DataConfig = field(default_factory=DataConfig)
    evaluator: EvaluatorConfig = field(default_factory=EvaluatorConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
