"""The small MNIST CNN of Wong, Rice & Kolter (2020), "Fast is better than free"."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from robustai.models.shapes import check_input_shape


class SmallCNN(nn.Module):
    """conv 16 4x4 stride 2 -> conv 32 4x4 stride 2 -> fc 100 -> fc classes, ReLU between.

    Padding 1 as in the paper's code, so 28x28 inputs become 7x7 (and 8x8 digits 2x2).
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int, hidden: int = 100) -> None:
        super().__init__()
        c, h, w = (int(v) for v in input_shape)
        self.input_shape = (c, h, w)
        out_h, out_w = _after_two_convs(h), _after_two_convs(w)
        if out_h < 1 or out_w < 1:
            raise ValueError(f"small_cnn needs inputs of at least 4x4 pixels, got {h}x{w}")
        self.features = nn.Sequential(
            nn.Conv2d(c, 16, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(32 * out_h * out_w, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        check_input_shape(x, self.input_shape, "small_cnn")
        return self.classifier(self.features(x))


def _after_two_convs(n: int) -> int:
    for _ in range(2):
        n = (n + 2 - 4) // 2 + 1
    return n
