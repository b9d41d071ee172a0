"""The training loop, its objectives, schedules and callbacks."""

from robustai.training.callbacks import (
    CheckpointCallback,
    EpochAccuracy,
    GatherRankStatesCallback,
    WatchdogCallback,
)
from robustai.training.checkpoint import (
    CHECKPOINT_DIR,
    RankLocalState,
    RNGState,
    list_checkpoints,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from robustai.training.objectives import (
    AdversarialObjective,
    AutocastObjective,
    FreeAdversarialObjective,
    Objective,
    StandardObjective,
)
from robustai.training.schedules import SCHEDULES, build_schedule
from robustai.training.signals import StopRequest, stop_on_signals
from robustai.training.trainer import (
    Callback,
    EpochStats,
    FitResult,
    Trainer,
    TrainingDiverged,
    TrainingInterrupted,
)
from robustai.training.watchdog import CatastrophicOverfittingWatchdog

__all__ = [
    "CHECKPOINT_DIR",
    "SCHEDULES",
    "AdversarialObjective",
    "AutocastObjective",
    "Callback",
    "CatastrophicOverfittingWatchdog",
    "CheckpointCallback",
    "EpochAccuracy",
    "EpochStats",
    "FitResult",
    "FreeAdversarialObjective",
    "GatherRankStatesCallback",
    "Objective",
    "RNGState",
    "RankLocalState",
    "StandardObjective",
    "StopRequest",
    "Trainer",
    "TrainingDiverged",
    "TrainingInterrupted",
    "WatchdogCallback",
    "build_schedule",
    "list_checkpoints",
    "load_checkpoint",
    "read_checkpoint",
    "save_checkpoint",
    "stop_on_signals",
]
