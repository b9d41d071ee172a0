"""The model registry: every model is built as ``Normalize -> network`` and takes [0, 1] inputs."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
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
    check_model_params(name, kwargs)
    channels = int(input_shape[0])
    mean = tuple(mean) if mean is not None else (0.0,) * channels
    std = tuple(std) if std is not None else (1.0,) * channels
    if len(mean) != channels:
        raise ValueError(f"normalization has {len(mean)} channels but the input has {channels}")
    net = MODELS[name](input_shape=tuple(input_shape), num_classes=num_classes, **kwargs)
    return nn.Sequential(Normalize(mean, std), net)


def check_model_params(name: str, params: Mapping[str, Any], prefix: str = "") -> None:
    """Each of ``params`` must be a keyword model ``name`` takes, and a layer size a whole number
    >= 1 (a list of them where it takes a list): a width of 0 builds a model that predicts one
    class whatever the input, and -3 or 2.5 would fail inside torch with its words, not ours.

    ``prefix`` names where the values came from in messages (``"model.params."`` in configs).
    """
    signature = inspect.signature(MODELS[name])
    hints = typing.get_type_hints(MODELS[name].__init__)
    valid = [p for p in signature.parameters if p not in ("input_shape", "num_classes")]
    for key, value in params.items():
        where = f"{prefix}{key}"
        if key not in valid:
            raise ValueError(
                f"{where}: model={name} has no such parameter; valid: {', '.join(valid)}"
            )
        tp = hints.get(key)
        if tp is int:
            _layer_size(where, value)
        elif typing.get_origin(tp) in (list, tuple, Sequence):
            # any sequence of sizes (a Hydra ListConfig, a NumPy array, a range), not one size
            # or a text
            if isinstance(value, str | bytes) or not isinstance(value, Iterable):
                raise ValueError(f"{where}={value}: must be a list, e.g. {where}=[{value}]")
            for i, item in enumerate(value):
                _layer_size(f"{where}[{i}]", item)


def _layer_size(where: str, value: object) -> None:
    if not is_integer(value) or value < 1:  # type: ignore[operator]
        raise ValueError(f"{where}={value}: must be a whole number >= 1")
