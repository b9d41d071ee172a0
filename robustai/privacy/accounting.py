"""Privacy accounting for DP-SGD through Opacus' accountants.

DP-SGD with Poisson sampling at rate ``q``, noise multiplier ``sigma`` and ``steps`` optimizer
steps is fully described by ``(sigma, q, steps)``; these helpers hand exactly that to Opacus'
accountants, so the epsilon reported here is Opacus' number, not a re-derivation. Accountants
bound epsilon for add/remove-one adjacency (one record more or less in the training set).
Opacus is imported where an accountant is used: loading it takes seconds, which a run without
DP-SGD (and every config check) should not pay.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence

import numpy as np

log = logging.getLogger(__name__)

#: "prv": numerical composition of privacy loss random variables (Gopi et al. 2021), the
#: tighter bound; "rdp": Renyi DP (Mironov 2017; Mironov, Talwar & Zhang 2019).
ACCOUNTANTS: tuple[str, ...] = ("prv", "rdp")

#: Above this epsilon (by the RDP bound), Opacus' PRV accounting slows to seconds, then minutes
#: a call, and then overflows (its discretization must span an ever wider privacy loss): there
#: the RDP bound is reported instead, looser but still an upper bound, as no privacy worth the
#: name is left to tighten.
PRV_MAX_EPSILON = 100.0


def epsilon_accountant(epsilon: float, accountant: str) -> str:
    """Which accountant's figure :func:`epsilon_of` gave as ``epsilon`` when asked for
    ``accountant``: RDP's above :data:`PRV_MAX_EPSILON` under ``prv``."""
    if accountant == "prv" and math.isfinite(epsilon) and epsilon > PRV_MAX_EPSILON:
        return "rdp"
    return accountant


class DeltaTooSmall(ValueError):
    """A delta below what the PRV accountant resolves in floating point: no noise fixes it."""


def default_delta(num_samples: int) -> float:
    """``min(1e-5, 1/(10 N))``: well below 1/N, since a delta of 1/N permits publishing one
    whole record outright."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    return min(1e-5, 1.0 / (10 * num_samples))


def _check_accountant(accountant: str) -> None:
    if accountant not in ACCOUNTANTS:
        raise ValueError(f"unknown accountant '{accountant}'; valid: {', '.join(ACCOUNTANTS)}")


def _check_rate_and_delta(sample_rate: float, delta: float) -> None:
    """Ranges the accountants assume; outside them Opacus fails with a division by zero or a
    math domain error, or (a rate above 1) reports a budget problem that is not one."""
    if not 0.0 < sample_rate <= 1.0:
        raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta}")


def _whole_steps(steps: float, minimum: int) -> int:
    """``steps`` as an int, refusing a fractional count: rounding it down silently (as ``int()``
    would) reports the epsilon of a shorter run, and Opacus fails obscurely below one step.
    Integer-valued floats (``10.0``) pass: ``epochs / sample_rate`` often gives one."""
    whole = isinstance(steps, (int, float, np.integer, np.floating)) and not isinstance(steps, bool)
    if not (whole and math.isfinite(steps) and steps == int(steps) and steps >= minimum):
        fractional = whole and math.isfinite(steps) and steps > 0 and steps != int(steps)
        hint = " (round a fractional count up: math.ceil(steps))" if fractional else ""
        raise ValueError(f"steps must be a whole number >= {minimum}, got {steps!r}{hint}")
    return int(steps)


def epsilon_spent(
    noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: str = "prv"
) -> float:
    """Epsilon at ``delta`` after ``steps`` Poisson-subsampled Gaussian steps (Opacus).

    0 steps spend nothing; a noise multiplier of 0 gives no privacy (infinite epsilon).
    ``steps`` must be a whole number (an integer-valued float is accepted).
    """
    _check_accountant(accountant)
    # NaN and infinity too: both accountants would search forever
    if not 0 <= noise_multiplier < math.inf:
        raise ValueError(f"noise_multiplier must be a finite number >= 0, got {noise_multiplier}")
    steps = _whole_steps(steps, 0)
    if steps == 0:
        return 0.0
    _check_rate_and_delta(sample_rate, delta)
    if noise_multiplier == 0:
        return math.inf
    return epsilon_of([(float(noise_multiplier), float(sample_rate), steps)], delta, accountant)


def epsilon_of(history: Sequence[Sequence[float]], delta: float, accountant: str = "prv") -> float:
    """Epsilon at ``delta`` after the steps of ``history``, Opacus' ``(noise_multiplier,
    sample_rate, steps)`` entries, by Opacus' accountant; with ``prv``, the RDP bound where that
    exceeds :data:`PRV_MAX_EPSILON`."""
    _check_accountant(accountant)
    from opacus.accountants import create_accountant

    def opacus_epsilon(name: str) -> float:
        acc = create_accountant(mechanism=name)
        acc.history = [(float(s), float(q), int(n)) for s, q, n in history]
        with warnings.catch_warnings(), np.errstate(divide="ignore"):
            # RDP warns when the best order sits at the edge of its grid, PRV takes log(0) at
            # sample rate 1; the bounds stay valid.
            warnings.filterwarnings("ignore", message="Optimal order is the")
            return float(acc.get_epsilon(delta=delta))

    if accountant == "prv":
        bound = opacus_epsilon("rdp")
        if bound > PRV_MAX_EPSILON:
            return bound
    try:
        return opacus_epsilon(accountant)
    except ValueError as e:
        if "Floating point errors" not in str(e):
            raise
        raise DeltaTooSmall(
            f"delta={delta:g} is too small for the PRV accountant's floating-point precision;"
            " use a larger delta (e.g. 1e-5) or the rdp accountant"
        ) from e


def noise_multiplier_for(
    target_epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str = "prv"
) -> float:
    """The smallest noise multiplier (to Opacus' search tolerance) whose epsilon after ``steps``
    does not exceed ``target_epsilon``.

    The number of steps is passed explicitly: deriving it from epochs / sample_rate with a float
    division can round one step short and calibrate the noise for a shorter run. It must be a
    whole number >= 1 (an integer-valued float is accepted).
    """
    _check_accountant(accountant)
    if not 0 < target_epsilon < math.inf:  # infinity: Opacus "calibrates" a made-up sigma
        raise ValueError(f"target_epsilon must be a finite number > 0, got {target_epsilon}")
    _check_rate_and_delta(sample_rate, delta)
    steps = _whole_steps(steps, 1)
    from opacus.accountants.utils import MAX_SIGMA

    # each try composes all the steps: long runs take a while (230,000 steps: over a minute)
    log.info(
        "calibrating the noise multiplier to target epsilon %g over %d steps (%s accountant)",
        target_epsilon,
        steps,
        accountant,
    )

    def spent(sigma: float) -> float:
        return epsilon_spent(sigma, sample_rate, steps, delta, accountant)

    # Opacus' get_noise_multiplier search (double sigma from 20 until under the target, then
    # bisect to within 0.01 of it), through epsilon_spent: the figure a run reports, and with
    # PRV the RDP bound where PRV would take minutes (a target of 1000 bisects down there)
    low, high, eps_high = 0.0, 10.0, math.inf
    while eps_high > target_epsilon:
        high *= 2
        if high > MAX_SIGMA:
            raise ValueError(
                f"target_epsilon={target_epsilon} cannot be reached in {steps} steps at sample "
                f"rate {sample_rate:.4g} (even a huge noise multiplier spends more); "
                "raise target_epsilon or train fewer epochs"
            )
        eps_high = spent(high)
    while target_epsilon - eps_high > 0.01:
        sigma = (low + high) / 2
        eps = spent(sigma)
        if eps < target_epsilon:
            high, eps_high = sigma, eps
        else:
            low = sigma
    return float(high)  # the upper end: its epsilon, eps_high, is within the target
