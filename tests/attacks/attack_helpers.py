"""Data and a short training loop shared by the attack tests (8x8, 10 classes)."""

from __future__ import annotations

import torch
from torch import nn

SHAPE = (1, 8, 8)
N_CLASSES = 10


def make_batch(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic 10-class data: fixed class prototypes plus noise, clipped to [0,1]."""
    protos = torch.rand((N_CLASSES, *SHAPE), generator=torch.Generator().manual_seed(1234))
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, N_CLASSES, (n,), generator=g)
    x = (protos[y] + 0.25 * torch.randn((n, *SHAPE), generator=g)).clamp(0, 1)
    return x, y


def train_briefly(net: nn.Module, steps: int = 60) -> nn.Module:
    """60 Adam steps on make_batch data, parameter grads cleared, eval mode (seed the caller)."""
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    net.train()
    for step in range(steps):
        x, y = make_batch(64, seed=step)
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    for p in net.parameters():
        p.grad = None
    return net.eval()
