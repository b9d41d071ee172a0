"""Square Attack: a score-based black-box attack by random search (L-inf and L2).

Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a query-efficient black-box adversarial
attack via random search", ECCV 2020. It needs only the model's scores, never a gradient, which is
why it belongs in every robustness evaluation: a model whose gradients are masked (quantized
inputs, saturated softmax, ...) stops gradient attacks but not Square.

The implementation follows the L-inf version used by AutoAttack (github.com/fra31/auto-attack,
``square.py``), which ``torchattacks.Square`` reproduces: margin loss, an initialisation with
vertical stripes of +-eps, then at each query one square window of side ``s`` (shared by the batch,
one +-2*eps value per channel) is proposed and kept per sample if it lowers the margin; ``s``
shrinks on the reference schedule of ``p`` (fraction of pixels changed), starting at
``p_init = 0.8`` and rescaled to ``n_queries = 5000``. Random numbers come from a private
generator seeded with ``seed`` (0, as the reference), so an evaluation repeats exactly.

The L2 version is the reference's too: the perturbation starts as a grid of blocks, each a
centred pattern of nested squares of opposite signs in its two halves (``eta``), random in sign per
channel, scaled to norm eps; each query moves the mass of one window of side ``s`` (odd, at least
3) onto another and adds a fresh pattern there, keeping the norm eps (before clipping to [0, 1]).

One difference from the reference: a sample counts as fooled, and leaves the search, when argmax
misclassifies it (:func:`~robustai.attacks.base.labels_of`, as the evaluator counts), not when its
margin reaches 0. With capped, clipped or quantized logits the true class often ties with another
at margin 0 while argmax still picks it; the reference stops searching there, so such a sample
was counted robust however many queries were allowed. With untied logits both tests agree.
"""

from __future__ import annotations

import logging
import math
from typing import ClassVar

import torch
from torch import Tensor, nn

from robustai.argcheck import is_integer, is_real
from robustai.attacks.apgd import seeded_generator
from robustai.attacks.base import Attack, labels_of, per_sample_view

logger = logging.getLogger(__name__)

# (iteration upper bound on the 10,000-query scale, divisor of p_init) of the reference schedule
_P_SCHEDULE: tuple[tuple[int, int], ...] = (
    (10, 1),
    (50, 2),
    (200, 4),
    (500, 8),
    (1000, 16),
    (2000, 32),
    (4000, 64),
    (6000, 128),
    (8000, 256),
)


def margin(logits: Tensor, y: Tensor) -> Tensor:
    """``z_y - max_{i != y} z_i`` per sample: positive while the sample is classified correctly.
    At least float32 (under autocast the logits are bf16 or fp16), so that every margin the
    attack compares and keeps has one dtype."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], -float("inf"))
    return z_y - others.max(dim=1)[0]


def _accept(
    x_new: Tensor,
    logits: Tensor,
    x_best: Tensor,
    margin_min: Tensor,
    idx: Tensor,
    xb: Tensor,
    ya: Tensor,
    ma: Tensor,
    *rest: Tensor,
) -> tuple[Tensor, ...]:
    """One step of the random search, for the samples ``idx`` still searched (their point
    ``xb``, label ``ya``, margin ``ma`` and ``rest``, gathered): keep the proposal ``x_new``
    where it lowers the margin or misclassifies (a tie that argmax breaks against y, or NaN
    logits: no prediction, as the evaluator counts them); a sample fooled is written into
    ``x_best`` / ``margin_min`` and searched no more. Returns ``(idx, xb, ya, ma, *rest)`` of
    those still searched."""
    m = margin(logits, ya)
    fooled = labels_of(logits) != ya
    keep = (m < ma) | fooled
    ma = torch.where(keep, m, ma)
    xb = torch.where(per_sample_view(keep, x_new), x_new, xb)
    if not bool(fooled.any()):
        return (idx, xb, ya, ma, *rest)
    x_best[idx[fooled]], margin_min[idx[fooled]] = xb[fooled], ma[fooled]
    alive = ~fooled
    return (idx[alive], xb[alive], ya[alive], ma[alive], *(t[alive] for t in rest))


def _eta_rectangles(h: int, w: int) -> Tensor:
    """Nested centred rectangles, the k-th from the centre weighted 1 / k**2, of unit L2 norm
    (the reference's ``eta_rectangles``)."""
    delta = torch.zeros(h, w)
    ch, cw = h // 2, w // 2
    for k in range(max(ch + 1, cw + 1)):
        delta[
            max(ch - k, 0) : min(ch - k + 2 * k + 1, h), max(cw - k, 0) : min(cw - k + 2 * k + 1, w)
        ] += 1.0 / (k + 1) ** 2
    return delta / delta.square().sum().sqrt()


class Square(Attack):
    """Square Attack (L-inf and L2), untargeted, with the margin loss.

    Defaults are AutoAttack's: ``n_queries=5000`` per restart, ``p_init=0.8``, ``restarts=1``,
    ``seed=0``. Inputs must be images ``(N, C, H, W)``. Only samples classified correctly are
    attacked; a sample is returned at the point that fooled it, else at its lowest-margin point.
    """

    name: ClassVar[str] = "square"
    #: needs only the model's outputs; the evaluator's sanity checks compare it with the
    #: gradient attacks.
    gradient_free: ClassVar[bool] = True

    def __init__(
        self,
        eps: float,
        norm: str = "linf",
        n_queries: int = 5000,
        restarts: int = 1,
        p_init: float = 0.8,
        seed: int | None = 0,
        model_mode: str = "eval",
    ) -> None:
        super().__init__(eps, norm=norm, model_mode=model_mode)
        if not is_integer(n_queries) or n_queries < 1:
            raise ValueError(f"n_queries must be an integer >= 1; got {n_queries!r}")
        if not is_integer(restarts) or restarts < 1:
            raise ValueError(f"restarts must be an integer >= 1; got {restarts!r}")
        if not is_real(p_init) or not 0.0 < p_init <= 1.0:
            raise ValueError(f"p_init must be a number in (0, 1]; got {p_init!r}")
        if seed is not None and not (is_integer(seed) and 0 <= seed < 2**64):
            # torch's generators take [0, 2**64): a larger one failed at the first attack
            raise ValueError(f"seed must be an integer in [0, 2**64) or None; got {seed!r}")
        self.n_queries = int(n_queries)
        self.restarts = int(restarts)
        self.p_init = float(p_init)
        self.seed = None if seed is None else int(seed)

    @property
    def label(self) -> str:
        label = "square" if self.norm == "linf" else "square_l2"
        return label if self.restarts == 1 else f"{label}_r{self.restarts}"

    def p_selection(self, it: int) -> float:
        """Fraction of pixels in the proposed square at query ``it`` (the reference schedule)."""
        it = int(it / self.n_queries * 10000)
        for bound, div in _P_SCHEDULE:
            if it <= bound:
                return self.p_init / div
        return self.p_init / 512

    # ------------------------------------------------------------------ attack
    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"Square needs image batches (N, C, H, W); got shape {tuple(x.shape)}")
        generator = seeded_generator(self.seed)
        with torch.no_grad():
            robust = labels_of(model(x)) == y
            adv = x.clone()
            best = torch.full((x.shape[0],), float("inf"), device=x.device)
            best = best.to(torch.promote_types(x.dtype, torch.float32))
            for _ in range(self.restarts):
                idx = robust.nonzero(as_tuple=True)[0]
                if idx.numel() == 0:
                    break
                run = self._single_run if self.norm == "linf" else self._single_run_l2
                x_best, m = run(model, x[idx], y[idx], generator)
                m = m.to(best.dtype)  # float64 from a model whose logits are float64
                fooled = labels_of(model(x_best)) != y[idx]
                robust[idx[fooled]] = False
                adv[idx[fooled]] = x_best[fooled]
                better = ~fooled & (m < best[idx])
                adv[idx[better]] = x_best[better]
                best[idx[better]] = m[better]
        return adv

    def _rand(self, shape: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
        return torch.rand(shape, generator=generator)

    def _single_run(
        self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        """Random search from the stripes initialisation: (best point, its margin)."""
        b, c, h, w = x.shape
        eps = self.eps
        n_features = c * h * w

        def sign(shape: tuple[int, ...]) -> Tensor:
            return torch.sign(2 * self._rand(shape, generator) - 1).to(x.device, x.dtype)

        x_best = torch.clamp(x + eps * sign((b, c, 1, w)), 0.0, 1.0)
        logits = model(x_best)
        margin_min = margin(logits, y)

        # The samples still classified correctly, kept gathered between queries; written back
        # into x_best / margin_min when they are fooled, and at the end. "Correctly" as the
        # evaluator counts (labels_of), not "margin > 0": at a tie (margin 0: capped, clipped or
        # quantized logits) argmax may still give y, and the reference's margin test would stop
        # searching there although the sample is not yet fooled.
        idx = (labels_of(logits) == y).nonzero(as_tuple=True)[0]
        xa, xb, ya, ma = x[idx], x_best[idx], y[idx], margin_min[idx]
        lo, hi = xa - eps, xa + eps
        for i in range(self.n_queries):
            if idx.numel() == 0:
                break
            p = self.p_selection(i)
            s = min(max(round(math.sqrt(p * n_features / c)), 1), h, w)
            vh = int((h - s) * self._rand((1,), generator))
            vw = int((w - s) * self._rand((1,), generator))
            window = torch.zeros((c, h, w), dtype=x.dtype, device=x.device)
            window[:, vh : vh + s, vw : vw + s] = 2.0 * eps * sign((c, 1, 1))

            x_new = torch.min(torch.max(xb + window, lo), hi).clamp(0.0, 1.0)
            idx, xb, ya, ma, xa, lo, hi = _accept(
                x_new, model(x_new), x_best, margin_min, idx, xb, ya, ma, xa, lo, hi
            )
        x_best[idx], margin_min[idx] = xb, ma
        return x_best, margin_min

    def _eta(self, s: int, generator: torch.Generator | None) -> Tensor:
        """The reference's window pattern: nested squares, positive in one half and negative in
        the other, of unit norm, transposed with probability 1/2."""
        delta = torch.zeros(s, s)
        delta[: s // 2] = _eta_rectangles(s // 2, s) if s // 2 else delta[:0]
        delta[s // 2 :] = -_eta_rectangles(s - s // 2, s)
        delta /= delta.square().sum().sqrt()
        if float(self._rand((1,), generator)) > 0.5:
            delta = delta.t()
        return delta

    def _single_run_l2(
        self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        """L2 random search from the reference's block initialisation: (best point, margin).
        The perturbation is computed in at least float32 (its 1e-12 guards and the window norms
        vanish in float16) and each point rounded to the input's dtype before the model sees it;
        the points kept are the rounded ones."""
        dtype = x.dtype
        x = x.to(torch.promote_types(dtype, torch.float32))
        b, c, h, w = x.shape

        def query(z: Tensor) -> tuple[Tensor, Tensor]:
            z = z.to(dtype)
            return z.to(x.dtype), model(z)

        eps = self.eps
        n_features = c * h * w

        def sign(shape: tuple[int, ...]) -> Tensor:
            return torch.sign(2 * self._rand(shape, generator) - 1).to(x.device, x.dtype)

        def norm(t: Tensor) -> Tensor:
            return per_sample_view(t.reshape(t.shape[0], -1).norm(p=2, dim=1), t)

        def onto_sphere(delta: Tensor) -> Tensor:
            return delta / (norm(delta) + 1e-12) * eps

        delta = torch.zeros_like(x)
        s = max(h // 5, 1)
        start = (h - s * 5) // 2
        for i in range(h // s):
            for j in range(w // s):
                vh, vw = start + i * s, start + j * s  # (past the edge: cut, as the reference)
                pattern = self._eta(s, generator).to(x.device, x.dtype)
                block = delta[:, :, vh : vh + s, vw : vw + s]
                block += pattern[: block.shape[2], : block.shape[3]] * sign((b, c, 1, 1))
        x_best, logits = query(torch.clamp(x + onto_sphere(delta), 0.0, 1.0))
        margin_min = margin(logits, y)

        # as the L-inf search: the samples still classified correctly, kept gathered
        idx = (labels_of(logits) == y).nonzero(as_tuple=True)[0]
        xa, xb, ya, ma = x[idx], x_best[idx], y[idx], margin_min[idx]
        for i in range(self.n_queries):
            if idx.numel() == 0:
                break
            n = idx.numel()
            d = xb - xa
            p = self.p_selection(i)
            s = max(round(math.sqrt(p * n_features / c)), 3)
            s = min(s + 1 if s % 2 == 0 else s, h, w)
            vh = int((h - s) * self._rand((1,), generator))
            vw = int((w - s) * self._rand((1,), generator))
            vh2 = int((h - s) * self._rand((1,), generator))
            vw2 = int((w - s) * self._rand((1,), generator))
            window = d[:, :, vh : vh + s, vw : vw + s]
            norms_window = window.square().sum(dim=(-2, -1), keepdim=True).sqrt()
            mask = torch.zeros((1, 1, h, w), dtype=x.dtype, device=x.device)
            mask[:, :, vh : vh + s, vw : vw + s] = 1.0
            mask[:, :, vh2 : vh2 + s, vw2 : vw2 + s] = 1.0
            norms_image, norms_windows = norm(d), norm(d * mask)

            new = self._eta(s, generator).to(x.device, x.dtype) * sign((n, c, 1, 1))
            new = new + window / (1e-12 + norms_window)
            budget = (eps**2 - norms_image.square()).clamp(min=0.0) / c + norms_windows.square()
            new = new / (1e-12 + new.square().sum(dim=(-2, -1), keepdim=True).sqrt())
            d[:, :, vh2 : vh2 + s, vw2 : vw2 + s] = 0.0
            d[:, :, vh : vh + s, vw : vw + s] = new * budget.sqrt()

            x_new, logits = query(torch.clamp(xa + onto_sphere(d), 0.0, 1.0))
            idx, xb, ya, ma, xa = _accept(x_new, logits, x_best, margin_min, idx, xb, ya, ma, xa)
        x_best[idx], margin_min[idx] = xb, ma
        return x_best.to(dtype), margin_min
