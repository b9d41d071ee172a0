"""Input-shape checks for models whose layers are sized for one image size."""

from __future__ import annotations

from torch import Tensor


def check_input_shape(x: Tensor, shape: tuple[int, ...], name: str) -> None:
    """A linear layer sized for one image size: say so, not 'mat1 and mat2 ... cannot be ...'."""
    if tuple(x.shape[-3:]) != shape:
        raise ValueError(
            f"{name} was built for (N, {', '.join(map(str, shape))}) inputs; got {tuple(x.shape)}"
        )
