"""Config schemas and validation; only the CLI layer uses these."""

from robustai.config.schema import (
    AttackConfig,
    DataConfig,
    EvaluatorConfig,
    LoggerConfig,
    ModelConfig,
    PathsConfig,
    TrainConfig,
    TrainerConfig,
    WatchdogConfig,
)
from robustai.config.validate import parse_fraction, to_train_config, validate

__all__ = [
    "AttackConfig",
    "DataConfig",
    "EvaluatorConfig",
    "LoggerConfig",
    "ModelConfig",
    "PathsConfig",
    "TrainConfig",
    "TrainerConfig",
    "WatchdogConfig",
    "parse_fraction",
    "to_train_config",
    "validate",
]
