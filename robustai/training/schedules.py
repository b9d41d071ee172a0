"""Learning-rate schedules, stepped once per optimizer step."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

SCHEDULES = ("constant", "onecycle", "cyclic")


def build_schedule(
    name: str, optimizer: Optimizer, total_steps: int, warmup_fraction: float = 0.3
) -> LRScheduler:
    """``constant``; ``onecycle`` (Smith & Topin 2019, torch's OneCycleLR with the configured LR as
    its peak); ``cyclic``: the triangle of Wong et al. 2020, linear 0 -> lr -> 0, peak at
    ``warmup_fraction`` of training."""
    total_steps = max(1, total_steps)
    if name == "constant":
        return LambdaLR(optimizer, lambda _: 1.0)
    if name == "onecycle":
        peak = [g["lr"] for g in optimizer.param_groups]
        cycle_momentum = "momentum" in optimizer.defaults and optimizer.defaults["momentum"] > 0
        return OneCycleLR(
            optimizer,
            max_lr=peak,
            total_steps=total_steps,
            pct_start=warmup_fraction,
            cycle_momentum=cycle_momentum,
        )
    if name == "cyclic":
        up = max(1, round(total_steps * warmup_fraction))

        def triangle(step: int) -> float:
            if step <= up:
                return step / up
            return max(0.0, (total_steps - step) / max(1, total_steps - up))

        return LambdaLR(optimizer, triangle)
    raise ValueError(f"unknown schedule '{name}'; valid: {', '.join(SCHEDULES)}")
