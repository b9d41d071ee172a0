"""Differential privacy: DP-SGD over Opacus with accounting, DP noise mechanisms, and a noise
augmentation that is honestly named as not private."""

from robustai.privacy.accounting import (
    ACCOUNTANTS,
    default_delta,
    epsilon_spent,
    noise_multiplier_for,
)
from robustai.privacy.dpsgd import (
    DPSGD,
    GRAD_SAMPLE_MODES,
    DPObjective,
    IncompatibleLayerError,
    PrivacyBudgetCallback,
    check_dp_compatible,
    choose_grad_sample_mode,
    make_dp_compatible,
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

__all__ = [
    "ACCOUNTANTS",
    "DPSGD",
    "GRAD_SAMPLE_MODES",
    "PRIVACY",
    "WHERE",
    "DPObjective",
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
