"""Faster kernels for the input gradients that attacks take, on CPU.

On CPU, PyTorch computes a convolution's gradient with respect to its input with oneDNN, which is
slow when the convolution has few input channels: for the first layer of an MNIST model (1 input
channel) oneDNN's backward-data takes 2-3x the layer's forward pass, while PyTorch's own im2col +
GEMM kernel (``_slow_conv2d_backward``, the kernel used when oneDNN is switched off) takes half
of it. Training never asks for that gradient (the images do not require grad), but every attack
step does, so it was the largest single cost of an FGSM-RS step beyond a clean one.

:func:`input_grad_kernels` is a context manager for the forward pass of an attack step: inside
it, a 2-d convolution on CPU whose input requires grad and that has at most
:data:`MAX_IN_CHANNELS` input channels runs its forward as usual but takes its input gradient with
the native kernel. The weights enter that convolution detached, so the block must only ask for
gradients with respect to the input (``torch.autograd.grad(loss, x)``), which is what attacks do.
The result is the same gradient up to float rounding (the sums run in another order).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

#: convolutions with more input channels keep oneDNN's kernel, which is the faster one there.
MAX_IN_CHANNELS = 4

#: switch the rerouting off (e.g. to compare against the stock kernels); read at each use.
enabled = True


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


def _pair(v: Any) -> tuple[int, int] | None:
    if isinstance(v, int):
        return (v, v)
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(i, int) for i in v):
        return (int(v[0]), int(v[1]))
    return None


def _rerouted_conv2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
) -> Tensor | None:
    """The conv through :class:`_ConvInputGrad`, or None where the stock kernels should run."""
    stride_, padding_, dilation_ = _pair(stride), _pair(padding), _pair(dilation)
    if (
        stride_ is None
        or padding_ is None  # e.g. padding="same"
        or dilation_ != (1, 1)
        or groups != 1
        or input.dim() != 4
        or input.device.type != "cpu"
        or not input.requires_grad
        or weight.shape[1] > MAX_IN_CHANNELS
        or input.dtype not in (torch.float32, torch.float64)
        or weight.dtype != input.dtype
        or torch.is_autocast_enabled("cpu")
    ):
        return None
    b = None if bias is None else bias.detach()
    return _ConvInputGrad.apply(input, weight.detach(), b, stride_, padding_)


class _InputGradMode(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        if func is F.conv2d:
            out = _rerouted_conv2d(*args, **kwargs)
            if out is not None:
                return out
        return func(*args, **kwargs)


@contextmanager
def input_grad_kernels() -> Iterator[None]:
    """Reroute few-channel CPU convolutions to the faster input-gradient kernel (see module)."""
    if not enabled or torch.compiler.is_compiling():
        yield
        return
    with _InputGradMode():
        yield
