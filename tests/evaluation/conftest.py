"""Fixtures of the evaluation tests: a normally trained model on real data (scikit-learn's
8x8 digits), and models whose gradients are masked in known ways."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from robustai.data import DataBundle, build_data
from robustai.models import build_model


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Small models run faster on one thread (no OpenMP hand-off per tiny op), and timings do
    not depend on how busy the other cores are."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def digits() -> DataBundle:
    return build_data("digits")


@pytest.fixture(scope="session")
def digits_model(digits: DataBundle) -> nn.Module:
    """small_cnn trained normally (no attack) for 10 epochs: ~99% clean accuracy, about half of
    it left under PGD at eps=0.1; in eval mode, gradients off."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = build_model(
            "small_cnn", digits.input_shape, digits.num_classes, digits.mean, digits.std
        )
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        for _ in range(10):
            for xb, yb in digits.train:
                opt.zero_grad()
                nn.functional.cross_entropy(model(xb), yb).backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    for p in model.parameters():
        p.requires_grad_(False)
        p.grad = None
    return model.eval()


class QuantizeInput(nn.Module):
    """Rounds the input to ``levels`` grey levels: a non-differentiable layer whose gradient is
    zero almost everywhere (a classic 'defense' that only masks gradients)."""

    def __init__(self, levels: int = 4) -> None:
        super().__init__()
        self.levels = levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x * self.levels) / self.levels


class ScaleLogits(nn.Module):
    """Multiplies the logits by a large factor: same predictions, but the softmax saturates so
    the cross-entropy gradient underflows to exactly zero."""

    def __init__(self, factor: float = 1e4) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


class InputNoise(nn.Module):
    """Adds fresh Gaussian noise to every forward pass: a randomized defense."""

    def __init__(self, sigma: float = 0.1) -> None:
        super().__init__()
        self.sigma = sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.sigma * torch.randn_like(x)


@pytest.fixture(scope="session")
def input_noise() -> type[nn.Module]:
    """The randomized layer, for tests that need another sigma."""
    return InputNoise


@pytest.fixture(scope="session")
def masked_models(digits_model: nn.Module) -> dict[str, nn.Module]:
    return {
        "quantized_input": nn.Sequential(QuantizeInput(), digits_model).eval(),
        "saturated_logits": nn.Sequential(digits_model, ScaleLogits()).eval(),
        "randomized": nn.Sequential(InputNoise(), digits_model).eval(),
    }
