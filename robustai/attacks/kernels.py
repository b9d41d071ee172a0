"""Faster kernels for the input gradients that attacks take, on CPU.

On CPU, PyTorch computes a convolution's gradient with respect to its input with oneDNN, which is
slow when the convolution has few input channels: for the first layer of an MNIST model (1 input
channel) oneDNN's backward-data takes 2-3x the layer's forward pass, while PyTorch's own im2col +
GEMM kernel (``_slow_conv2d_backward``, the kernel used when oneDNN is switched off) takes half
of it. Training never asks for that gradient (the images do not require grad), but every attack
step does, so it was the largest single cost of an FGSM-RS step beyond a clean one.

:func:`input_grad_kernels` is a context manager for the forward pass of an attack step: inside
it, each ``nn.Conv2d`` of the model with at most :data:`MAX_IN_CHANNELS` input channels, run on
CPU on an input that requires grad, computes its forward as usual but takes its input gradient
with the native kernel. The weights enter that convolution detached, so the block must only ask
for gradients with respect to the input (``torch.autograd.grad(loss, x)``), which is what attacks
do. The result is the same gradient up to float rounding (the sums run in another order). The
swap is per module (an instance attribute, removed after), not a ``TorchFunctionMode``, which
would cost a Python call on every operation of the forward pass (about 0.1 ms for the MNIST CNN).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: convolutions with more input channels keep oneDNN's kernel, which is the faster one there.
MAX_IN_CHANNELS = 4

#: switch the rerouting off (e.g. to compare against the stock kernels); read at each use.
#: Off where this PyTorch build lacks the native kernel (it is an internal ATen operator).
enabled = hasattr(torch.ops.aten, "_slow_conv2d_backward")


class _ConvInputGrad(torch.autograd.Function):
    """conv2d whose backward returns the input gradient only, with the native im2col kernel."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        stride: tuple[int, int],
        padding: tuple[int, int],
    ) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = stride, padding
        return F.conv2d(x, weight, bias, stride, padding)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, None, None, None, None]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        (grad_in, _, _) = torch.ops.aten._slow_conv2d_backward(
            grad_out.contiguous(),
            x,
            weight,
            list(weight.shape[2:]),
            list(ctx.stride),
            list(ctx.padding),
            [True, False, False],
        )
        return grad_in, None, None, None, None


def _eligible(module: nn.Module) -> bool:
    """A plain ``nn.Conv2d`` whose input gradient the native kernel computes faster."""
    return (
        isinstance(module, nn.Conv2d)
        and type(module).forward is nn.Conv2d.forward  # subclasses may compute differently
        and "forward" not in module.__dict__
        and module.in_channels <= MAX_IN_CHANNELS
        and module.groups == 1
        and module.dilation == (1, 1)
        and module.padding_mode == "zeros"
        and not isinstance(module.padding, str)  # e.g. padding="same"
    )


def _conv_forward(module: nn.Conv2d, input: Tensor) -> Tensor:
    """``module``'s forward, through :class:`_ConvInputGrad` where the input needs a gradient."""
    weight = module.weight
    if (
        input.requires_grad
        and input.dim() == 4
        and input.device.type == "cpu"
        and input.dtype in (torch.float32, torch.float64)
        and weight.dtype == input.dtype
        and not torch.is_autocast_enabled("cpu")
    ):
        bias = None if module.bias is None else module.bias.detach()
        stride, padding = module.stride, module.padding
        return _ConvInputGrad.apply(input, weight.detach(), bias, stride, padding)
    return nn.Conv2d.forward(module, input)


@contextmanager
def input_grad_kernels(model: nn.Module) -> Iterator[None]:
    """Within the block, ``model``'s few-channel convolutions take their input gradient with the
    native kernel (see the module docstring); their forward methods are restored after."""
    if not enabled or hasattr(model, "_orig_mod") or torch.compiler.is_compiling():
        yield  # a compiled model would recompile for the swapped forward methods
        return
    first = next(model.parameters(), None)
    if first is None or first.device.type != "cpu":  # the kernels are CPU kernels
        yield
        return
    convs = [m for m in model.modules() if _eligible(m)]
    for conv in convs:
        conv.forward = functools.partial(_conv_forward, conv)
    try:
        yield
    finally:
        for conv in convs:
            del conv.forward
