"""Training-batch augmentation on in-memory tensors.

torchvision's transforms draw one crop and one flip per call, so applied to a batch they move
every image alike; the standard CIFAR-10 augmentation (a random crop of the image padded by 4
pixels, and a horizontal flip half of the time) needs its own draw per image. It runs on the
batch's device, from torch's global generator, whose state checkpoints hold (resumes repeat it).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

#: ``data.augment`` options: name -> batch transform (None: the batches as they are)
AUGMENTATIONS: dict[str, Callable[[Tensor], Tensor] | None] = {}


def crop_flip(x: Tensor, padding: int = 4) -> Tensor:
    """Per image of ``x`` (N, C, H, W): a random H x W crop of the image zero-padded by
    ``padding`` pixels on each side, flipped left-right with probability 1/2 (as torchvision's
    ``RandomCrop(padding=4)`` and ``RandomHorizontalFlip()`` do per image)."""
    if x.dim() != 4:
        raise ValueError(f"crop_flip needs image batches (N, C, H, W); got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    dev, p = x.device, padding
    padded = F.pad(x, (p, p, p, p))
    dy = torch.randint(0, 2 * p + 1, (n, 1, 1), device=dev)
    dx = torch.randint(0, 2 * p + 1, (n, 1, 1), device=dev)
    flip = torch.rand((n, 1, 1), device=dev) < 0.5
    rows = dy + torch.arange(h, device=dev).view(1, h, 1)
    cols = torch.arange(w, device=dev).view(1, 1, w)
    cols = torch.where(flip, w - 1 - cols, cols) + dx
    index = (rows * (w + 2 * p) + cols).view(n, 1, h * w).expand(n, c, h * w)
    out = padded.flatten(2).gather(2, index).view(n, c, h, w)
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        out = out.contiguous(memory_format=torch.channels_last)
    return out


AUGMENTATIONS.update({"none": None, "crop_flip": crop_flip})
