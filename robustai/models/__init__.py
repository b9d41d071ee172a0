"""Models: a registry of networks, each with input normalization as its first layer."""

from robustai.models.artifact import load_model, read_meta, save_model
from robustai.models.normalize import Normalize
from robustai.models.registry import MODELS, build_model, check_model_params, model_names

__all__ = [
    "MODELS",
    "Normalize",
    "build_model",
    "check_model_params",
    "load_model",
    "model_names",
    "read_meta",
    "save_model",
]
