"""Fast Gradient Sign Method and its random-start variant.

FGSM: Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial Examples", ICLR 2015.
FGSM-RS: Wong, Rice & Kolter, "Fast is better than free: Revisiting adversarial training",
ICLR 2020 -- a uniform random start in the eps-ball plus a step of 1.25*eps makes single-step
adversarial training work without catastrophic overfitting at small eps.
"""

from __future__ import annotations

import logging
from typing import ClassVar

import torch
from torch import Tensor, nn

from robustai.attacks.base import Attack

logger = logging.getLogger(__name__)


class FGSM(Attack):
    """One signed-gradient step of size ``alpha`` from x (or a random point), projected onto the
    L-inf eps-ball and [0,1].

    Without a random start the default step is ``eps``, which is exactly torchattacks.FGSM:
    ``clamp(x + eps * sign(grad), 0, 1)``. With ``random_start=True`` (FGSM-RS) the start is
    ``delta ~ U(-eps, eps)`` clipped so that x + delta is in [0,1], and the default step is
    ``1.25 * eps`` (Wong et al. 2020). L-inf only: the sign step is an L-inf construction; use
    ``PGD(norm="l2", steps=1)`` for a single L2 step.
    """

    name: ClassVar[str] = "fgsm"
    supported_norms: ClassVar[tuple[str, ...]] = ("linf",)
    step_size_attrs: ClassVar[tuple[str, ...]] = ("alpha",)

    def __init__(
        self,
        eps: float,
        alpha: float | None = None,
        random_start: bool = False,
        norm: str = "linf",
        model_mode: str = "eval",
    ) -> None:
        if norm == "l2":
            raise ValueError(
                "norm='l2' is not supported by FGSM (a sign step is L-inf only); "
                "use norm='linf', or PGD(norm='l2', steps=1) for a single L2 step"
            )
        super().__init__(eps, norm=norm, model_mode=model_mode)
        self._check_step_size(alpha)
        self.random_start = bool(random_start)
        self._alpha_is_default = alpha is None
        self.alpha = self._default_step_size("alpha", self.eps) if alpha is None else float(alpha)

    def _default_step_size(self, attr: str, eps: float) -> float:
        return 1.25 * eps if self.random_start else eps

    @property
    def label(self) -> str:
        return "fgsm_rs" if self.random_start else "fgsm"

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        if self.random_start:
            delta = torch.empty_like(x).uniform_(-self.eps, self.eps)
            delta = torch.clamp(delta, min=-x, max=1 - x)
            start = x + delta
        else:
            delta = torch.zeros_like(x)
            start = x
        grad = self._input_grad(model, start, y)
        # in place on tensors this call owns; the same float operations as the textbook form
        # clamp(x + clamp(delta + alpha * sign(grad), -eps, eps), 0, 1)
        delta = delta.add_(grad.sign_(), alpha=self.alpha).clamp_(min=-self.eps, max=self.eps)
        return delta.add_(x).clamp_(min=0, max=1)
