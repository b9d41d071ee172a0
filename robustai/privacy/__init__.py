"""Differential privacy: DP-SGD over Opacus with accounting, DP noise mechanisms, and a noise
augmentation that is honestly named as not private.

The DP-SGD names load :mod:`robustai.privacy.dpsgd`, and with it Opacus, on first use: importing
Opacus takes seconds, which runs without DP-SGD and the CLI's config checks should not pay.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from robustai.privacy.accounting import (
    ACCOUNTANTS,
    default_delta,
    epsilon_spent,
    noise_multiplier_for,
)
from robustai.privacy.mechanisms import (
    WHERE,
    GaussianMechanism,
    GaussianNoise,
    LaplaceMechanism,
    analytic_gaussian_sigma,
    attach,
    clip_records,
    gaussian_delta,
)
from robustai.privacy.plans import (
    GRAD_SAMPLE_MODES,
    PRIVACY,
    TrainingParts,
    build_privacy,
    privacy_names,
    privacy_params,
)
from robustai.privacy.sampling import PoissonLoader, entropy_generator
from robustai.privacy.statement import (
    append_privacy_section,
    privacy_section,
    privacy_statement,
)

if TYPE_CHECKING:
    from robustai.privacy.dpsgd import (
        DPSGD,
        DPObjective,
        DPSGDMisuse,
        IncompatibleLayerError,
        PrivacyBudgetCallback,
        check_dp_compatible,
        choose_grad_sample_mode,
        make_dp_compatible,
    )

_DPSGD_NAMES = (
    "DPSGD",
    "DPObjective",
    "DPSGDMisuse",
    "IncompatibleLayerError",
    "PrivacyBudgetCallback",
    "check_dp_compatible",
    "choose_grad_sample_mode",
    "make_dp_compatible",
)


def __getattr__(name: str) -> Any:
    if name in _DPSGD_NAMES:
        value = getattr(importlib.import_module("robustai.privacy.dpsgd"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ACCOUNTANTS",
    "DPSGD",
    "GRAD_SAMPLE_MODES",
    "PRIVACY",
    "WHERE",
    "DPObjective",
    "DPSGDMisuse",
    "GaussianMechanism",
    "GaussianNoise",
    "IncompatibleLayerError",
    "LaplaceMechanism",
    "PoissonLoader",
    "PrivacyBudgetCallback",
    "TrainingParts",
    "analytic_gaussian_sigma",
    "append_privacy_section",
    "attach",
    "build_privacy",
    "check_dp_compatible",
    "choose_grad_sample_mode",
    "clip_records",
    "default_delta",
    "entropy_generator",
    "epsilon_spent",
    "gaussian_delta",
    "make_dp_compatible",
    "noise_multiplier_for",
    "privacy_names",
    "privacy_params",
    "privacy_section",
    "privacy_statement",
]
