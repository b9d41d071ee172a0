"""Clean and robust accuracy, batched."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustai.attacks import Attack


@torch.inference_mode()
def _correct(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    return model(x).argmax(dim=1) == y


def predict_correct(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 512) -> Tensor:
    """Boolean per sample: is the model right on the clean input? (eval mode, restored after)."""
    was_training = model.training
    model.eval()
    try:
        return torch.cat(
            [
                _correct(model, x[i : i + batch_size], y[i : i + batch_size])
                for i in range(0, len(x), batch_size)
            ]
        )
    finally:
        model.train(was_training)


def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 512) -> float:
    return (
        float(predict_correct(model, x, y, batch_size).float().mean()) if len(x) else float("nan")
    )


def robust_correct(
    model: nn.Module, attack: Attack, x: Tensor, y: Tensor, batch_size: int = 512
) -> Tensor:
    """Boolean per sample: does the model stay right on the attacked input? (eval mode)."""
    was_training = model.training
    model.eval()
    try:
        out = []
        for i in range(0, len(x), batch_size):
            xb, yb = x[i : i + batch_size], y[i : i + batch_size]
            x_adv = attack(model, xb, yb)
            # A sample counts as robust only if it is right both clean and attacked.
            out.append(_correct(model, xb, yb) & _correct(model, x_adv, yb))
        return torch.cat(out)
    finally:
        model.train(was_training)


def robust_accuracy(
    model: nn.Module, attack: Attack, x: Tensor, y: Tensor, batch_size: int = 512
) -> float:
    return (
        float(robust_correct(model, attack, x, y, batch_size).float().mean())
        if len(x)
        else float("nan")
    )
