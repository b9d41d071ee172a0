"""Projected Gradient Descent (L-inf and L2) with random restarts.

Madry, Makelov, Schmidt, Tsipras & Vladu, "Towards Deep Learning Models Resistant to
Adversarial Attacks", ICLR 2018. The update rules follow torchattacks.PGD (L-inf) and
torchattacks.PGDL2 (L2) step for step, so results can be checked against them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor, nn

from robustai.argcheck import is_integer
from robustai.attacks.base import (
    Attack,
    any_training,
    check_eot_iter,
    check_flag,
    l2_direction,
    labels_of,
    per_sample_view,
)

logger = logging.getLogger(__name__)


class PGD(Attack):
    """Iterated gradient steps of size ``alpha``, each projected onto the eps-ball and [0,1].

    - ``norm="linf"``: sign steps; delta clipped to [-eps, eps] (as torchattacks.PGD).
    - ``norm="l2"``: steps along grad / ||grad||_2 per sample; delta rescaled to L2 norm <= eps
      (as torchattacks.PGDL2, except that the gradient is divided by its norm alone, not by the
      norm + 1e-10, so the step does not shrink where the gradient is tiny; see
      :func:`~robustai.attacks.base.l2_direction`).
    - ``alpha`` defaults to ``2.5 * eps / steps`` (Madry et al. 2018), so the iterates can
      reach the ball's boundary from anywhere inside it.
    - ``random_start``: L-inf starts at ``U(-eps, eps)``; L2 at a Gaussian direction scaled to a
      radius ``U(0, 1) * eps`` (as torchattacks.PGDL2); both clipped to [0,1].
    - ``restarts > 1`` (needs ``random_start``): the attack is run from several random starts
      and, per sample, the example from the *first* restart that the model misclassifies is
      kept; for samples never misclassified the example with the highest cross-entropy loss is
      kept. Samples are not re-attacked once misclassified, and the loop stops early when the
      whole batch is. The choice is made with one extra forward pass per restart, in the attack
      mode of the model.
    - ``early_stop`` (off by default, so the iterates are torchattacks' step for step): each
      sample leaves the loop at the first iterate the model misclassifies, and that iterate is
      returned for it. The gradient step's own forward pass tells, so it costs no extra pass;
      on CPU later steps run on the samples still classified correctly only (on a GPU the batch
      stays whole and fooled samples are masked, which spares a device sync per step). A sample
      counts as fooled if any iterate fools it (as in AutoAttack), so robust accuracy is the
      same as or lower than without it; samples that are never fooled follow the same iterates.
      :class:`robustai.evaluation.Evaluator` turns it on (``early_stop=True``).
    - ``eot_iter`` > 1: each gradient is the mean over that many forward and backward passes
      (Expectation over Transformation, for randomized models; torchattacks.EOTPGD's iterates
      with ``random_start=True``). Early stop is then skipped: one draw that misclassifies an
      iterate near the boundary does not make it an example the next draw misclassifies, so
      every sample takes every step.
    """

    name: ClassVar[str] = "pgd"
    step_size_attrs: ClassVar[tuple[str, ...]] = ("alpha",)
    supports_early_stop: ClassVar[bool] = True
    supports_cuda_graph: ClassVar[bool] = True
    supports_eot: ClassVar[bool] = True

    def __init__(
        self,
        eps: float,
        alpha: float | None = None,
        steps: int = 10,
        random_start: bool = True,
        restarts: int = 1,
        norm: str = "linf",
        model_mode: str = "eval",
        early_stop: bool = False,
        eot_iter: int = 1,
    ) -> None:
        super().__init__(eps, norm=norm, model_mode=model_mode)
        self._check_step_size(alpha)
        self.early_stop = check_flag("early_stop", early_stop)
        self.eot_iter = check_eot_iter(eot_iter)
        if not is_integer(steps) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1; got {steps!r}")
        if not is_integer(restarts) or restarts < 1:
            raise ValueError(f"restarts must be an integer >= 1; got {restarts!r}")
        if restarts > 1 and not random_start:
            raise ValueError(
                f"restarts={restarts} needs random_start=True (without a random start every "
                "restart gives the same example); set random_start=True or restarts=1"
            )
        self.steps = int(steps)
        self.random_start = check_flag("random_start", random_start)
        self.restarts = int(restarts)
        self._alpha_is_default = alpha is None
        self.alpha = self._default_step_size("alpha", self.eps) if alpha is None else float(alpha)

    def _default_step_size(self, attr: str, eps: float) -> float:
        return 2.5 * eps / self.steps

    def _capturable(self) -> bool:
        # restarts pick samples on the host between runs
        return super()._capturable() and self.restarts == 1

    @property
    def label(self) -> str:
        label = f"{self.name}{self.steps}"
        if self.norm == "l2":
            label += "_l2"
        if self.restarts > 1:
            label += f"_r{self.restarts}"
        return self._eot_suffixed(label)

    # ------------------------------------------------------------------ attack
    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        if self.restarts == 1:
            return self._run_once(model, x, y)

        best = x.clone()
        best_loss = torch.full((x.shape[0],), -float("inf"), device=x.device)
        fooled = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        # Where a module trains during the attack (batch statistics), later restarts run on the
        # whole batch, as the first: the samples left could be one, which a norm layer over
        # batch statistics cannot take, and a smaller batch is another model there anyway.
        whole = any_training(model)
        for restart in range(self.restarts):
            todo = torch.ones_like(fooled) if whole else ~fooled
            x_r = self._run_once(model, x[todo], y[todo])
            with torch.no_grad():
                logits = model(x_r)
                loss = nn.functional.cross_entropy(logits, y[todo], reduction="none").float()
                wrong = labels_of(logits) != y[todo]
            take = (wrong | (loss > best_loss[todo])) & ~fooled[todo]
            idx = todo.nonzero(as_tuple=True)[0][take]
            best[idx] = x_r[take]
            best_loss[idx] = loss[take]
            fooled[idx[wrong[take]]] = True
            if bool(fooled.all()):
                logger.debug("PGD: whole batch misclassified after restart %d", restart + 1)
                break
        return best

    def _run_once(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        x_adv = self._random_start(x) if self.random_start else x.clone()
        step = self._linf_step if self.norm == "linf" else self._l2_step
        # Early stop judges "fooled" in the mode the attack runs the model in; robust accuracy
        # is counted in eval mode. Where a module trains during the attack (dropout draws,
        # batch statistics of a shrinking batch), a sample "fooled" there may not be fooled in
        # eval mode, and stopping would report it robust: such attacks run every step.
        if self.early_stop and self.eot_iter == 1 and not any_training(model):
            return self._run_early_stop(model, x, y, x_adv, step)
        for _ in range(self.steps):
            grad = self._input_grad(model, x_adv, y)
            x_adv = step(x, x_adv, grad)
        return x_adv

    @staticmethod
    def _drops_fooled(device: torch.device) -> bool:
        """Whether early stop drops fooled samples from the batch (on CPU: later steps then cost
        less) or only masks them (elsewhere: dropping needs a device sync every step, which
        costs a GPU more than the smaller batch saves; measured in the README's Performance)."""
        return device.type == "cpu"

    def _run_early_stop(
        self, model: nn.Module, x: Tensor, y: Tensor, x_adv: Tensor, step: Callable[..., Tensor]
    ) -> Tensor:
        """The same iterates, each sample leaving at the first one the model misclassifies."""
        if not self._drops_fooled(x.device):
            return self._run_early_stop_masked(model, x, y, x_adv, step)
        out = x_adv.clone()
        active = torch.arange(x.shape[0], device=x.device)  # samples still attacked
        xs, ys = x, y
        for i in range(self.steps):
            logits, grad = self._logits_and_input_grad(model, x_adv, ys)
            fooled = labels_of(logits) != ys
            if bool(fooled.any()):
                out[active[fooled]] = x_adv[fooled]
                keep = ~fooled
                if int(keep.sum()) == 1:
                    # A batch of one is the size some models cannot take (a norm layer over a
                    # single value): the last sample finishes with the fooled rows masked.
                    out[active] = self._run_early_stop_masked(
                        model, xs, ys, x_adv, step, steps=self.steps - i, fooled=fooled
                    )
                    return out
                active, xs, ys, x_adv, grad = (t[keep] for t in (active, xs, ys, x_adv, grad))
                if active.numel() == 0:
                    logger.debug("PGD: every sample misclassified after %d steps", i)
                    return out
            x_adv = step(xs, x_adv, grad)
        out[active] = x_adv
        return out

    def _run_early_stop_masked(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        x_adv: Tensor,
        step: Callable[..., Tensor],
        steps: int | None = None,
        fooled: Tensor | None = None,
    ) -> Tensor:
        """As :meth:`_run_early_stop` without a host sync: the whole batch takes every step and
        each sample's first fooling iterate is kept aside (samples are independent in eval mode,
        and the sign or direction of a gradient does not depend on the batch's mean). ``steps``
        left to take and the rows already ``fooled`` at ``x_adv``: for finishing a batch whose
        drops would leave a single sample."""
        out = x_adv.clone()
        if fooled is None:
            fooled = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        for _ in range(self.steps if steps is None else steps):
            logits, grad = self._logits_and_input_grad(model, x_adv, y)
            first = (labels_of(logits) != y) & ~fooled
            out = torch.where(per_sample_view(first, x), x_adv, out)
            fooled |= first
            x_adv = step(x, x_adv, grad)
        return torch.where(per_sample_view(fooled, x), out, x_adv)

    def _random_start(self, x: Tensor) -> Tensor:
        if self.norm == "linf":
            x_adv = x + torch.empty_like(x).uniform_(-self.eps, self.eps)
        else:
            delta = torch.empty_like(x).normal_()
            n = per_sample_view(delta.reshape(x.shape[0], -1).norm(p=2, dim=1), x)
            r = torch.zeros_like(n).uniform_(0, 1)
            x_adv = x + delta * (r / n * self.eps)
        return torch.clamp(x_adv, min=0, max=1)

    def _linf_step(self, x: Tensor, x_adv: Tensor, grad: Tensor) -> Tensor:
        """In place on ``x_adv`` and ``grad`` (both owned by the loop); the same float operations
        as torchattacks.PGD, so the iterates match it bit for bit."""
        x_adv.add_(grad.sign_(), alpha=self.alpha)
        delta = x_adv.sub_(x).clamp_(min=-self.eps, max=self.eps)
        return delta.add_(x).clamp_(min=0, max=1)

    def _l2_step(self, x: Tensor, x_adv: Tensor, grad: Tensor) -> Tensor:
        b = x.shape[0]
        # grad / ||grad|| (torchattacks adds 1e-10 to the norm, which shrinks the step of a model
        # whose loss gradients are tiny, e.g. one with scaled-up logits: gradient masking)
        x_adv = x_adv + self.alpha * l2_direction(grad)
        delta = x_adv - x
        delta_norms = delta.reshape(b, -1).norm(p=2, dim=1)
        # min(eps / ||delta||, 1) as torchattacks, without its 0/0 = nan when eps underflows
        factor = torch.where(delta_norms > self.eps, self.eps / delta_norms, 1.0)
        delta = delta * per_sample_view(factor, delta)
        return torch.clamp(x + delta, min=0, max=1)
