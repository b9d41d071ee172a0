"""Learning-rate schedules, stepped once per optimizer step."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

from robustai.argcheck import is_integer, is_real

SCHEDULES = ("constant", "onecycle", "cyclic")


def build_schedule(
    name: str, optimizer: Optimizer, total_steps: int, warmup_fraction: float = 0.3
) -> LRScheduler:
    """``constant``; ``onecycle`` (Smith & Topin 2019, torch's OneCycleLR with the configured LR as
    its peak, reached at ``warmup_fraction`` of training; the optimizer keeps its own momentum,
    which OneCycleLR would otherwise cycle between 0.85 and 0.95 whatever was configured);
    ``cyclic``: the triangle of Wong et al. 2020, linear 0 -> lr -> 0, peak at
    ``warmup_fraction`` of training.

    ``total_steps`` counts optimizer steps: ``epochs * len(loader)``, times the replays of free
    training. The cyclic schedule keeps it as ``total_steps`` (OneCycleLR has its own), so the
    :class:`~robustai.training.Trainer` can warn when the run is longer."""
    # Checked here: a warm-up fraction of 1 divided by zero at the last step inside torch, one
    # above 1 never reached the peak; a fractional total turned off the Trainer's warning.
    if not is_integer(total_steps) or total_steps < 0:
        raise ValueError(
            f"total_steps must be a whole number of optimizer steps >= 0; got {total_steps!r}"
        )
    if not is_real(warmup_fraction) or not 0 < warmup_fraction < 1:
        raise ValueError(f"warmup_fraction must be a number in (0, 1); got {warmup_fraction!r}")
    total_steps = max(1, total_steps)  # no step at all (an empty loader) still builds
    if name == "constant":
        return LambdaLR(optimizer, lambda _: 1.0)
    if name == "onecycle":
        peak = [g["lr"] for g in optimizer.param_groups]
        pct_start = warmup_fraction
        if float(pct_start * total_steps) - 1 == 0:
            # OneCycleLR's warm-up then ends at step 0 and it divides by its length (zero):
            # a warm-up of one step is the peak itself, which a hair less also gives.
            pct_start *= 1 - 1e-9
        return OneCycleLR(
            optimizer,
            max_lr=peak,
            total_steps=total_steps,
            pct_start=pct_start,
            cycle_momentum=False,
        )
    if name == "cyclic":
        up = max(1, round(total_steps * warmup_fraction))

        def triangle(step: int) -> float:
            if step <= up:
                return step / up
            return max(0.0, (total_steps - step) / max(1, total_steps - up))

        scheduler = LambdaLR(optimizer, triangle)
        scheduler.total_steps = total_steps  # type: ignore[attr-defined]
        return scheduler
    raise ValueError(f"unknown schedule '{name}'; valid: {', '.join(SCHEDULES)}")
