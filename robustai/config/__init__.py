"""Config schemas and validation; only the CLI layer uses these."""

from robustai.config.schema import (
    AttackConfig,
    DataConfig,
    EvaluateConfig,
    EvaluatorConfig,
    LoggerConfig,
    ModelConfig,
    PathsConfig,
    TrainConfig,
    TrainerConfig,
    WatchdogConfig,
)
from robustai.config.validate import (
    parse_fraction,
    to_evaluate_config,
    to_train_config,
    validate,
    validate_evaluate,
)

__all__ = [
    "AttackConfig",
    "DataConfig",
    "EvaluateConfig",
    "EvaluatorConfig",
    "LoggerConfig",
    "ModelConfig",
    "PathsConfig",
    "TrainConfig",
    "TrainerConfig",
    "WatchdogConfig",
    "parse_fraction",
    "to_evaluate_config",
    "to_train_config",
    "validate",
    "validate_evaluate",
]
