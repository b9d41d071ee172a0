"""The model registry: every model is built as ``Normalize -> network`` and takes [0, 1] inputs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from robustai.argcheck import is_integer
from robustai.models.mlp import MLP
from robustai.models.normalize import Normalize
from robustai.models.preact_resnet import PreActResNet18
from robustai.models.small_cnn import SmallCNN

MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP,
    "small_cnn": SmallCNN,
    "preact_resnet18": PreActResNet18,
}


def model_names() -> list[str]:
    return list(MODELS)


def build_model(
    name: str,
    input_shape: Sequence[int],
    num_classes: int,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    **kwargs: Any,
) -> nn.Sequential:
    """``nn.Sequential(Normalize(mean, std), network)``; mean/std default to 0 and 1 per channel."""
    if name not in MODELS:
        raise ValueError(f"unknown model '{name}'; valid: {', '.join(MODELS)}")
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(is_integer(v) and v >= 1 for v in shape):
        raise ValueError(
            f"input_shape must be (channels, height, width) of whole numbers >= 1, e.g. (1, 28,"
            f" 28); got {shape} (for vectors of n features, (1, 1, n))"
        )
    if not is_integer(num_classes) or num_classes < 2:
        raise ValueError(f"num_classes must be a whole number >= 2; got {num_classes!r}")
    channels = int(input_shape[0])
    mean = tuple(mean) if mean is not None else (0.0,) * channels
    std = tuple(std) if std is not None else (1.0,) * channels
    if len(mean) != channels:
        raise ValueError(f"normalization has {len(mean)} channels but the input has {channels}")
    net = MODELS[name](input_shape=tuple(input_shape), num_classes=num_classes, **kwargs)
    return nn.Sequential(Normalize(mean, std), net)
