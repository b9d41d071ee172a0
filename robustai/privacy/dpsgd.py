"""DP-SGD (Abadi et al. 2016) over Opacus, fitted to robustai's flat training loop.

The pieces are Opacus' own: a ``GradSampleModule`` computes per-sample gradients (or, with
ghost clipping, only their norms; Li et al. 2022), a ``DPOptimizer`` clips each
sample's gradient to ``max_grad_norm``, adds Gaussian noise of std ``noise_multiplier *
max_grad_norm`` and steps, and an accountant counts every step. robustai adds Poisson sampling
over in-memory tensors (:class:`~robustai.privacy.sampling.PoissonLoader`), an objective that
works with adversarial training, and the budget bookkeeping.

Adversarial training inside DP-SGD. The attack runs the same model forward and backward
(gradients w.r.t. the input only). Opacus' hooks would capture those passes as if they were
training passes: per-sample state would be corrupted or the run would fail. The hooks are
therefore switched on only for the training pass: :class:`DPObjective` enables them right before
the forward on the (adversarial) batch, and the optimizer's step hook switches them off after
clipping and noising, so attacks, callbacks and evaluation never touch per-sample state. The
accountant counts optimizer steps only; attack passes are not steps. Clipping bounds the
contribution of each *training record* (its adversarial example is a function of that record and
the current model), so the guarantee is the usual DP-SGD one.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MethodType
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from opacus.accountants import create_accountant
from opacus.distributed import DifferentiallyPrivateDistributedDataParallel as DPDDP
from opacus.grad_sample import GradSampleModule, GradSampleModuleFastGradientClipping
from opacus.optimizers import get_optimizer_class
from opacus.utils.fast_gradient_clipping_utils import DPTensorFastGradientClipping
from opacus.utils.module_utils import trainable_modules
from opacus.validators import ModuleValidator
from torch import Tensor, nn
from torch.optim import Optimizer

from robustai.argcheck import check_seed, is_integer, is_real
from robustai.attacks import Attack
from robustai.attacks.base import check_inputs_in_range, class_indices
from robustai.privacy.accounting import (
    ACCOUNTANTS,
    PRV_MAX_EPSILON,
    DeltaTooSmall,
    default_delta,
    epsilon_accountant,
    epsilon_of,
    epsilon_spent,
    noise_multiplier_for,
)
from robustai.privacy.plans import GRAD_SAMPLE_MODES
from robustai.privacy.sampling import PoissonLoader, entropy_generator
from robustai.training.objectives import AdversarialObjective
from robustai.training.trainer import EpochStats, Trainer

log = logging.getLogger(__name__)

#: On CUDA, ``auto`` takes per-sample hooks when one batch's per-sample gradients (trainable
#: parameters x batch size x 4 bytes) fit in this much memory. Such small models are bound by
#: kernel launches on a GPU, where ghost clipping's second backward pass costs nearly as much as
#: the first: small_cnn (67 MB at batch 100) took 3.19-3.36x a clean epoch with hooks against
#: 4.02-4.37x with ghost clipping on an H200. Larger models keep ghost clipping, which never
#: stores per-sample gradients (preact_resnet18's would take 4.5 GB at batch 100); the bound is
#: set well below where we have not measured which mode is faster.
HOOKS_ON_CUDA_MAX_BYTES = 256 * 2**20


class DPSGDMisuse(RuntimeError):
    """A step that DP-SGD's epsilon would not cover: a batch not drawn by ``DPSGD.loader``,
    gradients not from its per-sample loss, or weights stepped by another optimizer."""


class IncompatibleLayerError(ValueError):
    """The model has a layer DP-SGD cannot train: one that mixes the samples of a batch (e.g.
    BatchNorm), or a trainable one registered under two names."""


def _mixes_samples(module: nn.Module) -> bool:
    """BatchNorm, or InstanceNorm with running-statistics buffers: in training its forward pass
    mixes the records of a batch or keeps statistics of them in buffers (saved with the weights,
    never noised), whether or not the layer has trainable parameters. PyTorch's InstanceNorm
    updates buffers it has even with ``track_running_stats=False``."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return True
    return isinstance(module, nn.modules.instancenorm._InstanceNorm) and (
        bool(module.track_running_stats) or module.running_mean is not None
    )


def incompatible_layers(model: nn.Module) -> list[tuple[str, str]]:
    """(name, type) of each layer DP training cannot have: the trainable layers Opacus refuses
    (e.g. BatchNorm), and sample-mixing norms whatever their parameters (``affine=False`` or
    frozen ones), which Opacus' validator, looking at trainable layers only, lets through."""
    trainable = dict(trainable_modules(model))
    found = []
    for name, module in model.named_modules():
        validator = ModuleValidator.VALIDATORS.get(type(module)) if name in trainable else None
        if _mixes_samples(module) or (validator is not None and validator(module)):
            found.append((name, type(module).__name__))
    return found


def registered_twice(model: nn.Module) -> tuple[str, str] | None:
    """The first two names of a module with trainable parameters that is registered under more
    than one name (``self.l = layer; self.seq = nn.Sequential(layer, ...)``), else None.

    Opacus hooks such a module once per name, so its per-sample gradients come out as many
    times too large, and clipping and noise no longer give the guarantee the accountant
    reports. Weights tied between two distinct modules are another matter: Opacus handles
    them (with per-sample hooks)."""
    first: dict[int, str] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        if id(module) in first:
            if any(p.requires_grad for p in module.parameters()):
                return first[id(module)], name
            continue
        first[id(module)] = name
    return None


def check_dp_compatible(model: nn.Module) -> None:
    """Raise :class:`IncompatibleLayerError` naming the first layer DP-SGD cannot train."""
    twice = registered_twice(model)
    if twice is not None:
        kept, again = twice
        kind = type(model.get_submodule(kept)).__name__
        raise IncompatibleLayerError(
            f"layer '{again}' is the same {kind} object as layer '{kept}': a module registered "
            "under two names gets its per-sample gradients counted once per name by Opacus, "
            "which breaks the clipping bound and the DP guarantee; register it once (use it "
            f"under one name, e.g. through '{kept}' only) or, for shared weights, tie the "
            "parameters of two distinct layers"
        )
    bad = incompatible_layers(model)
    if bad:
        name, kind = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise IncompatibleLayerError(
            f"layer '{name}' is {kind}{more}, which mixes the samples of a batch, so per-sample "
            "gradients and the DP guarantee do not exist; set privacy.fix_model=true (in Python: "
            "model, replaced = robustai.privacy.make_dp_compatible(model)) to replace it by "
            "GroupNorm, or use a model without it"
        )


def make_dp_compatible(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """Opacus' ``ModuleValidator.fix``: BatchNorm -> GroupNorm, also where BatchNorm has no
    trainable parameter; InstanceNorm loses its running statistics. Returns a copy and the names
    of the replaced layers; the weights of replaced BatchNorm layers start fresh."""
    names = [name for name, _ in incompatible_layers(model)]
    if not names:
        return model, []
    # Opacus logs two INFO lines per replaced layer (34 for preact_resnet18, again on every
    # load of the saved model); the caller gets the names and logs them once.
    with _quiet("opacus.validators"):
        fixed = ModuleValidator.fix(model)  # the trainable layers only
        for name, module in list(fixed.named_modules()):
            if _mixes_samples(module):  # left by Opacus' fix, or fixed only in part
                _replace_norm(fixed, name, module)
    check_dp_compatible(fixed)
    return fixed, names


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Within the block, the logger ``logger_name`` passes warnings and errors only."""
    quieted = logging.getLogger(logger_name)
    level = quieted.level
    quieted.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        quieted.setLevel(level)


def _replace_norm(root: nn.Module, name: str, module: nn.Module) -> None:
    """Put a norm without batch statistics or buffers in place of ``module``: GroupNorm for
    BatchNorm (Opacus' replacement), InstanceNorm without running statistics for InstanceNorm
    (Opacus' own fix keeps the buffers, which PyTorch goes on updating). Whether parameters
    train is kept."""
    frozen = not any(p.requires_grad for p in module.parameters())
    if isinstance(module, nn.modules.instancenorm._InstanceNorm):
        new = type(module)(
            module.num_features,
            eps=module.eps,
            momentum=module.momentum,
            affine=module.affine,
            track_running_stats=False,
        )
        if module.affine:
            with torch.no_grad():
                new.weight.copy_(module.weight)
                new.bias.copy_(module.bias)
    else:
        new = ModuleValidator.FIXERS[type(module)](module)
    tensors = [*module.parameters(), *module.buffers()]
    if tensors:
        new.to(tensors[0].device)
    if frozen:
        new.requires_grad_(False)
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, new)


def _shares_parameters(model: nn.Module) -> bool:
    """A parameter registered in two places (weights tied between two layers; one module
    registered twice is refused by :func:`check_dp_compatible`).

    A layer registered once but called twice in ``forward`` cannot be seen without running the
    model; Opacus' ghost clipping refuses it at the first step (use grad_sample_mode=hooks).
    """
    seen: set[int] = set()
    for _, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            return True
        seen.add(id(p))
    return False


def choose_grad_sample_mode(
    model: nn.Module,
    requested: str = "auto",
    batch_size: int | None = None,
    device: torch.device | None = None,
) -> tuple[str, str]:
    """(mode, description): ghost clipping where the model allows it, per-sample hooks otherwise,
    and on CUDA per-sample hooks for small models (see :data:`HOOKS_ON_CUDA_MAX_BYTES`; needs
    ``batch_size``; ``device`` defaults to the model's).

    Ghost clipping computes per-sample gradient *norms* only (for Linear layers without ever
    forming the per-sample gradients) and clips with a second backward pass. It does not support
    parameters shared between layers; models whose distinct layers tie their weights take
    per-sample hooks. A module registered under two names is no such model: Opacus would count
    its per-sample gradients twice, and :func:`check_dp_compatible` (which :class:`DPSGD` runs
    first) refuses it.
    """
    if requested not in GRAD_SAMPLE_MODES:
        raise ValueError(
            f"unknown grad_sample_mode '{requested}'; valid: {', '.join(GRAD_SAMPLE_MODES)}"
        )
    shared = _shares_parameters(model)
    if requested == "ghost" and shared:
        raise ValueError("grad_sample_mode=ghost does not support parameters shared by layers")
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    per_sample_bytes = 4 * trainable * batch_size if batch_size is not None else None
    small_on_cuda = (
        device.type == "cuda"
        and per_sample_bytes is not None
        and per_sample_bytes <= HOOKS_ON_CUDA_MAX_BYTES
    )
    mode = requested if requested != "auto" else ("hooks" if shared or small_on_cuda else "ghost")
    gsm = GradSampleModuleFastGradientClipping
    kinds: Counter[str] = Counter()
    for _, module in trainable_modules(model):
        t = type(module)
        if mode == "ghost" and t in gsm.NORM_SAMPLERS:
            kinds[f"{t.__name__}: ghost norm"] += 1
        elif t in gsm.GRAD_SAMPLERS:
            kinds[f"{t.__name__}: per-sample gradient"] += 1
        else:
            kinds[f"{t.__name__}: functorch per-sample gradient"] += 1
    layers = ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items()))
    if mode == "ghost":
        why = "fast gradient clipping with ghost norms"
    elif shared:
        why = "per-sample hooks (ghost clipping does not support shared parameters)"
    elif requested == "auto" and per_sample_bytes is not None:
        why = (
            f"per-sample hooks (on CUDA, for a model whose per-sample gradients take"
            f" {per_sample_bytes / 2**20:.0f} MB per batch, they are faster than ghost clipping)"
        )
    else:
        why = "per-sample hooks"
    return mode, f"{why} [{layers}]"


class _GhostLoss(DPTensorFastGradientClipping):
    """Opacus' ghost-clipping loss, plus what the training loop reads off a loss tensor."""

    @property
    def device(self) -> torch.device:
        return self.loss_per_sample.device

    def detach(self) -> Tensor:
        # The mean over the batch; 0 (not NaN) for an empty Poisson batch.
        return self.loss_per_sample.detach().sum() / max(1, len(self.loss_per_sample))


def _check_optimizer_params(model: nn.Module, optimizer: Optimizer) -> None:
    """The optimizer must step the model's trainable parameters, all of them and no others:
    Opacus computes per-sample gradients for the model's, and clips and noises the optimizer's.
    An optimizer over another model's parameters would fail at the first step, and a trainable
    parameter it leaves out keeps per-sample gradients that are never cleared."""
    if not isinstance(optimizer, Optimizer):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer; got {type(optimizer).__name__}"
        )
    stepped = {id(p) for group in optimizer.param_groups for p in group["params"]}
    trainable = {id(p): name for name, p in model.named_parameters() if p.requires_grad}
    foreign = [
        p
        for group in optimizer.param_groups
        for p in group["params"]
        if p.requires_grad and id(p) not in trainable
    ]
    if foreign:
        raise ValueError(
            f"the optimizer holds {len(foreign)} trainable parameter(s) that are not the model's"
            " (an optimizer built over another model?); build it over model.parameters()"
        )
    left_out = [name for key, name in trainable.items() if key not in stepped]
    if left_out:
        more = f" (and {len(left_out) - 1} more)" if len(left_out) > 1 else ""
        raise ValueError(
            f"the model's trainable parameter '{left_out[0]}'{more} is not in the optimizer;"
            " build the optimizer over model.parameters(), or freeze what should not train"
            " with requires_grad_(False)"
        )


class DPSGD:
    """DP-SGD training parts for one run: model, optimizer, Poisson loader and accountant.

    Give either ``noise_multiplier`` or ``target_epsilon`` (then the noise is calibrated so that
    ``epochs`` epochs spend exactly up to ``target_epsilon`` at ``delta``). ``delta`` defaults to
    ``min(1e-5, 1/(10 N))``. ``max_epsilon`` stops training before an epoch that would exceed it
    (see :class:`PrivacyBudgetCallback`). ``noise_seed`` makes noise and sampling reproducible,
    which removes the privacy from anyone who knows it: for tests and debugging only.

    Train ``self.model`` with ``self.optimizer`` over ``self.loader``, using :meth:`objective`;
    afterwards :meth:`release` returns the plain model. Each step is checked to be one the
    accountant's epsilon covers, since any other would train without the guarantee yet report
    it: a step on a batch that did not come from ``self.loader``, on gradients that did not come
    from :meth:`loss` after :meth:`start_training_pass` (what :meth:`objective` does), or of the
    optimizer given here (now driven by ``self.optimizer``) raises :class:`DPSGDMisuse`.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: Optimizer,
        x: Tensor,
        y: Tensor,
        *,
        batch_size: int,
        epochs: int,
        max_grad_norm: float = 1.0,
        noise_multiplier: float | None = None,
        target_epsilon: float | None = None,
        delta: float | None = None,
        accountant: str = "prv",
        grad_sample_mode: str = "auto",
        max_epsilon: float | None = None,
        noise_seed: int | None = None,
        distributed: bool = False,
    ) -> None:
        n = len(x)
        # class indices (int32 / uint8 widened: the loss takes int64); float ones would fail at
        # the first step inside the loss ("expected target dtype to be Long"), one-hot ones there
        # with the batch's shape in the message
        y = class_indices(y)
        if (noise_multiplier is None) == (target_epsilon is None):
            raise ValueError("give exactly one of noise_multiplier and target_epsilon")
        numbers_given = (
            ("noise_multiplier", noise_multiplier),
            ("target_epsilon", target_epsilon),
            ("max_grad_norm", max_grad_norm),
            ("delta", delta),
        )
        for what, value in numbers_given:  # "1.0" failed in a comparison, True counted as 1
            if value is not None and not is_real(value):
                raise TypeError(f"{what} must be a number; got {value!r}")
        noise_seed = check_seed("noise_seed", noise_seed)  # -1 or 2**70 failed in torch's words
        # NaN and infinity too: the accountant would search forever
        if noise_multiplier is not None and not 0 <= noise_multiplier < math.inf:
            raise ValueError(
                f"noise_multiplier must be a finite number >= 0, got {noise_multiplier}"
            )
        if not 0 < max_grad_norm < math.inf:  # infinity: no clipping, no sensitivity bound
            raise ValueError(f"max_grad_norm must be a finite number > 0, got {max_grad_norm}")
        if accountant not in ACCOUNTANTS:
            raise ValueError(f"unknown accountant '{accountant}'; valid: {', '.join(ACCOUNTANTS)}")
        for what, value in (("epochs", epochs), ("batch_size", batch_size)):
            if not is_integer(value) or value < 1:  # as the Trainer: 1.5 epochs are not a plan
                raise ValueError(f"{what} must be a whole number >= 1, got {value!r}")
        if max_epsilon is not None and not (is_real(max_epsilon) and max_epsilon > 0):
            # NaN compares false with every epsilon: the budget would never stop training
            raise ValueError(
                f"max_epsilon must be a number > 0 (None: no budget stop), got {max_epsilon!r}"
            )
        self.delta = default_delta(n) if delta is None else float(delta)
        if not 0 < self.delta < 1.0 / n:
            raise ValueError(
                f"delta={self.delta:g} must be in (0, 1/N) = (0, {1.0 / n:.3g}) for N={n} "
                "training records: a delta of 1/N permits publishing a whole record"
            )
        check_dp_compatible(model)
        _check_optimizer_params(model, optimizer)
        # PyTorch notes each time a full backward hook fires on a layer whose input needs no
        # gradient (the first layer, every step); Opacus' hooks work exactly that way.
        warnings.filterwarnings(
            "ignore", message="Full backward hook is firing when gradients are computed with"
        )
        self.grad_sample_mode, self.grad_sample_info = choose_grad_sample_mode(
            model, grad_sample_mode, batch_size
        )
        self.max_grad_norm = float(max_grad_norm)
        self.accountant_name = accountant
        self.target_epsilon = target_epsilon
        self.max_epsilon = max_epsilon
        self.epochs = epochs
        self.num_samples = n
        self.reproducible_noise = noise_seed is not None
        device = next(model.parameters()).device
        # Under DDP (Opacus' distributed DP-SGD): each rank Poisson-samples its shard of the
        # records at the global rate q, clips its samples' gradients, rank 0 alone adds the
        # noise, and the sums are all-reduced; the accountant sees the same q and steps.
        self.distributed = distributed
        rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
        if n < world:  # every rank sees the same n: all refuse, none waits in a collective
            raise ValueError(
                f"{n} training record(s) cannot be shared by {world} processes; use more "
                "training data or fewer processes"
            )
        self.loader = PoissonLoader(
            x[rank::world],
            y[rank::world],
            batch_size,
            generator=entropy_generator(
                "cpu", None if noise_seed is None else noise_seed + 1 + 7919 * rank
            ),
            population=n,
        )
        self.sample_rate = self.loader.sample_rate
        self.steps_per_epoch = len(self.loader)
        planned = epochs * self.steps_per_epoch
        if target_epsilon is not None:
            noise_multiplier = noise_multiplier_for(
                target_epsilon, self.delta, self.sample_rate, planned, accountant
            )
        assert noise_multiplier is not None
        self.noise_multiplier = float(noise_multiplier)
        if self.noise_multiplier == 0:
            log.warning(
                "DP-SGD with noise_multiplier=0: gradients are clipped but not noised; "
                "there is no privacy guarantee"
            )
        self._eps_cache: dict[int, float] = {}
        if self.noise_multiplier > 0:
            # Fail now, not after the first epoch: some accountants cannot handle every sigma
            # (PRV's discretization blows up for very small noise multipliers).
            try:
                with warnings.catch_warnings(), np.errstate(all="ignore"):
                    warnings.simplefilter("ignore", RuntimeWarning)
                    planned_epsilon = self.epsilon_after(planned)
            except DeltaTooSmall:
                raise  # says what to change; no noise multiplier helps
            except (ValueError, MemoryError, OverflowError) as e:
                # PRV fails for very small noise multipliers (a larger one or RDP helps); any
                # accountant overflows for absurdly large ones
                fix = (
                    "use a smaller noise multiplier (from about 1e3 on, epsilon is near 0"
                    " anyway)"
                    if self.noise_multiplier >= 1e6
                    else "use a larger noise multiplier or privacy.accountant=rdp"
                )
                raise ValueError(
                    f"the {accountant} accountant cannot compute epsilon for noise multiplier "
                    f"{self.noise_multiplier:g} over {planned} steps ({str(e).splitlines()[0]}); "
                    f"{fix}"
                ) from e
            if planned_epsilon > PRV_MAX_EPSILON:  # as with no noise: say so before training
                bound = f"{planned_epsilon:.4g}"
                if accountant == "prv" and math.isfinite(planned_epsilon):
                    bound += " (the RDP bound: PRV accounting takes minutes up there)"
                log.warning(
                    "DP-SGD: the planned %d steps (noise multiplier %g, sample rate %.3g) reach"
                    " epsilon %s; there is no meaningful privacy guarantee (use a larger noise"
                    " multiplier or fewer steps)",
                    planned,
                    self.noise_multiplier,
                    self.sample_rate,
                    bound,
                )
        if max_epsilon is not None:
            first = self.epsilon_after(self.steps_per_epoch)
            if first > max_epsilon:
                raise ValueError(
                    f"max_epsilon={max_epsilon:g} is exceeded by the first epoch already "
                    f"(epsilon {first:.3g} after {self.steps_per_epoch} steps); raise "
                    "max_epsilon or the noise multiplier, or use a smaller batch size"
                )

        if distributed:
            model = DPDDP(model)  # broadcasts rank 0's weights; the optimizer all-reduces
        if self.grad_sample_mode == "ghost":
            # Opacus logs a line per layer here once a logging setup (Hydra's) enables its
            # logger; the mode per layer type is in this class's own line (choose_grad_sample_mode)
            with _quiet(GradSampleModuleFastGradientClipping.__module__):
                self.model: nn.Module = GradSampleModuleFastGradientClipping(
                    model,
                    batch_first=True,
                    loss_reduction="mean",
                    max_grad_norm=self.max_grad_norm,
                    use_ghost_clipping=True,
                )
        else:
            self.model = GradSampleModule(model, batch_first=True, loss_reduction="mean")
        self.model.forbid_grad_accumulation()  # type: ignore[operator]
        optim_cls = get_optimizer_class(
            clipping="flat", distributed=distributed, grad_sample_mode=self.grad_sample_mode
        )
        self.optimizer = optim_cls(
            optimizer,
            noise_multiplier=self.noise_multiplier,
            max_grad_norm=self.max_grad_norm,
            # The global expected batch over the ranks, the same on every rank (as Opacus'
            # make_private does): each rank divides by it, then the ranks are averaged. Dividing
            # by a rank's own shard's share would weigh the records of a smaller shard more than
            # rank 0's noise is calibrated for when N is not a multiple of the world size.
            expected_batch_size=self.sample_rate * n / world,
            loss_reduction="mean",
            generator=entropy_generator(device, noise_seed),
        )
        self.accountant = create_accountant(mechanism=accountant)
        count_step = self.accountant.get_optimizer_hook_fn(sample_rate=self.sample_rate)

        def after_noise(opt: Any) -> None:
            count_step(opt)
            self.model.disable_hooks()  # type: ignore[operator]

        self.optimizer.attach_step_hook(after_noise)
        self._guard_steps(optimizer)
        self.model.disable_hooks()  # type: ignore[operator]
        self.stopped_by_budget = False
        self._released: nn.Module | None = None
        log.info(
            "DP-SGD: %s; N=%d, sample rate %.4g (expected batch %d), %d steps/epoch, "
            "noise multiplier %.4g%s, max_grad_norm %g, delta %.3g, accountant %s",
            self.grad_sample_info,
            n,
            self.sample_rate,
            round(self.expected_batch_size),
            self.steps_per_epoch,
            self.noise_multiplier,
            f" (calibrated for epsilon {target_epsilon:g} in {epochs} epochs)"
            if target_epsilon is not None
            else "",
            self.max_grad_norm,
            self.delta,
            accountant,
        )
        if self.reproducible_noise:
            log.warning(
                "DP-SGD noise and sampling are seeded (noise_seed): anyone who knows the seed "
                "can remove the noise, so this run has no privacy in practice"
            )

    @property
    def expected_batch_size(self) -> float:
        """Of the global batch (all ranks together): q * N."""
        return self.sample_rate * self.num_samples

    # ------------------------------------------------------------------ training
    def objective(
        self, attack: Attack | None = None, eps_warmup_epochs: float = 0.0
    ) -> DPObjective:
        return DPObjective(self, attack, eps_warmup_epochs)

    def callback(self) -> PrivacyBudgetCallback:
        return PrivacyBudgetCallback(self)

    def loss(self, logits: Tensor, y: Tensor) -> Any:
        """Mean cross-entropy in the form the chosen per-sample mode needs (empty-batch safe)."""
        self._loss_made = True
        if self.grad_sample_mode == "ghost":
            per_sample = F.cross_entropy(logits, y, reduction="none")
            return _GhostLoss(self.model, self.optimizer, per_sample, "mean")  # type: ignore[arg-type]
        # Opacus' hooks rescale by the actual batch size, so this is the per-sample mean.
        return F.cross_entropy(logits, y, reduction="sum") / max(1, len(y))

    def start_training_pass(self) -> None:
        """Let Opacus' hooks see the next forward/backward; the step switches them off again."""
        if self._loss_made:
            raise DPSGDMisuse(
                "the last DP-SGD loss was not followed by a step of DPSGD.optimizer: the weights "
                "were updated some other way, without clipping, noise or accounting; train with "
                "dp.optimizer"
            )
        self._pass_started = True
        self.model.enable_hooks()  # type: ignore[operator]

    def _guard_steps(self, original: Optimizer) -> None:
        """Check every step before Opacus clips (see the class docstring), and refuse a step of
        the wrapped optimizer that does not come through ``self.optimizer``."""
        self._pass_started = self._loss_made = self._stepping = False
        self._batches_at_step = 0
        dp_pre_step = self.optimizer.pre_step
        original_step = original.step

        def pre_step(opt: Optimizer, *args: Any, **kwargs: Any) -> bool:
            done = self._pass_started and self._loss_made
            # A refused step updates nothing: the next pass starts clean (left set, the next
            # pass was refused as if this step had updated the weights some other way).
            refused = not done or self.loader.batches_drawn == self._batches_at_step
            if refused:
                self._pass_started = self._loss_made = False
            if not done:
                raise DPSGDMisuse(
                    "DPSGD.optimizer stepped on gradients that did not come from DP-SGD's "
                    "per-sample loss, so they are not clipped per sample and epsilon would not "
                    "hold; compute the loss with dp.objective() (or dp.start_training_pass() "
                    "before the forward pass and dp.loss() after it)"
                )
            if refused:
                raise DPSGDMisuse(
                    "DPSGD.optimizer stepped on a batch that did not come from DPSGD.loader: "
                    "epsilon assumes Poisson-sampled batches; train over dp.loader"
                )
            self._pass_started = self._loss_made = False
            self._batches_at_step = self.loader.batches_drawn
            ready = bool(dp_pre_step(*args, **kwargs))
            self._stepping = ready
            return ready

        def step(opt: Optimizer, *args: Any, **kwargs: Any) -> Any:
            if not self._stepping:
                raise DPSGDMisuse(
                    "this optimizer is driven by DP-SGD now: stepping it directly updates the "
                    "weights without clipping, noise or accounting; step dp.optimizer instead"
                )
            self._stepping = False
            return original_step(*args, **kwargs)

        # Bound methods, as the originals: torch's LR schedulers wrap ``step`` through ``__func__``
        self.optimizer.pre_step = MethodType(pre_step, self.optimizer)  # type: ignore[method-assign]
        own_step = vars(original).get("step")  # e.g. an LR scheduler's wrapper, kept on release
        if getattr(own_step, "_wrapped_by_lr_sched", False):
            # ours calls the scheduler's, which still sees each step: spare its "overridden" warning
            step._wrapped_by_lr_sched = True  # type: ignore[attr-defined]
        original.step = MethodType(step, original)  # type: ignore[method-assign]
        self._original, self._original_own_step = original, own_step

    def release(self) -> nn.Module:
        """The trained plain model, with Opacus' hooks and per-sample attributes removed."""
        if self._released is None:
            # The optimizer given to the constructor is the caller's again (e.g. to fine-tune
            # without privacy, which the released model's statement then no longer covers).
            if self._original_own_step is not None:
                self._original.step = self._original_own_step  # type: ignore[method-assign]
            elif "step" in vars(self._original):
                del self._original.step
            plain = self.model.to_standard_module()  # type: ignore[operator]
            self._released = plain.module if isinstance(plain, DPDDP) else plain
        return self._released

    def state_dict(self) -> dict[str, Any]:
        """The accountant's history, for resumable checkpoints (generator states are left out
        on purpose: they would let a checkpoint's reader reconstruct the noise)."""
        return {
            "history": [list(h) for h in self.accountant.history],
            "stopped_by_budget": self.stopped_by_budget,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.accountant.history = [tuple(h) for h in state["history"]]
        self.stopped_by_budget = bool(state["stopped_by_budget"])

    # ------------------------------------------------------------------ accounting
    @property
    def steps(self) -> int:
        """Optimizer steps the accountant has counted."""
        return int(sum(h[2] for h in self.accountant.history))

    def epsilon_after(self, steps: int) -> float:
        """Epsilon at ``self.delta`` after ``steps`` steps with this run's sigma and q."""
        if steps not in self._eps_cache:
            self._eps_cache[steps] = epsilon_spent(
                self.noise_multiplier, self.sample_rate, steps, self.delta, self.accountant_name
            )
        return self._eps_cache[steps]

    def epsilon(self) -> float:
        """Epsilon spent so far, from Opacus' accountant attached to the optimizer."""
        steps = self.steps
        if steps == 0:
            return 0.0
        if self.noise_multiplier == 0:
            return math.inf
        if steps not in self._eps_cache:
            self._eps_cache[steps] = epsilon_of(
                self.accountant.history, self.delta, self.accountant_name
            )
        return self._eps_cache[steps]

    def summary(self) -> dict[str, Any]:
        """What ``metrics.json`` and ``meta.json`` record under ``privacy``."""
        from robustai.privacy.statement import privacy_statement

        epsilon = self.epsilon()
        out: dict[str, Any] = {
            "method": "dpsgd",
            "epsilon": epsilon,
            "delta": self.delta,
            "accountant": self.accountant_name,
            # the one whose figure epsilon is: RDP's bound where PRV's would take minutes
            "epsilon_accountant": epsilon_accountant(epsilon, self.accountant_name),
            "adjacency": "add/remove one record",
            "noise_multiplier": self.noise_multiplier,
            "max_grad_norm": self.max_grad_norm,
            "sample_rate": self.sample_rate,
            "expected_batch_size": self.expected_batch_size,
            "steps": self.steps,
            "steps_per_epoch": self.steps_per_epoch,
            "num_samples": self.num_samples,
            "target_epsilon": self.target_epsilon,
            "max_epsilon": self.max_epsilon,
            "stopped_by_budget": self.stopped_by_budget,
            "grad_sample_mode": self.grad_sample_mode,
            "reproducible_noise": self.reproducible_noise,
        }
        out["statement"] = privacy_statement(out)
        return out


class DPObjective:
    """Cross-entropy on clean or adversarial inputs, with DP-SGD's per-sample loss.

    The attack (if any) runs with Opacus' hooks off, then the hooks are switched on for the one
    training forward/backward whose gradients the optimizer clips and noises. It runs eagerly:
    Poisson batches vary in size, and a CUDA graph is captured per batch shape, so graphs would
    be captured again for most batches and replayed for few (on an H200, about 100 captures in
    160 steps of small_cnn on MNIST, and no faster than eager).
    """

    def __init__(
        self, dp: DPSGD, attack: Attack | None = None, eps_warmup_epochs: float = 0.0
    ) -> None:
        self.dp = dp
        if attack is not None and attack.cuda_graph:
            log.warning(
                "DP-SGD: the training attack runs without CUDA graphs (Poisson batches vary in "
                "size, and each size would be captured anew); evaluation attacks are not affected"
            )
            attack = attack.with_cuda_graph(False)
        self._adv = AdversarialObjective(attack, eps_warmup_epochs) if attack is not None else None
        self.adversarial = attack is not None
        self._checked = False

    def __call__(
        self, model: nn.Module, x: Tensor, y: Tensor, progress: float
    ) -> tuple[Any, Tensor]:
        self.dp.model.disable_hooks()  # type: ignore[operator]
        if self._adv is not None:
            x = self._adv.attack_at(progress)(model, x, y)  # the attack checks x's range
        elif not self._checked:  # as StandardObjective: the first batch's range
            check_inputs_in_range(x, "training inputs")
            self._checked = True
        self.dp.start_training_pass()
        logits = model(x)
        return self.dp.loss(logits, y), logits


@dataclass
class PrivacyBudgetCallback:
    """Each epoch: epsilon spent (``stats.extra['privacy_epsilon']``); stops training before an
    epoch whose steps would take epsilon past ``max_epsilon``, and warns once when training goes
    on past the epochs that ``target_epsilon`` was calibrated for (the noise was sized for
    ``DPSGD(epochs=...)``; a Trainer given more epochs spends more).

    Every epoch has the same number of steps, so the epsilon after the next epoch is known
    exactly in advance.
    """

    dp: DPSGD
    _warned: bool = field(default=False, init=False, repr=False)

    def on_epoch_end(self, trainer: Trainer, stats: EpochStats) -> None:
        dp = self.dp
        eps = dp.epsilon()
        stats.extra["privacy_epsilon"] = eps
        log.info("privacy: epsilon %.4g at delta %.3g after %d steps", eps, dp.delta, dp.steps)
        if dp.target_epsilon is not None and eps > dp.target_epsilon and not self._warned:
            self._warned = True
            log.warning(
                "privacy: epsilon %.4g is past target_epsilon=%g: the noise was calibrated for "
                "%d epochs and this is epoch %d; give DPSGD(epochs=...) the epochs you train, "
                "or max_epsilon to stop at the budget",
                eps,
                dp.target_epsilon,
                dp.epochs,
                stats.epoch + 1,
            )
        if dp.max_epsilon is None or stats.epoch + 1 >= trainer.epochs:
            return
        nxt = dp.epsilon_after(dp.steps + dp.steps_per_epoch)
        if nxt > dp.max_epsilon:
            dp.stopped_by_budget = True
            trainer.request_stop(
                f"privacy budget: another epoch would spend epsilon {nxt:.4g} > "
                f"privacy.max_epsilon={dp.max_epsilon:g}; stopped at epsilon {eps:.4g}"
            )
