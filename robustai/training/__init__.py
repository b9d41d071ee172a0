"""The training loop, its objectives, schedules and callbacks."""

from robustai.training.callbacks import EpochAccuracy, WatchdogCallback
from robustai.training.objectives import AdversarialObjective, Objective, StandardObjective
from robustai.training.schedules import SCHEDULES, build_schedule
from robustai.training.trainer import Callback, EpochStats, FitResult, Trainer
from robustai.training.watchdog import CatastrophicOverfittingWatchdog

__all__ = [
    "SCHEDULES",
    "AdversarialObjective",
    "Callback",
    "CatastrophicOverfittingWatchdog",
    "EpochAccuracy",
    "EpochStats",
    "FitResult",
    "Objective",
    "StandardObjective",
    "Trainer",
    "WatchdogCallback",
    "build_schedule",
]
