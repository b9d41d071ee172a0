"""Accounting: our epsilon is Opacus' epsilon, and a target is never overshot."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opacus.accountants import PRVAccountant, RDPAccountant

from robustai.privacy import default_delta, epsilon_spent, noise_multiplier_for
from robustai.privacy.accounting import PRV_MAX_EPSILON


@pytest.mark.parametrize("name, cls", [("prv", PRVAccountant), ("rdp", RDPAccountant)])
def test_epsilon_is_opacus_accountant_stepped_one_step_at_a_time(name: str, cls: type) -> None:
    sigma, q, steps, delta = 1.1, 0.02, 150, 1e-5
    acc = cls()
    for _ in range(steps):  # what the optimizer hook does: one call per step
        acc.step(noise_multiplier=sigma, sample_rate=q)
    assert epsilon_spent(sigma, q, steps, delta, name) == pytest.approx(acc.get_epsilon(delta))


def test_more_noise_fewer_steps_less_epsilon() -> None:
    e = epsilon_spent(1.0, 0.05, 100, 1e-5, "rdp")
    assert epsilon_spent(2.0, 0.05, 100, 1e-5, "rdp") < e
    assert epsilon_spent(1.0, 0.05, 50, 1e-5, "rdp") < e
    assert epsilon_spent(1.0, 0.05, 0, 1e-5) == 0.0
    assert epsilon_spent(0.0, 0.05, 10, 1e-5) == math.inf


def test_default_delta_is_well_below_one_over_n() -> None:
    assert default_delta(1000) == 1e-5
    assert default_delta(60_000) == pytest.approx(1 / 600_000)
    for n in (1, 10, 1437, 8000, 10**7):
        assert default_delta(n) <= 0.1 / n


def test_unknown_accountant_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="prv, rdp"):
        epsilon_spent(1.0, 0.1, 10, 1e-5, "gdp")


@settings(max_examples=5, deadline=None)
@given(
    target=st.floats(0.3, 12.0),
    q=st.floats(0.004, 0.25),
    steps=st.integers(1, 400),
)
def test_calibrated_noise_never_overshoots_the_target(target: float, q: float, steps: int) -> None:
    sigma = noise_multiplier_for(target, 1e-5, q, steps, "rdp")
    # Opacus' accountant itself, not robustai's epsilon_spent (whose figure the calibration
    # already checks, so comparing against it could not fail)
    accountant = RDPAccountant()
    accountant.history = [(sigma, q, steps)]
    spent = accountant.get_epsilon(delta=1e-5)
    assert spent <= target
    assert spent >= target - 0.05 or sigma <= 20 / 2**20  # tight, up to Opacus' tolerance


@pytest.mark.slow
def test_calibration_with_prv_is_tight_and_safe() -> None:
    sigma = noise_multiplier_for(3.0, 1e-5, 64 / 1437, 230, "prv")
    spent = epsilon_spent(sigma, 64 / 1437, 230, 1e-5, "prv")
    assert 2.95 <= spent <= 3.0


def test_beyond_prv_max_epsilon_prv_reports_the_rdp_bound() -> None:
    """PRV accounting slows to minutes a call as epsilon grows (a target_epsilon of 1000 hung
    the calibration, noise 0.1 over 230 steps took over a minute), then overflows; past
    PRV_MAX_EPSILON the RDP bound, an upper bound as well, is what is reported."""
    q, steps, delta = 64 / 1438, 230, 1e-5
    rdp = epsilon_spent(0.1, q, steps, delta, "rdp")
    assert rdp > PRV_MAX_EPSILON
    assert epsilon_spent(0.1, q, steps, delta, "prv") == rdp
    # below it, Opacus' PRV figure, the tighter one
    prv = PRVAccountant()
    prv.history = [(1.0, q, steps)]
    assert epsilon_spent(1.0, q, steps, delta, "prv") == pytest.approx(prv.get_epsilon(delta))
    sigma = noise_multiplier_for(1000.0, delta, q, 23, "prv")
    assert 1000.0 - 0.01 <= epsilon_spent(sigma, q, 23, delta, "rdp") <= 1000.0


def test_a_delta_below_prvs_precision_is_named() -> None:
    """PRV's "floating point errors will dominate" was reported as a target too low to reach
    ("raise target_epsilon"), or as a noise multiplier to raise."""
    with pytest.raises(ValueError, match=r"delta=1e-16 is too small for the PRV accountant"):
        noise_multiplier_for(3.0, 1e-16, 64 / 1438, 23, "prv")
    assert noise_multiplier_for(3.0, 1e-16, 64 / 1438, 23, "rdp") > 0


def test_unreachable_target_says_what_to_do() -> None:
    with pytest.raises(ValueError, match="raise target_epsilon"):
        noise_multiplier_for(1e-4, 1e-5, 1.0, 10_000, "rdp")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        # NaN noise: Opacus' accountant searched forever
        (lambda: epsilon_spent(math.nan, 0.01, 10, 1e-5), "noise_multiplier must be a finite"),
        # infinite noise: both accountants searched forever too
        (lambda: epsilon_spent(math.inf, 0.04, 23, 1e-5, "rdp"), "must be a finite number"),
        (lambda: epsilon_spent(math.inf, 0.04, 23, 1e-5, "prv"), "must be a finite number"),
        # an infinite target: Opacus returned a made-up noise multiplier of 10
        (lambda: noise_multiplier_for(math.inf, 1e-5, 0.04, 23), "target_epsilon must be a"),
        (lambda: epsilon_spent(1.0, 0.01, 10, 0.0), "delta must be in"),  # ZeroDivisionError
        (lambda: epsilon_spent(1.0, 0.01, 10, 1.0), "delta must be in"),
        (lambda: epsilon_spent(1.0, 1.5, 10, 1e-5), "sample_rate must be in"),  # domain error
        (lambda: epsilon_spent(1.0, -0.1, 10, 1e-5), "sample_rate must be in"),
        (lambda: noise_multiplier_for(3.0, 0.0, 0.01, 1000), "delta must be in"),
        (lambda: noise_multiplier_for(3.0, 1e-5, 0.01, 0), "steps must be a whole number >= 1"),
        # a rate above 1 was reported as an unreachable budget
        (lambda: noise_multiplier_for(3.0, 1e-5, 2.0, 1000), "sample_rate must be in"),
    ],
)
def test_arguments_out_of_range_are_named(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("steps", [10.7, 0.5, 67.4, -1, math.nan, math.inf, "10"])
def test_a_fractional_or_invalid_step_count_is_refused(steps) -> None:
    # int() rounded 10.7 down to the epsilon of 10 steps; 0.5 divided by zero inside Opacus;
    # 67.4 was reported as a budget that "cannot be reached"
    with pytest.raises(ValueError, match="steps must be a whole number >= 0"):
        epsilon_spent(1.0, 0.1, steps, 1e-5)
    with pytest.raises(ValueError, match="steps must be a whole number >= 1"):
        noise_multiplier_for(3.0, 1e-5, 0.1, steps)


def test_an_integer_valued_float_step_count_is_accepted() -> None:
    assert epsilon_spent(1.0, 0.1, 10.0, 1e-5) == epsilon_spent(1.0, 0.1, np.int64(10), 1e-5)
    assert epsilon_spent(1.0, 0.1, 0.0, 1e-5) == 0.0
    assert noise_multiplier_for(3.0, 1e-5, 0.1, 50.0, "rdp") == noise_multiplier_for(
        3.0, 1e-5, 0.1, 50, "rdp"
    )
