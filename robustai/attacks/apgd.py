"""Auto-PGD: step-size-free PGD with momentum, untargeted (CE / DLR loss) and targeted (DLR).

Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", ICML 2020 (the attacks behind AutoAttack). The update rules, checkpoint
schedule and defaults follow the authors' reference implementation (github.com/fra31/auto-attack,
``autopgd_base.py``), which ``torchattacks.APGD`` / ``torchattacks.APGDT`` reproduce:

- 100 iterations, 1 restart, initial step size ``2 * eps``, momentum 0.75;
- checkpoints every ``k`` iterations, ``k`` starting at ``0.22 * steps`` and shrinking by
  ``0.03 * steps`` to at least ``0.06 * steps``; at a checkpoint the step size of a sample is
  halved (and the sample restarts from its best point) if fewer than ``rho = 0.75`` of the steps
  since the last checkpoint increased its loss, or if its step size was not halved at the last
  checkpoint and its best loss has not improved since;
- the random start is a point on the boundary of the eps-ball (L-inf: scaled uniform noise;
  L2: scaled Gaussian noise), drawn from a generator seeded with ``seed`` (0, as the reference),
  so an evaluation repeats exactly;
- only samples that are still classified correctly are attacked by each restart / target.

Differences from the reference, none of which changes which samples are counted robust: samples
the attack never fools come back as the highest-loss point found (the reference returns them
unchanged), random numbers come from a private generator instead of reseeding torch's global
one, and no per-iteration host synchronisation is needed. One more changes results, and only
where the reference's are wrong: an L2 step divides the gradient by its norm alone, where the
reference divides by the norm + 1e-12, a step that shrinks to nothing when the cross-entropy
gradient is that small (a model whose logits are merely multiplied by a constant: it kept 0.355
accuracy under APGD-CE L2 at eps 1 where the unscaled model keeps 0.03).

``eot_iter`` > 1 (for randomized defenses; AutoAttack's ``version="rand"`` uses 20) averages each
gradient over that many passes, as the reference's ``eot_iter``. Unlike the reference, no decision
then rests on one draw of the model: every given sample is attacked (not only those one clean
pass classifies correctly), the step-size schedule and the best point follow the loss averaged
over the passes, and each sample comes back at its best point rather than at an iterate one draw
misclassified; restarts keep the point of highest averaged loss.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor, nn

from robustai.argcheck import is_integer, is_real
from robustai.attacks.base import (
    Attack,
    any_training,
    check_eot_iter,
    input_grad,
    l2_direction,
    labels_of,
    per_sample_view,
)
from robustai.attacks.kernels import input_grad_kernels

logger = logging.getLogger(__name__)

LOSSES: tuple[str, ...] = ("ce", "dlr")
#: added to denominators, as in the reference implementation.
_TINY = 1e-12
#: momentum of the update (the paper's alpha); fixed in the reference implementation.
MOMENTUM = 0.75


def dlr_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Difference of Logits Ratio (Croce & Hein 2020, eq. 5), per sample:
    ``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)``; invariant to shifting and scaling the logits,
    so saturated softmax outputs do not hide the gradient."""
    if logits.shape[1] < 3:
        raise ValueError(f"the DLR loss needs at least 3 classes; the model has {logits.shape[1]}")
    z_sorted, ind_sorted = logits.sort(dim=1)
    top_is_y = (ind_sorted[:, -1] == y).to(logits.dtype)
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    z_other = z_sorted[:, -2] * top_is_y + z_sorted[:, -1] * (1.0 - top_is_y)
    return -(z_y - z_other) / (z_sorted[:, -1] - z_sorted[:, -3] + _TINY)


def targeted_dlr_loss(logits: Tensor, y: Tensor, y_target: Tensor) -> Tensor:
    """Targeted DLR (Croce & Hein 2020, eq. 6): ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)``."""
    if logits.shape[1] < 4:
        raise ValueError(
            f"the targeted DLR loss needs at least 4 classes; the model has {logits.shape[1]}"
        )
    z_sorted = logits.sort(dim=1)[0]
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    z_t = logits.gather(1, y_target[:, None]).squeeze(1)
    return -(z_y - z_t) / (z_sorted[:, -1] - 0.5 * z_sorted[:, -3] - 0.5 * z_sorted[:, -4] + _TINY)


def seeded_generator(seed: int | None) -> torch.Generator | None:
    """A CPU generator seeded with ``seed`` (its stream equals torch's global one after
    ``torch.manual_seed(seed)``), or None to use the global generator."""
    return None if seed is None else torch.Generator().manual_seed(int(seed))


def _rand(shape: torch.Size, generator: torch.Generator | None, like: Tensor) -> Tensor:
    """Uniform [0, 1) noise drawn on the CPU in float32 (the reference's stream), moved to
    ``like``."""
    return torch.rand(shape, generator=generator).to(device=like.device, dtype=like.dtype)


def _randn(shape: torch.Size, generator: torch.Generator | None, like: Tensor) -> Tensor:
    return torch.randn(shape, generator=generator).to(device=like.device, dtype=like.dtype)


def _l2(t: Tensor) -> Tensor:
    """Per-sample L2 norm, shaped to broadcast against ``t``."""
    return per_sample_view(t.reshape(t.shape[0], -1).norm(p=2, dim=1), t)


class APGD(Attack):
    """Auto-PGD (Croce & Hein 2020), untargeted, with the cross-entropy (``loss="ce"``) or the
    Difference-of-Logits-Ratio (``loss="dlr"``) loss; L-inf and L2.

    Defaults are the paper's and AutoAttack's: ``steps=100``, ``restarts=1``, ``rho=0.75``,
    ``seed=0``. APGD needs no step size: it starts at ``2 * eps`` and halves it per sample at
    checkpoints (see the module docstring). Samples fooled at any iteration are returned at the
    iterate that fooled them; the others at their highest-loss iterate. ``eot_iter`` > 1 averages
    each gradient (and the loss) over that many passes of a randomized model; then every sample
    is attacked and returned at its highest-loss iterate (see the module docstring).
    """

    name: ClassVar[str] = "apgd"
    supports_eot: ClassVar[bool] = True

    def __init__(
        self,
        eps: float,
        norm: str = "linf",
        steps: int = 100,
        restarts: int = 1,
        loss: str = "ce",
        rho: float = 0.75,
        seed: int | None = 0,
        model_mode: str = "eval",
        eot_iter: int = 1,
    ) -> None:
        super().__init__(eps, norm=norm, model_mode=model_mode)
        self.eot_iter = check_eot_iter(eot_iter)
        if not is_integer(steps) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1; got {steps!r}")
        if not is_integer(restarts) or restarts < 1:
            raise ValueError(f"restarts must be an integer >= 1; got {restarts!r}")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}; got {loss!r}")
        if not is_real(rho) or not 0.0 < rho <= 1.0:
            raise ValueError(f"rho must be a number in (0, 1]; got {rho!r}")
        if seed is not None and not (is_integer(seed) and 0 <= seed < 2**64):
            # torch's generators take [0, 2**64): a larger one failed at the first attack
            raise ValueError(f"seed must be an integer in [0, 2**64) or None; got {seed!r}")
        self.steps = int(steps)
        self.restarts = int(restarts)
        self.loss = loss
        self.rho = float(rho)
        self.seed = None if seed is None else int(seed)

    @property
    def label(self) -> str:
        return self._suffixed(f"apgd_{self.loss}")

    @property
    def min_classes(self) -> int:
        """Classes the model must have: the DLR loss compares the three largest logits."""
        return 3 if self.loss == "dlr" else 2

    def _suffixed(self, label: str) -> str:
        if self.norm == "l2":
            label += "_l2"
        if self.restarts > 1:
            label += f"_r{self.restarts}"
        return self._eot_suffixed(label)

    # ------------------------------------------------------------------ attack
    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        generator = seeded_generator(self.seed)
        robust = self._clean_robust(model, x, y)
        adv = x.clone()
        best_loss = torch.full((x.shape[0],), -float("inf"), dtype=x.dtype, device=x.device)
        for _ in range(self.restarts):
            self._restart(model, x, y, robust, adv, best_loss, generator, target_rank=None)
            if not bool(robust.any()):
                break
        return adv

    def _restart(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        robust: Tensor,
        adv: Tensor,
        best_loss: Tensor,
        generator: torch.Generator | None,
        target_rank: int | None,
    ) -> None:
        """One run on the samples still classified correctly; updates ``robust``, ``adv`` and
        ``best_loss`` in place. Where a module trains during the attack (batch statistics), the
        run takes the whole batch and only those samples' results are kept: the samples left
        could be one, which a norm layer over batch statistics cannot take."""
        idx = robust.nonzero(as_tuple=True)[0]
        if idx.numel() == 0:
            return
        if any_training(model) and idx.numel() < x.shape[0]:
            x_best, fooled, loss_best, x_fooled = self._single_run(
                model, x, y, generator, target_rank
            )
            x_best, fooled, loss_best, x_fooled = (
                t[idx] for t in (x_best, fooled, loss_best, x_fooled)
            )
        else:
            x_best, fooled, loss_best, x_fooled = self._single_run(
                model, x[idx], y[idx], generator, target_rank
            )
        robust[idx[fooled]] = False
        adv[idx[fooled]] = x_fooled[fooled]
        better = ~fooled & (loss_best > best_loss[idx])
        adv[idx[better]] = x_best[better]
        best_loss[idx[better]] = loss_best[better]

    def _criterion(
        self, target_rank: int | None, logits_clean: Tensor | None
    ) -> Callable[[Tensor, Tensor], Tensor]:
        if target_rank is not None:
            assert logits_clean is not None
            y_target = logits_clean.sort(dim=1)[1][:, -target_rank]
            return lambda logits, y: targeted_dlr_loss(logits, y, y_target)
        if self.loss == "dlr":
            return dlr_loss
        return lambda logits, y: nn.functional.cross_entropy(logits, y, reduction="none")

    def _single_run(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        generator: torch.Generator | None,
        target_rank: int | None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One APGD run from a random start: (highest-loss point, fooled mask, its loss,
        the point that fooled each fooled sample)."""
        b = x.shape[0]
        steps = self.steps
        k = max(int(0.22 * steps), 1)
        k_min = max(int(0.06 * steps), 1)
        k_decr = max(int(0.03 * steps), 1)
        eps = self.eps

        if self.norm == "linf":
            t = 2 * _rand(x.shape, generator, x) - 1
            x_adv = x + eps * t / per_sample_view(t.reshape(b, -1).abs().max(dim=1)[0], t)
        else:
            t = _randn(x.shape, generator, x)
            x_adv = x + eps * t / (_l2(t) + _TINY)
        x_adv = x_adv.clamp(0.0, 1.0)

        logits_clean = None
        if target_rank is not None:
            with torch.no_grad():
                logits_clean = model(x)
        criterion = self._criterion(target_rank, logits_clean)

        def loss_and_grad(point: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            point = point.detach().requires_grad_(True)
            grad = torch.zeros_like(point)
            loss = torch.zeros(point.shape[0], dtype=point.dtype, device=point.device)
            for _ in range(self.eot_iter):
                with input_grad_kernels(model):
                    logits = model(point)
                loss_indiv = criterion(logits, y)
                grad += input_grad(loss_indiv.sum(), point)
                loss += loss_indiv.detach()
            if self.eot_iter > 1:
                grad /= self.eot_iter
                loss /= self.eot_iter
            return logits.detach(), loss, grad.detach()

        logits, loss_indiv, grad = loss_and_grad(x_adv)
        x_best = x_adv.clone()
        x_fooled = x_adv.clone()
        grad_best = grad.clone()
        robust = labels_of(logits) == y
        loss_best = loss_indiv.clone()
        loss_steps = torch.zeros((steps, b), dtype=loss_indiv.dtype, device=x.device)

        step_size = torch.full(
            (b, *([1] * (x.dim() - 1))), 2.0 * eps, dtype=x.dtype, device=x.device
        )
        x_adv_old = x_adv.clone()
        since_check = 0
        loss_best_last_check = loss_best.clone()
        reduced_last_check = torch.ones(b, dtype=torch.bool, device=x.device)

        for i in range(steps):
            with torch.no_grad():
                grad2 = x_adv - x_adv_old
                x_adv_old = x_adv
                a = MOMENTUM if i > 0 else 1.0
                x_adv = self._step(x, x_adv, grad, grad2, step_size, a)

            logits, loss_indiv, grad = loss_and_grad(x_adv)
            with torch.no_grad():
                pred = labels_of(logits) == y
                robust &= pred
                x_fooled = torch.where(per_sample_view(~pred, x), x_adv, x_fooled)
                loss_steps[i] = loss_indiv
                improved = loss_indiv > loss_best
                x_best = torch.where(per_sample_view(improved, x), x_adv, x_best)
                grad_best = torch.where(per_sample_view(improved, x), grad, grad_best)
                loss_best = torch.where(improved, loss_indiv, loss_best)

                since_check += 1
                if since_check == k:
                    # Count loss increases over the last k steps. As in the reference code the
                    # first checkpoint's oldest comparison reads row -1 (not yet written).
                    rows = i - torch.arange(k, device=x.device)
                    increases = (loss_steps[rows] > loss_steps[rows - 1]).sum(dim=0)
                    oscillating = increases <= k * self.rho
                    stalled = ~reduced_last_check & (loss_best_last_check >= loss_best)
                    reduce = oscillating | stalled
                    reduced_last_check = reduce
                    loss_best_last_check = loss_best.clone()
                    mask = per_sample_view(reduce, x)
                    step_size = torch.where(mask, step_size / 2.0, step_size)
                    x_adv = torch.where(mask, x_best, x_adv)
                    grad = torch.where(mask, grad_best, grad)
                    since_check = 0
                    k = max(k - k_decr, k_min)

        if self.eot_iter > 1:  # no sample counts as fooled by one draw: the best point for all
            return x_best, torch.zeros_like(robust), loss_best, x_fooled
        return x_best, ~robust, loss_best, x_fooled

    def _clean_robust(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """The samples to attack: those classified correctly. With EOT all of them: one draw of
        a randomized model that misclassifies a clean input does not make it adversarial."""
        if self.eot_iter > 1:
            return torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        with torch.no_grad():
            return labels_of(model(x)) == y

    def _step(
        self, x: Tensor, x_adv: Tensor, grad: Tensor, grad2: Tensor, step_size: Tensor, a: float
    ) -> Tensor:
        """Gradient step, projection, then momentum (Croce & Hein 2020, eq. 2), projected again."""
        eps = self.eps
        if self.norm == "linf":
            z = x_adv + step_size * grad.sign()
            z = torch.min(torch.max(z, x - eps), x + eps).clamp(0.0, 1.0)
            z = x_adv + (z - x_adv) * a + grad2 * (1 - a)
            return torch.min(torch.max(z, x - eps), x + eps).clamp(0.0, 1.0)
        # grad / ||grad|| (the reference adds 1e-12 to the norm, which shrinks the step where the
        # gradient is tiny, e.g. for a model with scaled-up logits)
        z = x_adv + step_size * l2_direction(grad)
        d = z - x
        n = _l2(d)
        z = (x + d / (n + _TINY) * torch.clamp(n, max=eps)).clamp(0.0, 1.0)
        z = x_adv + (z - x_adv) * a + grad2 * (1 - a)
        d = z - x
        n = _l2(d)
        return (x + d / (n + _TINY) * torch.clamp(n + _TINY, max=eps)).clamp(0.0, 1.0)


class APGDT(APGD):
    """Targeted APGD with the targeted DLR loss (APGD-T, Croce & Hein 2020), as in AutoAttack's
    standard suite: one run per target class, the targets being the ``n_target_classes`` (9)
    classes with the highest clean logits after the true one; a sample counts as fooled if any
    target's run misclassifies it. Needs at least 4 classes.
    """

    name: ClassVar[str] = "apgd_t"

    def __init__(
        self,
        eps: float,
        norm: str = "linf",
        steps: int = 100,
        restarts: int = 1,
        n_target_classes: int = 9,
        rho: float = 0.75,
        seed: int | None = 0,
        model_mode: str = "eval",
        eot_iter: int = 1,
    ) -> None:
        super().__init__(
            eps,
            norm=norm,
            steps=steps,
            restarts=restarts,
            loss="dlr",
            rho=rho,
            seed=seed,
            model_mode=model_mode,
            eot_iter=eot_iter,
        )
        if not is_integer(n_target_classes) or n_target_classes < 1:
            raise ValueError(f"n_target_classes must be an integer >= 1; got {n_target_classes!r}")
        self.n_target_classes = int(n_target_classes)

    @property
    def label(self) -> str:
        return self._suffixed("apgd_t")

    @property
    def min_classes(self) -> int:
        """The targeted DLR loss compares the four largest logits."""
        return 4

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        generator = seeded_generator(self.seed)
        with torch.no_grad():
            logits = model(x)
        n_targets = min(self.n_target_classes, logits.shape[1] - 1)
        robust = self._clean_robust(model, x, y) if self.eot_iter > 1 else labels_of(logits) == y
        adv = x.clone()
        best_loss = torch.full((x.shape[0],), -float("inf"), dtype=x.dtype, device=x.device)
        for target_rank in range(2, n_targets + 2):
            for _ in range(self.restarts):
                self._restart(model, x, y, robust, adv, best_loss, generator, target_rank)
            if not bool(robust.any()):
                break
        return adv
