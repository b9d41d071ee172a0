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

from robustai.argcheck import check_flag
from robustai.attacks.base import Attack, check_eot_iter

logger = logging.getLogger(__name__)


class FGSM(Attack):
    """One signed-gradient step of size ``alpha`` from x (or a random point), projected onto the
    L-inf eps-ball and [0,1].

    Without a random start the default step is ``eps``, which is exactly torchattacks.FGSM:
    ``clamp(x + eps * sign(grad), 0, 1)``. With ``random_start=True`` (FGSM-RS) the start is
    ``clamp(x + U(-eps, eps), 0, 1)`` (see :func:`uniform_noise`), the default step is
    ``1.25 * eps`` (Wong et al. 2020), and the step is taken as torchattacks.FFGSM takes it.
    L-inf only: the sign step is an L-inf construction; use ``PGD(norm="l2", steps=1)`` for a
    single L2 step. ``eot_iter`` > 1 averages the gradient over that many passes (see
    :meth:`Attack.with_eot`).
    """

    name: ClassVar[str] = "fgsm"
    supported_norms: ClassVar[tuple[str, ...]] = ("linf",)
    step_size_attrs: ClassVar[tuple[str, ...]] = ("alpha",)
    supports_cuda_graph: ClassVar[bool] = True
    supports_eot: ClassVar[bool] = True

    def __init__(
        self,
        eps: float,
        alpha: float | None = None,
        random_start: bool = False,
        norm: str = "linf",
        model_mode: str = "eval",
        eot_iter: int = 1,
    ) -> None:
        if norm == "l2":
            raise ValueError(
                "norm='l2' is not supported by FGSM (a sign step is L-inf only); "
                "use norm='linf', or PGD(norm='l2', steps=1) for a single L2 step"
            )
        super().__init__(eps, norm=norm, model_mode=model_mode)
        self._check_step_size(alpha)
        self.random_start = check_flag("random_start", random_start)
        self.eot_iter = check_eot_iter(eot_iter)
        self._alpha_is_default = alpha is None
        self.alpha = self._default_step_size("alpha", self.eps) if alpha is None else float(alpha)

    def _default_step_size(self, attr: str, eps: float) -> float:
        return 1.25 * eps if self.random_start else eps

    @property
    def label(self) -> str:
        return self._eot_suffixed("fgsm_rs" if self.random_start else "fgsm")

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        if not self.random_start:  # a step longer than eps would be clipped back to it
            grad = self._input_grad(model, x, y)
            return x.add(grad.sign_(), alpha=min(self.alpha, self.eps)).clamp_(min=0, max=1)
        start = uniform_noise(x, self.eps).add_(x).clamp_(min=0, max=1)
        grad = self._input_grad(model, start, y)
        # In place on tensors this call owns; the same float operations as torchattacks.FFGSM:
        # clamp(x + clamp(start + alpha * sign(grad) - x, -eps, eps), 0, 1).
        delta = start.add_(grad.sign_(), alpha=self.alpha).sub_(x)
        return delta.clamp_(min=-self.eps, max=self.eps).add_(x).clamp_(min=0, max=1)


def uniform_noise(like: Tensor, eps: float) -> Tensor:
    """Noise drawn uniformly from (-eps, eps), shaped like ``like``: FGSM-RS's random start.

    On CPU, PyTorch draws floats one at a time from a serial Mersenne Twister; for FGSM-RS's one
    draw per batch that was about 5% of a training step of the MNIST CNN. Here one 32-bit draw
    gives two elements of 15 random bits each, so the noise takes 32768 evenly spaced values
    ``-eps + (k + 1/2) * 2 * eps / 32768``: symmetric about 0, on a grid far finer than an 8-bit
    image's 1/255. It costs half of ``uniform_``. Accelerators draw in parallel, so there it is
    plain ``uniform_``. Seeded by the default generator like every other draw.
    """
    if like.device.type != "cpu":
        return torch.empty_like(like).uniform_(-eps, eps)
    n = like.numel()
    # random_() on int32 is uniform on [0, 2**31): both 16-bit halves keep 15 uniform bits
    halves = torch.empty((n + 1) // 2, dtype=torch.int32).random_().view(torch.int16)[:n]
    levels = halves.bitwise_and_(0x7FFF).to(like.dtype)
    return levels.mul_(2 * eps / 32768).add_(eps / 32768 - eps).view(like.shape)
