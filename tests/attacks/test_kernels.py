"""The input-gradient kernels of attacks: same gradient as PyTorch's stock kernels, and the
parameters are left alone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustai.attacks import kernels
from robustai.attacks.kernels import input_grad_kernels


def _grads(conv: nn.Module, x: torch.Tensor, rerouted: bool) -> tuple[torch.Tensor, str]:
    x = x.clone().requires_grad_(True)
    if rerouted:
        with input_grad_kernels(conv):
            out = conv(x)
    else:
        out = conv(x)
    (g,) = torch.autograd.grad(out.square().sum(), x)
    return g, type(out.grad_fn).__name__


@pytest.mark.parametrize(
    ("channels", "kernel", "stride", "padding", "size"),
    [(1, 4, 2, 1, 28), (3, 3, 1, 1, 16), (1, 3, 1, 0, 9), (2, 5, 3, 2, 13)],
)
def test_same_input_gradient_as_stock_kernels(
    channels: int, kernel: int, stride: int, padding: int, size: int
) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(channels, 8, kernel, stride=stride, padding=padding)
    x = torch.rand(5, channels, size, size)
    stock, _ = _grads(conv, x, rerouted=False)
    fast, node = _grads(conv, x, rerouted=True)
    assert node == "_ConvInputGradBackward"
    torch.testing.assert_close(fast, stock, rtol=1e-5, atol=1e-6)
    assert all(p.grad is None for p in conv.parameters())


@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv2d(8, 4, 3),  # many input channels: oneDNN is the faster kernel there
        nn.Conv2d(2, 4, 3, dilation=2),
        nn.Conv2d(2, 4, 3, groups=2),
        nn.Conv2d(1, 4, 3, padding="same"),
    ],
)
def test_other_convolutions_keep_the_stock_kernels(conv: nn.Module) -> None:
    x = torch.rand(2, conv.in_channels, 10, 10)
    _, node = _grads(conv, x, rerouted=True)
    assert node == "ConvolutionBackward0"


def test_off_switch_no_grad_inputs_and_restored_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    conv = nn.Conv2d(1, 4, 3)
    model = nn.Sequential(nn.Identity(), conv)
    x = torch.rand(2, 1, 10, 10)
    with input_grad_kernels(model):
        assert "forward" in conv.__dict__
        out = model(x)  # an input that needs no gradient: the stock forward
        assert out.grad_fn is not None and out.grad_fn.name() == "ConvolutionBackward0"
    assert "forward" not in conv.__dict__
    monkeypatch.setattr(kernels, "enabled", False)
    _, node = _grads(conv, x, rerouted=True)
    assert node == "ConvolutionBackward0"


def test_forward_restored_when_the_block_raises() -> None:
    conv = nn.Conv2d(1, 4, 3)
    with pytest.raises(RuntimeError), input_grad_kernels(conv):
        conv(torch.rand(2, 3, 10, 10))  # wrong channel count
    assert "forward" not in conv.__dict__


def test_models_off_the_cpu_are_left_alone() -> None:
    """The kernels are CPU kernels: on another device no forward method is swapped."""
    conv = nn.Conv2d(1, 4, 3).to("meta")
    with input_grad_kernels(conv):
        assert "forward" not in conv.__dict__
    cpu = nn.Conv2d(1, 4, 3)  # the control: on CPU it is swapped
    with input_grad_kernels(cpu):
        assert "forward" in cpu.__dict__
