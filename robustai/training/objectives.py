"""Training objectives: what loss a batch contributes. The training loop stays the same for all."""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustai.argcheck import is_integer, is_real
from robustai.attacks import Attack
from robustai.attacks.base import check_inputs_in_range
from robustai.distributed import unwrap_ddp


class Objective(Protocol):
    """Maps a batch to (loss to minimise, logits of the inputs the model was trained on)."""

    adversarial: bool

    def __call__(
        self, model: nn.Module, x: Tensor, y: Tensor, progress: float
    ) -> tuple[Tensor, Tensor]:
        """``progress`` is the fractional epoch (e.g. 2.5 halfway through the third epoch)."""
        ...


def _check_nonempty(y: Tensor) -> None:
    """An empty batch's mean loss is NaN, which stopped training as "diverged, lower the
    learning rate"; only DP-SGD's Poisson batches may be empty (its own objective takes them)."""
    if len(y) == 0:
        raise ValueError(
            "a training batch is empty (its mean loss is NaN); drop empty batches from the"
            " loader, or for DP-SGD's Poisson batches train with dp.objective()"
        )


class StandardObjective:
    """Cross-entropy on clean inputs, which must be floating point and in [0,1] as the attacks
    (and so :class:`AdversarialObjective`) require: 8-bit or 0..255 images would train a model
    that every evaluation then refuses. The first batch is checked, which finds images of the
    wrong scale; checking every batch would cost clean training, the baseline every benchmark
    ratio is taken against, a device sync per step."""

    adversarial = False
    _checked = False

    def __call__(
        self, model: nn.Module, x: Tensor, y: Tensor, progress: float
    ) -> tuple[Tensor, Tensor]:
        _check_nonempty(y)
        if not self._checked:
            check_inputs_in_range(x, "training inputs")
            self._checked = True
        logits = model(x)
        try:
            return F.cross_entropy(logits, y), logits
        except IndexError as e:  # on CPU; a label past the model's classes
            bad = int(y.max()) if int(y.max()) >= logits.shape[-1] else int(y.min())
            raise ValueError(
                f"label {bad} is out of range for a model of {logits.shape[-1]} classes"
                " (labels are 0 .. classes - 1)"
            ) from e


def _check_warmup(eps_warmup_epochs: object) -> None:
    if not is_real(eps_warmup_epochs) or not 0 <= eps_warmup_epochs < math.inf:
        raise ValueError(f"eps_warmup_epochs must be a number >= 0; got {eps_warmup_epochs!r}")


class AdversarialObjective:
    """Cross-entropy on adversarial inputs only (Madry et al. 2018; Wong et al. 2020 for FGSM-RS).

    ``eps_warmup_epochs`` ramps eps (and the attack's step size with it) linearly from 0, which
    stabilises early training on hard threat models.
    """

    adversarial = True

    def __init__(self, attack: Attack, eps_warmup_epochs: float = 0.0) -> None:
        # Checked here: an attack class (PGD, not PGD(eps)) failed at the first batch, taking
        # the model for its eps; a negative warm-up trained at full eps without a word.
        if not isinstance(attack, Attack):
            raise TypeError(f"attack must be an attack instance, e.g. PGD(eps=0.1); got {attack!r}")
        _check_warmup(eps_warmup_epochs)
        self.attack = attack
        self.eps_warmup_epochs = eps_warmup_epochs

    def attack_at(self, progress: float) -> Attack:
        if self.eps_warmup_epochs <= 0 or progress >= self.eps_warmup_epochs:
            return self.attack
        return self.attack.with_eps(self.attack.eps * progress / self.eps_warmup_epochs)

    def __call__(
        self, model: nn.Module, x: Tensor, y: Tensor, progress: float
    ) -> tuple[Tensor, Tensor]:
        _check_nonempty(y)
        # Under DDP the attack runs on the inner module: its input-only backward must not
        # start the wrapper's gradient all-reduce (see robustai.distributed.unwrap_ddp).
        x_adv = self.attack_at(progress)(unwrap_ddp(model), x, y)
        logits = model(x_adv)
        return F.cross_entropy(logits, y), logits


class FreeAdversarialObjective:
    """ "Free" adversarial training (Shafahi et al. 2019, "Adversarial Training for Free!").

    Each minibatch is replayed ``replays`` (m) times; every replay's single backward pass gives
    both the weight gradient (for the optimizer step) and the input gradient, which moves the
    perturbation one signed step of size eps. The perturbation is carried across replays and
    across minibatches, so an epoch costs about m clean epochs and the paper trains for
    epochs / m epochs. Only L-inf, as in the paper. ``eps_warmup_epochs`` ramps eps (the step
    and the ball) linearly from 0, as :class:`AdversarialObjective` does.

    One deliberate difference from the paper's code: the step follows the gradient at the
    clamped input x + delta everywhere. Theirs is the gradient w.r.t. delta through the clamp to
    [0, 1], zero wherever the clamp cut, so a delta that pushed a black background pixel below
    0 stays there for good and that pixel drops out of the attack. On the default digits run
    (5 epochs, seeds 0-2) their form gave PGD-20 accuracy 0.75-0.77 against 0.77-0.82 here,
    lower for each seed.
    """

    adversarial = True

    def __init__(self, eps: float, replays: int = 4, eps_warmup_epochs: float = 0.0) -> None:
        if not is_real(eps) or not 0.0 <= eps <= 1.0:
            raise ValueError(f"eps must be a number in [0, 1]; got {eps!r}")
        if not is_integer(replays) or replays < 1:  # 2.5 failed inside the training loop
            raise ValueError(f"replays must be a whole number >= 1; got {replays!r}")
        _check_warmup(eps_warmup_epochs)
        self.eps = eps
        self.replays = replays
        self.eps_warmup_epochs = eps_warmup_epochs
        self._eps_now = eps  # eps at the current progress (below self.eps during warm-up)
        self._delta: Tensor | None = None  # the perturbation, one row per batch position
        self._x_adv: Tensor | None = None  # the last input, whose .grad the loop's backward fills
        self._checked = False  # the first batch's range, as StandardObjective's

    def __call__(
        self, model: nn.Module, x: Tensor, y: Tensor, progress: float
    ) -> tuple[Tensor, Tensor]:
        _check_nonempty(y)
        if not self._checked:  # in [0,1], as StandardObjective and the attacks require
            check_inputs_in_range(x, "training inputs")
            self._checked = True
        self._advance()  # at the eps of the replay whose gradient it uses, as state_dict() does
        if self.eps_warmup_epochs > 0 and progress < self.eps_warmup_epochs:
            self._eps_now = self.eps * progress / self.eps_warmup_epochs
        else:
            self._eps_now = self.eps
        if self._delta is None or self._delta.shape[1:] != x.shape[1:] or len(self._delta) < len(x):
            self._delta = torch.zeros_like(x)
        elif self._delta.device != x.device or self._delta.dtype != x.dtype:
            # a checkpoint's perturbation is read to the CPU, and a run may resume on a GPU
            self._delta = self._delta.to(device=x.device, dtype=x.dtype)
        delta = self._delta[: len(x)]
        # Keep x + delta in [0, 1] (the perturbation stays inside the eps-ball by construction).
        x_adv = (x + delta).clamp(0.0, 1.0).detach().requires_grad_(True)
        self._x_adv = x_adv
        logits = model(x_adv)
        return F.cross_entropy(logits, y), logits

    def _advance(self) -> None:
        """Use the input gradient of the previous replay's backward pass: one FGSM step."""
        if self._x_adv is None or self._x_adv.grad is None or self._delta is None:
            return
        n, eps = len(self._x_adv), self._eps_now
        step = eps * self._x_adv.grad.sign()
        self._delta[:n] = (self._delta[:n] + step).clamp(-eps, eps)
        self._x_adv = None

    def state_dict(self) -> dict[str, object]:
        self._advance()
        return {"delta": self._delta}

    def load_state_dict(self, state: dict[str, object]) -> None:
        delta = state["delta"]
        self._delta = None if delta is None else delta.clone()  # type: ignore[union-attr]
        self._x_adv = None


class AutocastObjective:
    """Runs another objective under ``torch.autocast`` (bf16 by default): forward passes, the
    attack's included, use the accelerator's fast matrix units; the loop's backward is unchanged."""

    def __init__(self, inner: Objective, device_type: str, dtype: torch.dtype = torch.bfloat16):
        self.inner = inner
        self.device_type = device_type
        self.dtype = dtype
        self.adversarial = inner.adversarial
        self.replays = getattr(inner, "replays", 1)

    def __call__(
        self, model: nn.Module, x: Tensor, y: Tensor, progress: float
    ) -> tuple[Tensor, Tensor]:
        with torch.autocast(self.device_type, dtype=self.dtype):
            loss, logits = self.inner(model, x, y, progress)
        return loss.float(), logits

    def __getattr__(self, name: str) -> object:
        # The inner objective's checkpoint state (free training's carried perturbation) is the
        # wrapper's: ``hasattr(objective, "state_dict")`` decides what a checkpoint holds.
        if name in ("state_dict", "load_state_dict") and name in dir(self.__dict__["inner"]):
            return getattr(self.__dict__["inner"], name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")
