"""Noise layers: two differential-privacy mechanisms and one augmentation that is not one.

A *record* is one row of the batch (dim 0): an image, a feature vector or a logit vector. Both
mechanisms first clip every record into a ball around 0 whose *diameter* is the declared
``sensitivity``, so that any two records, whatever they were, differ by at most ``sensitivity``
in the mechanism's norm; then they add noise calibrated to that sensitivity. Guarantee, exactly:

- per record: the output row is differentially private with respect to replacing that record
  by any other record (local DP); other rows of the batch play no part;
- per release: each call is one release. A record passed through the layer k times has spent
  k times the budget (basic composition); nothing here counts repeated passes for you.

Noise is drawn from a generator seeded from operating-system entropy unless a seed is given
(PyTorch's generator, not a cryptographically secure one; floating-point attacks on the
textbook mechanisms (Mironov 2012) are not mitigated).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from robustai.argcheck import check_seed, is_real
from robustai.privacy.sampling import entropy_generator

WHERE: tuple[str, ...] = ("input", "features", "output")


def clip_records(x: Tensor, bound: float, p: int) -> Tensor:
    """Scale each row of ``x`` (dim 0) down so that its L``p`` norm is at most ``bound``.

    Norms and factors are computed in float64 and the records returned in float32 (float64 if
    ``x`` is), whatever ``x``'s dtype: cast back to bfloat16 (under autocast), a clipped norm
    exceeded the bound by up to 0.2%; in float32 it holds up to float32 rounding (~1e-7). The
    mechanisms add the noise in this dtype too and cast only the noisy output back to ``x``'s
    dtype: post-processing, which keeps the guarantee. Non-finite inputs are refused: their norm
    cannot be bounded.
    """
    if x.dim() < 2:
        raise ValueError(
            f"expected a batch of records (at least 2 dims), got shape {tuple(x.shape)}"
        )
    if not torch.isfinite(x).all():
        raise ValueError("records must be finite to be clipped")
    # flatten, not reshape(len(x), -1): that cannot infer -1 for an empty batch
    flat = x.flatten(1).double()
    norms = flat.norm(p=p, dim=1, keepdim=True)
    factor = (bound / norms.clamp(min=bound)).clamp(max=1.0)
    return (flat * factor).to(torch.promote_types(x.dtype, torch.float32)).view_as(x)


def _positive(name: str, value: object) -> float:
    """``value`` as a float, if it is one finite number > 0 (Python's or NumPy's), or a one-line
    ValueError: a string failed with "'>' not supported", an array with NumPy's errors."""
    if not is_real(value):
        hint = " (one number, not an array)" if hasattr(value, "shape") else ""
        raise ValueError(f"{name} must be a positive number, got {value!r}{hint}")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive number, got {value}")
    return float(value)


def _unit_open(name: str, value: object) -> float:
    """``value`` as a float in (0, 1), or a one-line ValueError (as :func:`_positive`)."""
    if not is_real(value) or not 0 < value < 1:
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")
    return float(value)


def analytic_gaussian_sigma(epsilon: float, delta: float, sensitivity: float) -> float:
    """Smallest noise std making the Gaussian mechanism (epsilon, delta)-DP for L2 sensitivity
    ``sensitivity`` (analytic Gaussian mechanism, Balle & Wang 2018, Theorem 8).

    The mechanism is (eps, delta)-DP iff
    ``Phi(D/(2s) - eps*s/D) - exp(eps) * Phi(-D/(2s) - eps*s/D) <= delta``; the left side falls
    as ``s`` grows, so the root is found by bracketing. Exact for every eps > 0, unlike the
    classical ``sqrt(2 ln(1.25/delta)) * D / eps``, which holds only for eps < 1 and is loose.
    """
    from scipy.optimize import brentq  # here: scipy.optimize adds 0.3 s to every CLI start

    epsilon = _positive("epsilon", epsilon)
    delta = _unit_open("delta", delta)
    sensitivity = _positive("sensitivity", sensitivity)

    # delta depends on sigma / sensitivity only: solve for sensitivity 1 (where the bracket and
    # the tolerances stay in range) and scale, so that no sensitivity over- or underflows them
    def gap(sigma: float, d: float = 1.0) -> float:
        return gaussian_delta(epsilon, sigma, d) - delta

    lo = hi = 1.0
    while gap(hi) > 0:
        hi *= 2
    while gap(lo) <= 0:
        lo /= 2
    sigma = float(brentq(gap, lo, hi, xtol=1e-14 * hi, rtol=1e-12, maxiter=500)) * sensitivity
    if not 0 < sigma < math.inf:
        raise ValueError(
            f"sensitivity {sensitivity:g} is out of range: the noise std for epsilon {epsilon:g}"
            " and this delta is not a finite positive float"
        )
    while gap(sigma, sensitivity) > 0:  # land on the private side of the root
        sigma = math.nextafter(sigma, math.inf) if sigma < 1e-300 else sigma * (1 + 1e-12)
    return sigma


def gaussian_delta(epsilon: float, sigma: float, sensitivity: float) -> float:
    """The exact delta of the Gaussian mechanism at ``epsilon`` (Balle & Wang 2018, Thm. 8)."""
    from scipy.special import log_ndtr, ndtr

    a = sensitivity / (2 * sigma)
    b = epsilon * sigma / sensitivity
    return float(ndtr(a - b) - math.exp(epsilon + log_ndtr(-a - b)))


class _Mechanism(nn.Module):
    """Clip each record, add noise; optionally clamp into ``output_range`` (post-processing,
    which keeps the guarantee)."""

    norm: int = 1

    def __init__(
        self,
        sensitivity: float,
        epsilon: float,
        *,
        output_range: tuple[float, float] | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.sensitivity = _positive("sensitivity", sensitivity)
        self.epsilon = _positive("epsilon", epsilon)
        if output_range is not None and not (
            len(output_range) == 2 and float(output_range[0]) < float(output_range[1])
        ):
            raise ValueError(f"output_range must be (low, high), low < high; got {output_range}")
        self.output_range = output_range
        self._generator = generator
        self._seed = check_seed("seed", seed)
        self.releases = 0  # rows released so far

    @property
    def bound(self) -> float:
        """Norm bound of a clipped record: half the sensitivity (the ball's radius)."""
        return self.sensitivity / 2

    def clip(self, x: Tensor) -> Tensor:
        return clip_records(x, self.bound, self.norm)

    def reseed(self, seed: int | None) -> None:
        """Draw the noise from a generator seeded with ``seed`` from now on (None: operating
        system entropy), e.g. a DDP rank's own stream derived from the run's seed."""
        self._seed = check_seed("seed", seed)
        self._generator = None

    def _gen(self, device: torch.device) -> torch.Generator:
        if self._generator is None or self._generator.device != device:
            self._generator = entropy_generator(device, self._seed)
        return self._generator

    def noise(self, shape: torch.Size, device: torch.device, dtype: torch.dtype) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        if not x.dtype.is_floating_point:
            # in an integer dtype the clipped record and the noise would be truncated (and wrap
            # around in uint8): not the mechanism whose epsilon is stated
            raise TypeError(
                f"the mechanism releases floating-point records; got dtype {x.dtype} (for 8-bit"
                " images pass x.float() / 255)"
            )
        clipped = self.clip(x)  # float32 or wider, whatever x's dtype
        out = (clipped + self.noise(x.shape, x.device, clipped.dtype)).to(x.dtype)
        self.releases += len(x)
        if self.output_range is not None:
            out = out.clamp(*self.output_range)
        return out


class LaplaceMechanism(_Mechanism):
    """Laplace mechanism with L1 sensitivity ``sensitivity``: pure ``epsilon``-DP per record,
    per release.

    Each record is clipped to L1 norm <= sensitivity/2 (so two records differ by at most
    ``sensitivity`` in L1), then i.i.d. Laplace noise of scale ``b = sensitivity / epsilon`` is
    added to every coordinate (variance ``2 b^2``).
    """

    norm = 1

    @property
    def scale(self) -> float:
        return self.sensitivity / self.epsilon

    def noise(self, shape: torch.Size, device: torch.device, dtype: torch.dtype) -> Tensor:
        # Laplace(0, b) = b * (E1 - E2) with E1, E2 ~ Exp(1) i.i.d.: no log(0) edge cases.
        g = self._gen(device)
        e1 = torch.empty(shape, device=device, dtype=torch.float64).exponential_(generator=g)
        e2 = torch.empty(shape, device=device, dtype=torch.float64).exponential_(generator=g)
        return (self.scale * (e1 - e2)).to(dtype)

    def extra_repr(self) -> str:
        return (
            f"sensitivity={self.sensitivity:g} (L1), epsilon={self.epsilon:g}, b={self.scale:.4g}"
        )


class GaussianMechanism(_Mechanism):
    """Gaussian mechanism with L2 sensitivity ``sensitivity``: ``(epsilon, delta)``-DP per
    record, per release.

    Each record is clipped to L2 norm <= sensitivity/2, then i.i.d. Gaussian noise is added with
    the smallest std ``sigma`` that gives (epsilon, delta) by the analytic calibration of Balle &
    Wang (2018).
    """

    norm = 2

    def __init__(
        self,
        sensitivity: float,
        epsilon: float,
        delta: float,
        *,
        output_range: tuple[float, float] | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            sensitivity, epsilon, output_range=output_range, generator=generator, seed=seed
        )
        # numpy's reals too (np.float32 from an array of settings), as the attacks take them
        self.delta = _unit_open("delta", delta)
        self.sigma = analytic_gaussian_sigma(self.epsilon, self.delta, self.sensitivity)

    def noise(self, shape: torch.Size, device: torch.device, dtype: torch.dtype) -> Tensor:
        g = self._gen(device)
        return (
            self.sigma * torch.randn(shape, generator=g, device=device, dtype=torch.float64)
        ).to(dtype)

    def extra_repr(self) -> str:
        return (
            f"sensitivity={self.sensitivity:g} (L2), epsilon={self.epsilon:g}, "
            f"delta={self.delta:g}, sigma={self.sigma:.4g}"
        )


class GaussianNoise(nn.Module):
    """Gaussian noise augmentation for noise-robust training. **No differential privacy.**

    Adds N(0, sigma^2) to every coordinate in training mode and is the identity in eval mode.
    Nothing bounds a record's influence (no clipping, no calibration to a sensitivity, and the
    clean record still shapes every gradient), so it promises no (epsilon, delta) at all. Use
    :class:`LaplaceMechanism`, :class:`GaussianMechanism` or DP-SGD for privacy.
    """

    def __init__(self, sigma: float) -> None:
        super().__init__()
        if not (is_real(sigma) and sigma >= 0 and math.isfinite(sigma)):
            raise ValueError(f"sigma must be a non-negative number, got {sigma!r}")
        self.sigma = float(sigma)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.sigma == 0:
            return x
        return x + self.sigma * torch.randn_like(x)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma:g}, no DP guarantee"


def attach(model: nn.Module, layer: nn.Module, where: str) -> RemovableHandle:
    """Run ``layer`` on the model's input, its features (the input of its last Linear layer) or
    its output, through a forward hook. The model's parameters and ``state_dict`` do not change,
    so saved weights stay loadable; call ``.remove()`` on the handle to detach the layer.

    The layer follows the train/eval mode of the module it is hooked to.
    """
    if where not in WHERE:
        raise ValueError(f"unknown placement '{where}'; valid: {', '.join(WHERE)}")
    for name, value in (("model", model), ("layer", layer)):  # else it failed at the forward
        if not isinstance(value, nn.Module):
            raise TypeError(
                f"{name} must be a torch.nn.Module (e.g. LaplaceMechanism(...)); got"
                f" {type(value).__name__}"
            )

    def apply(module: nn.Module, x: Tensor) -> Tensor:
        layer.train(module.training)
        return layer(x)

    if where == "output":
        return model.register_forward_hook(lambda m, args, out: apply(m, out))
    target = model
    if where == "features":
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError("privacy.where=features needs a model with a final Linear layer")
        target = linears[-1]

    def pre(m: nn.Module, args: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        return (apply(m, args[0]), *args[1:])

    return target.register_forward_pre_hook(pre)
