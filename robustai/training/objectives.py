"""Training objectives: what loss a batch contributes. The training loop stays the same for all."""

from __future__ import annotations

from typing import Protocol

import torch.nn.functional as F
from torch import Tensor, nn

from robustai.attacks import Attack


class Objective(Protocol):
    """Maps a batch to (loss to minimise, logits of the inputs the model was trained on)."""

    adversarial: bool

    def __call__(
        self, model: nn.Module, x: Tensor, y: Tensor, progress: float
    ) -> tuple[Tensor, Tensor]:
        """``progress`` is the fractional epoch (e.g. 2.5 halfway through the third epoch)."""
        ...


class StandardObjective:
    """Cross-entropy on clean inputs."""

    adversarial = False

    def __call__(
        self, model: nn.Module, x: Tensor, y: Tensor, progress: float
    ) -> tuple[Tensor, Tensor]:
        logits = model(x)
        return F.cross_entropy(logits, y), logits


class AdversarialObjective:
    """Cross-entropy on adversarial inputs only (Madry et al. 2018; Wong et al. 2020 for FGSM-RS).

    ``eps_warmup_epochs`` ramps eps (and the attack's step size with it) linearly from 0, which
    stabilises early training on hard threat models.
    """

    adversarial = True

    def __init__(self, attack: Attack, eps_warmup_epochs: float = 0.0) -> None:
        self.attack = attack
        self.eps_warmup_epochs = eps_warmup_epochs

    def attack_at(self, progress: float) -> Attack:
        if self.eps_warmup_epochs <= 0 or progress >= self.eps_warmup_epochs:
            return self.attack
        return self.attack.with_eps(self.attack.eps * progress / self.eps_warmup_epochs)

    def __call__(
        self, model: nn.Module, x: Tensor, y: Tensor, progress: float
    ) -> tuple[Tensor, Tensor]:
        x_adv = self.attack_at(progress)(model, x, y)
        logits = model(x_adv)
        return F.cross_entropy(logits, y), logits
