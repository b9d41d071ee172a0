"""Clean and robust accuracy, evaluators, robustness curves, sanity checks and reports."""

from robustai.evaluation.accuracy import (
    AttackOutcome,
    accuracy,
    attack_outcome,
    check_counting_mode,
    predict,
    predict_correct,
    robust_accuracy,
    robust_correct,
)
from robustai.evaluation.curve import (
    RobustnessCurve,
    default_curve_eps,
    robustness_curve,
    save_curve_png,
)
from robustai.evaluation.evaluator import (
    EvalResult,
    Evaluator,
    check_metric_keys,
    cuda_graphing,
    early_stopping,
    eot_averaging,
    eps_key,
    metric_key,
)
from robustai.evaluation.report import build_report, render_markdown, save_examples, write_report
from robustai.evaluation.sanity import (
    CHECKS,
    Check,
    SanityReport,
    SanitySettings,
    run_sanity_checks,
)
from robustai.evaluation.suite import CurveSettings, Evaluation, evaluate_model, per_class_accuracy

__all__ = [
    "CHECKS",
    "AttackOutcome",
    "Check",
    "CurveSettings",
    "EvalResult",
    "Evaluation",
    "Evaluator",
    "RobustnessCurve",
    "SanityReport",
    "SanitySettings",
    "accuracy",
    "attack_outcome",
    "build_report",
    "check_counting_mode",
    "check_metric_keys",
    "cuda_graphing",
    "default_curve_eps",
    "early_stopping",
    "eot_averaging",
    "eps_key",
    "evaluate_model",
    "metric_key",
    "per_class_accuracy",
    "predict",
    "predict_correct",
    "render_markdown",
    "robust_accuracy",
    "robust_correct",
    "robustness_curve",
    "run_sanity_checks",
    "save_curve_png",
    "save_examples",
    "write_report",
]
