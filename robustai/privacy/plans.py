"""What each ``privacy`` option does to a run, behind one small interface.

A run asks its privacy plan, in order: :meth:`prepare_data` (before the model is built),
:meth:`prepare_model`, :meth:`wrap` (the training parts), :meth:`finish` (the model to evaluate
and save), then :meth:`summary` (``metrics.json``'s ``privacy``: a dict with ``epsilon`` and
``delta``, or None when there is no DP guarantee), :meth:`describe` (``meta.json``) and
:meth:`statement` (one sentence). :func:`build_privacy` is the registry's factory.
"""

from __future__ import annotations

import difflib
import inspect
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.optim import Optimizer

from robustai.data import DataBundle
from robustai.data.split import channel_stats
from robustai.distributed import rank_seed
from robustai.privacy.mechanisms import (
    WHERE,
    GaussianMechanism,
    GaussianNoise,
    LaplaceMechanism,
    attach,
)
from robustai.privacy.statement import NO_GUARANTEE, privacy_statement
from robustai.training.objectives import AdversarialObjective, StandardObjective

if TYPE_CHECKING:  # robustai.privacy.dpsgd loads Opacus (seconds): imported by the DP-SGD plan
    from robustai.privacy.dpsgd import DPSGD

log = logging.getLogger(__name__)

#: How DP-SGD computes per-sample gradient norms (see
#: :func:`robustai.privacy.dpsgd.choose_grad_sample_mode`).
GRAD_SAMPLE_MODES: tuple[str, ...] = ("auto", "ghost", "hooks")

#: Data-independent normalization for DP runs: statistics of the private training set baked
#: into the model's Normalize layer would be a release the accountant does not see. Inputs stay
#: in [0, 1] (centring at 0.5 trained markedly worse with DP-SGD on MNIST).
DP_MEAN, DP_STD = 0.0, 1.0


@dataclass
class TrainingParts:
    """What the training loop runs with."""

    model: nn.Module
    optimizer: Optimizer
    objective: Any
    loader: Iterable[tuple[Tensor, Tensor]]
    callbacks: list[Any] = field(default_factory=list)
    #: extra objects with state_dict()/load_state_dict() that a resumable checkpoint must hold
    state: dict[str, Any] = field(default_factory=dict)


class NoPrivacy:
    """``privacy=none``: nothing changes."""

    name = "none"
    #: True when :meth:`wrap` with ``distributed=True`` synchronizes the ranks itself (DP-SGD's
    #: noise must be added once, not per rank); otherwise the caller wraps the model in DDP.
    handles_distributed = False
    #: True when :meth:`prepare_data` replaces the training inputs by a private release: under
    #: DDP every rank must then train on rank 0's release (one release per record, not per rank).
    releases_inputs = False

    def prepare_data(self, data: DataBundle) -> None:
        return None

    def prepare_model(self, model: nn.Module) -> nn.Module:
        return model

    def wrap(
        self,
        model: nn.Module,
        optimizer: Optimizer,
        objective: Any,
        train: Any,
        epochs: int,
        distributed: bool = False,
    ) -> TrainingParts:
        return TrainingParts(model, optimizer, objective, train)

    def finish(self, model: nn.Module) -> nn.Module:
        return model

    def summary(self) -> dict[str, Any] | None:
        return None

    def query_summary(self) -> dict[str, Any] | None:
        """``metrics.json``'s ``query_privacy``: the accounting of a mechanism that protects
        each query, not the training data (``where=features|output``); None otherwise."""
        return None

    def describe(self) -> dict[str, Any] | None:
        return self.summary()

    def statement(self) -> str:
        return NO_GUARANTEE


def _data_independent_normalization(data: DataBundle) -> None:
    c = len(data.mean)
    data.mean, data.std = (DP_MEAN,) * c, (DP_STD,) * c
    log.info(
        "privacy: the model normalizes with fixed mean %g / std %g, not the training set's "
        "statistics (those would leak outside the guarantee)",
        DP_MEAN,
        DP_STD,
    )


class DPSGDPrivacy(NoPrivacy):
    """``privacy=dpsgd``: DP-SGD over Opacus (see :class:`~robustai.privacy.dpsgd.DPSGD`)."""

    name = "dpsgd"
    handles_distributed = True

    def __init__(
        self,
        noise_multiplier: float | None = None,
        target_epsilon: float | None = None,
        delta: float | None = None,
        max_grad_norm: float = 1.0,
        accountant: str = "prv",
        max_epsilon: float | None = None,
        grad_sample_mode: str = "auto",
        fix_model: bool = False,
        noise_seed: int | None = None,
    ) -> None:
        if (noise_multiplier is None) == (target_epsilon is None):
            raise ValueError("give exactly one of noise_multiplier and target_epsilon")
        self.kwargs = dict(
            noise_multiplier=noise_multiplier,
            target_epsilon=target_epsilon,
            delta=delta,
            max_grad_norm=max_grad_norm,
            accountant=accountant,
            max_epsilon=max_epsilon,
            grad_sample_mode=grad_sample_mode,
            noise_seed=noise_seed,
        )
        self.fix_model = fix_model
        self.replaced: list[str] = []
        self.dp: DPSGD | None = None

    def prepare_data(self, data: DataBundle) -> None:
        _data_independent_normalization(data)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        from robustai.privacy.dpsgd import check_dp_compatible, make_dp_compatible

        if not self.fix_model:
            check_dp_compatible(model)
            return model
        model, self.replaced = make_dp_compatible(model)
        if self.replaced:
            log.warning(
                "privacy.fix_model: replaced %d BatchNorm layers by GroupNorm (%s%s) for DP-SGD",
                len(self.replaced),
                ", ".join(self.replaced[:3]),
                ", ..." if len(self.replaced) > 3 else "",
            )
        return model

    def wrap(
        self,
        model: nn.Module,
        optimizer: Optimizer,
        objective: Any,
        train: Any,
        epochs: int,
        distributed: bool = False,
    ) -> TrainingParts:
        from robustai.privacy.dpsgd import DPSGD

        if isinstance(objective, AdversarialObjective):
            attack, warmup = objective.attack, objective.eps_warmup_epochs
        elif isinstance(objective, StandardObjective):
            attack, warmup = None, 0.0
        else:
            raise ValueError(
                f"DP-SGD supports the standard and adversarial objectives, not "
                f"{type(objective).__name__}"
            )
        self.dp = DPSGD(
            model,
            optimizer,
            train.x,
            train.y,
            batch_size=train.batch_size,
            epochs=epochs,
            distributed=distributed,
            **self.kwargs,  # type: ignore[arg-type]
        )
        # a per-image augmentation (data.augment) applies to the Poisson batches as well: each
        # record's transform depends on that record alone, so the accounting is unchanged
        self.dp.loader.augment = getattr(train, "augment", None)
        return TrainingParts(
            self.dp.model,
            self.dp.optimizer,
            self.dp.objective(attack, warmup),
            self.dp.loader,
            [self.dp.callback()],
            {"privacy": self.dp},
        )

    def finish(self, model: nn.Module) -> nn.Module:
        return self.dp.release() if self.dp is not None else model

    def summary(self) -> dict[str, Any] | None:
        if self.dp is None:
            return None
        out = self.dp.summary()
        out["model_fixed"] = self.replaced
        return out

    def statement(self) -> str:
        return privacy_statement(self.summary())


class MechanismPrivacy(NoPrivacy):
    """``privacy=laplace|gaussian``: a DP noise mechanism on the inputs, features or output.

    ``where=input`` releases every training image once through the mechanism before training
    (clamped back into [0, 1], which is post-processing); the model then only ever sees the
    released images, so the guarantee covers all of training. ``where=features|output`` puts the
    mechanism inside the model (train and eval): each forward pass is a release of that
    representation, which protects queries, not the training data.
    """

    #: the release (its only checkpoint state) never changes during a run: checkpoints share
    #: one copy of it instead of each holding the whole data set again
    checkpoint_once = True

    def __init__(
        self,
        mechanism: str,
        where: str = "input",
        sensitivity: float = 1.0,
        epsilon: float | None = None,
        delta: float | None = None,
        noise_seed: int | None = None,
    ) -> None:
        if where not in WHERE:
            raise ValueError(f"unknown placement '{where}'; valid: {', '.join(WHERE)}")
        if epsilon is None:
            raise ValueError(f"the {mechanism} mechanism needs epsilon")
        self.name = mechanism
        self.where = where
        output_range = (0.0, 1.0) if where == "input" else None
        if mechanism == "laplace":
            self.layer: LaplaceMechanism | GaussianMechanism = LaplaceMechanism(
                sensitivity, epsilon, output_range=output_range, seed=noise_seed
            )
        else:
            if delta is None:
                raise ValueError("the Gaussian mechanism needs delta")
            self.layer = GaussianMechanism(
                sensitivity, epsilon, delta, output_range=output_range, seed=noise_seed
            )
        self.noise_seed = noise_seed
        self.handle: Any = None
        self.num_records: int | None = None
        self.releases_inputs = where == "input"
        self._data: DataBundle | None = None  # whose training inputs are the release
        self._restored: Tensor | None = None  # a checkpoint's release, for prepare_data

    def prepare_data(self, data: DataBundle) -> None:
        if self.where != "input":
            return
        x = data.train.x
        n = len(x)
        if isinstance(self.layer, GaussianMechanism) and not self.layer.delta < 1.0 / n:
            raise ValueError(
                f"delta={self.layer.delta:g} must be below 1/N = {1.0 / n:.3g} for N={n} "
                "training images"
            )
        self._data = data
        self.num_records = n
        if self._restored is not None:  # a resumed run: the checkpointed run's one release
            data.train.x = self._checked(self._restored).to(dtype=x.dtype)
            data.mean, data.std = channel_stats(data.train.x)
            log.info("privacy: the %d training images are the checkpoint's release", n)
            return
        with torch.no_grad():
            data.train.x = torch.cat([self.layer(chunk) for chunk in x.split(4096)])
        data.mean, data.std = channel_stats(data.train.x)  # of the released images only
        log.info("privacy: released the %d training images once through %r", n, self.layer)

    def _checked(self, released: Tensor) -> Tensor:
        assert self._data is not None
        shape = self._data.train.x.shape
        if released.shape != shape:
            raise ValueError(
                f"the released images have shape {tuple(released.shape)}, the training set "
                f"{tuple(shape)}"
            )
        return released

    def state_dict(self) -> dict[str, Any]:
        """The released training images (``where=input``): a resumed run must train on the same
        release, since a second one would spend the budget again. The release is DP output, so
        keeping it in a checkpoint is post-processing; the noise's seed is never kept."""
        return {"released": self._data.train.x if self._data is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        released = state["released"]
        if released is None or released is self._restored:
            return  # nothing saved, or the release resume_release put in place already
        self._restored = released
        if self._data is not None:  # loaded after prepare_data: the fresh release gives way
            x = self._data.train.x
            with torch.no_grad():
                x.copy_(self._checked(released))  # in place: views of the inputs see it too
            self._data.mean, self._data.std = channel_stats(x.cpu())

    def wrap(
        self,
        model: nn.Module,
        optimizer: Optimizer,
        objective: Any,
        train: Any,
        epochs: int,
        distributed: bool = False,
    ) -> TrainingParts:
        parts = super().wrap(model, optimizer, objective, train, epochs, distributed)
        if self.releases_inputs:
            parts.state["privacy"] = self  # the release joins every checkpoint
        return parts

    def prepare_model(self, model: nn.Module) -> nn.Module:
        if self.where != "input":
            rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
            if self.noise_seed is not None and rank > 0:
                # Each rank queries the model with its own part of every batch: with the one
                # seed everywhere, every noise draw would repeat on each rank. Rank 0 keeps the
                # seed itself, as a single process does. (where=input releases once, on rank 0.)
                self.layer.reseed(rank_seed(self.noise_seed, rank))
            self.handle = attach(model, self.layer, self.where)
            log.warning(
                "privacy: %r on the model's %s protects each query's %s, not the training "
                "data; evaluation runs on the noisy model",
                self.layer,
                self.where,
                self.where,
            )
        return model

    def summary(self) -> dict[str, Any] | None:
        """The training data's guarantee: only a release of the training images gives one
        (``where=input``); inside the model the mechanism protects queries, and its epsilon is
        not a training-data epsilon to compare with DP-SGD's (see :meth:`query_summary`)."""
        return self.accounting() if self.where == "input" else None

    def query_summary(self) -> dict[str, Any] | None:
        return None if self.where == "input" else self.accounting()

    def describe(self) -> dict[str, Any] | None:
        """meta.json: the mechanism wherever it runs, so ``robustai evaluate`` can put a
        query mechanism back into the model it evaluates."""
        return self.accounting()

    def accounting(self) -> dict[str, Any]:
        """The mechanism's parameters and what one release of it guarantees."""
        layer = self.layer
        gaussian = isinstance(layer, GaussianMechanism)
        out: dict[str, Any] = {
            "method": self.name,
            "where": self.where,
            "epsilon": layer.epsilon,
            "delta": layer.delta if gaussian else 0.0,
            "sensitivity": layer.sensitivity,
            "norm": "l2" if gaussian else "l1",
            "clip_bound": layer.bound,
            "noise_scale": layer.sigma if gaussian else layer.scale,
            "adjacency": "replace one record",
            "per": "training image (released once)" if self.where == "input" else "release",
            "num_samples": self.num_records,
            "reproducible_noise": self.noise_seed is not None,
        }
        out["statement"] = privacy_statement(out)
        return out

    def statement(self) -> str:
        return privacy_statement(self.accounting())


class NoiseAugmentation(NoPrivacy):
    """``privacy=gaussian_noise``: Gaussian noise augmentation in training. No DP guarantee."""

    name = "gaussian_noise"

    def __init__(self, sigma: float = 0.1, where: str = "input") -> None:
        if where not in WHERE:
            raise ValueError(f"unknown placement '{where}'; valid: {', '.join(WHERE)}")
        self.layer = GaussianNoise(sigma)
        self.where = where

    def prepare_model(self, model: nn.Module) -> nn.Module:
        attach(model, self.layer, self.where)
        log.info(
            "noise augmentation: %r on the model's %s during training (no DP guarantee)",
            self.layer,
            self.where,
        )
        return model

    def describe(self) -> dict[str, Any] | None:
        return {"method": self.name, "sigma": self.layer.sigma, "where": self.where, "dp": False}

    def statement(self) -> str:
        return privacy_statement(self.describe())


PRIVACY: dict[str, Callable[..., NoPrivacy]] = {
    "none": NoPrivacy,
    "dpsgd": DPSGDPrivacy,
    "laplace": lambda **kw: MechanismPrivacy("laplace", **kw),
    "gaussian": lambda **kw: MechanismPrivacy("gaussian", **kw),
    "gaussian_noise": NoiseAugmentation,
}

_PARAMS: dict[str, Callable[..., Any]] = {
    "none": NoPrivacy,
    "dpsgd": DPSGDPrivacy.__init__,
    "laplace": MechanismPrivacy.__init__,
    "gaussian": MechanismPrivacy.__init__,
    "gaussian_noise": NoiseAugmentation.__init__,
}


def attach_query_mechanism(model: nn.Module, described: Any) -> MechanismPrivacy | None:
    """Put the query mechanism a run's ``meta.json`` describes (``privacy.where=features|
    output``) back into ``model``, fresh noise and all: the run evaluated its model with the
    mechanism in place, and an evaluation of the saved weights must too. None (nothing
    attached) for every other privacy option."""
    plan = query_mechanism_plan(described)
    if plan is not None:
        plan.prepare_model(model)
    return plan


def query_mechanism_plan(described: Any) -> MechanismPrivacy | None:
    """The query mechanism ``meta.json``'s privacy record ``described`` names, built but not
    attached (None when it names none); ValueError/KeyError/TypeError for a record robustai
    cannot rebuild."""
    if not isinstance(described, dict) or described.get("where") not in ("features", "output"):
        return None
    if described.get("method") == NoiseAugmentation.name:
        return None  # training-time noise: no part of the model at evaluation
    if described.get("method") not in ("laplace", "gaussian"):
        # another method there is no record robustai wrote ("Laplace"), and leaving the
        # noise out would evaluate another model than the run reported on
        raise ValueError(
            f"method {described.get('method')!r} at where={described['where']}: the query"
            " mechanisms are laplace and gaussian"
        )
    return MechanismPrivacy(
        described["method"],
        where=described["where"],
        sensitivity=float(described["sensitivity"]),
        epsilon=float(described["epsilon"]),
        delta=float(described["delta"]) if described["method"] == "gaussian" else None,
    )


def privacy_names() -> list[str]:
    return list(PRIVACY)


def privacy_params(name: str) -> list[str]:
    """The keyword arguments option ``name`` uses (those of other options are ignored by
    :func:`build_privacy`)."""
    if name not in PRIVACY:
        raise ValueError(f"unknown privacy '{name}'; valid: {', '.join(PRIVACY)}")
    sig = inspect.signature(_PARAMS[name])
    return [p for p in sig.parameters if p not in ("self", "mechanism")]


def build_privacy(name: str, **kwargs: Any) -> NoPrivacy:
    """The plan for option ``name``; keyword arguments that another option uses are dropped, so
    one flat config group can serve every option. A keyword no option uses is refused (a
    TypeError naming it): a misspelled ``max_epsilon`` would otherwise drop the budget."""
    used = set(privacy_params(name))
    known = {param for option in PRIVACY for param in privacy_params(option)}
    unknown = sorted(k for k in kwargs if k not in known)
    if unknown:
        hints = [difflib.get_close_matches(k, sorted(known), n=1) for k in unknown]
        what = ", ".join(
            f"{k!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
            for k, hint in zip(unknown, hints, strict=True)
        )
        raise TypeError(
            f"build_privacy got keyword argument(s) no privacy option takes: {what}; option"
            f" {name!r} takes {', '.join(privacy_params(name)) or 'none'}"
        )
    return PRIVACY[name](**{k: v for k, v in kwargs.items() if k in used})
