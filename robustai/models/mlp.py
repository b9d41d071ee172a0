"""A multi-layer perceptron on flattened images."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from robustai.models.shapes import check_input_shape


class MLP(nn.Module):
    def __init__(
        self, input_shape: Sequence[int], num_classes: int, hidden: Sequence[int] = (256, 256)
    ) -> None:
        super().__init__()
        dims = [int(c) for c in input_shape]
        self.input_shape = tuple(dims)
        width = dims[0] * dims[1] * dims[2]
        layers: list[nn.Module] = [nn.Flatten()]
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        check_input_shape(x, self.input_shape, "mlp")
        return self.net(x)
