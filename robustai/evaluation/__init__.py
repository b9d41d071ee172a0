"""Clean and robust accuracy, evaluators and reports."""

from robustai.evaluation.accuracy import accuracy, predict_correct, robust_accuracy, robust_correct
from robustai.evaluation.evaluator import EvalResult, Evaluator, metric_key

__all__ = [
    "EvalResult",
    "Evaluator",
    "accuracy",
    "metric_key",
    "predict_correct",
    "robust_accuracy",
    "robust_correct",
]
