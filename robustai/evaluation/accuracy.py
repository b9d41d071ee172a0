"""Clean and robust accuracy, batched."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from os import PathLike

import torch
from torch import Tensor, nn

from robustai.argcheck import is_integer
from robustai.attacks import Attack
from robustai.attacks.base import (
    check_input_dtype,
    check_inputs_in_range,
    check_logits_shape,
    class_indices,
    labels_of,
)


def checked_inputs(model: nn.Module, x: Tensor) -> None:
    """A model and floating inputs in [0,1] it can take, or a one-line TypeError / ValueError (a
    run folder's path where the model goes, a float64 array into a float32 model, 8-bit or
    0..255 images, which the attacks refuse too: counted as they are, the accuracy is wrong)."""
    if not isinstance(model, nn.Module):
        hint = " (robustai.models.load_model(path) loads a run's model)" if isinstance(
            model, str | PathLike
        ) else ""
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}{hint}")
    if not isinstance(x, Tensor):
        raise TypeError(
            f"x must be a tensor of inputs in [0,1]; got {type(x).__name__}"
            " (torch.as_tensor converts a NumPy array)"
        )
    check_inputs_in_range(x)
    check_input_dtype(model, x)


def checked_labels(x: Tensor, y: Tensor) -> Tensor:
    """``y`` as int64 class indices, one per input (integer labels of any width are widened;
    anything else, or a count that differs from ``x``'s, is a one-line ValueError)."""
    if not isinstance(x, Tensor):
        raise TypeError(
            f"x must be a tensor of inputs in [0,1]; got {type(x).__name__}"
            " (torch.as_tensor converts a NumPy array)"
        )
    y = class_indices(y)
    if len(y) != len(x):
        raise ValueError(f"got {len(x)} inputs but {len(y)} labels; give one label per input")
    return y


def _check_batch_size(batch_size: int) -> None:
    if not is_integer(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number >= 1; got {batch_size!r}")


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """The model in eval mode inside the block; afterwards every submodule's own train/eval flag
    is restored, not just the top module's (``model.train(was_training)`` would switch a frozen
    BatchNorm inside a training model back to train mode)."""
    modules = list(model.modules())
    modes = [m.training for m in modules]
    model.eval()
    try:
        yield
    finally:
        for module, mode in zip(modules, modes, strict=True):
            module.training = mode


@torch.inference_mode()
def _correct(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    return labels_of(_logits(model, x)) == y


@torch.inference_mode()
def _predict(model: nn.Module, x: Tensor, num_classes: int | None = None) -> Tensor:
    logits = _logits(model, x)
    if num_classes is not None and logits.shape[1] != num_classes:
        # Per-class tables and the sanity checks count num_classes classes: a model with other
        # outputs gets rows for classes it never predicts, or loses the ones it does.
        raise ValueError(
            f"the model returns {logits.shape[1]} logits per sample but num_classes is"
            f" {num_classes}; give the data's number of classes and a model with that many"
            " outputs"
        )
    return labels_of(logits)


def _logits(model: nn.Module, x: Tensor) -> Tensor:
    return check_logits_shape(model(x), who="accuracy and predictions")


def predict(
    model: nn.Module, x: Tensor, batch_size: int = 512, num_classes: int | None = None
) -> Tensor:
    """Predicted labels (eval mode, restored after); NO_PREDICTION where the logits hold NaN.
    ``num_classes``: the number of logits the model must return (ValueError otherwise)."""
    checked_inputs(model, x)
    _check_batch_size(batch_size)
    with eval_mode(model):
        if len(x) == 0:
            return torch.zeros(0, dtype=torch.long, device=x.device)
        return torch.cat(
            [
                _predict(model, x[i : i + batch_size], num_classes if i == 0 else None)
                for i in range(0, len(x), batch_size)
            ]
        )


def predict_correct(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 512) -> Tensor:
    """Boolean per sample: is the model right on the clean input? (eval mode, restored after)."""
    checked_inputs(model, x)
    y = checked_labels(x, y)
    _check_batch_size(batch_size)
    if len(x) == 0:
        return torch.zeros(0, dtype=torch.bool, device=x.device)
    lo, hi = (int(v) for v in torch.aminmax(y))
    if lo < 0:
        raise ValueError(f"labels must be class indices >= 0; got {lo}")
    out = []
    with eval_mode(model), torch.no_grad():
        for i in range(0, len(x), batch_size):
            logits = _logits(model, x[i : i + batch_size])
            if i == 0 and hi >= logits.shape[1]:
                # never predicted: the sample would count wrong, as attacks refuse to
                raise ValueError(
                    f"label {hi} is out of range for a model with {logits.shape[1]} outputs"
                    f" (labels are class indices 0 .. {logits.shape[1] - 1})"
                )
            out.append(labels_of(logits) == y[i : i + batch_size])
    return torch.cat(out)


def check_counting_mode(attack: Attack) -> None:
    """Robust accuracy is counted with the model in eval mode; an attack that runs it in train
    mode (``model_mode="train"``) picks its examples against another model (dropout draws, batch
    statistics): PGD's restarts, APGD's best iterate and Square's accepted queries are judged by
    that model, so the count would read high. Refused in one line (ValueError)."""
    if attack.model_mode == "train":
        raise ValueError(
            f"{attack!r} runs the model in train mode, but robust accuracy is counted in eval"
            " mode, so its examples would be chosen against another model (dropout draws,"
            " batch statistics) and the accuracy would read high; build it with"
            " model_mode='eval' (for a randomized model, average gradients with eot_iter)"
        )


def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 512) -> float:
    return (
        float(predict_correct(model, x, y, batch_size).float().mean()) if len(x) else float("nan")
    )


def robust_correct(
    model: nn.Module, attack: Attack, x: Tensor, y: Tensor, batch_size: int = 512
) -> Tensor:
    """Boolean per sample: does the model stay right on the attacked input? (eval mode)."""
    if isinstance(model, Attack) and isinstance(attack, nn.Module):
        raise TypeError(
            "the model and the attack are swapped: the model comes first, e.g."
            " robust_accuracy(model, PGD(eps=0.1), x, y)"
        )
    if not isinstance(attack, Attack):
        what = "a function (a factory? call it with an eps)" if callable(attack) else type(attack)
        raise TypeError(f"attack must be an Attack, e.g. PGD(eps=0.1); got {what}")
    check_counting_mode(attack)
    checked_inputs(model, x)
    y = checked_labels(x, y)
    _check_batch_size(batch_size)
    if len(x) == 0:
        return torch.zeros(0, dtype=torch.bool, device=x.device)
    with eval_mode(model):
        out = []
        for i in range(0, len(x), batch_size):
            xb, yb = x[i : i + batch_size], y[i : i + batch_size]
            x_adv = attack(model, xb, yb)
            # A sample counts as robust only if it is right both clean and attacked.
            out.append(_correct(model, xb, yb) & _correct(model, x_adv, yb))
        return torch.cat(out)


def robust_accuracy(
    model: nn.Module, attack: Attack, x: Tensor, y: Tensor, batch_size: int = 512
) -> float:
    """Share of samples the model classifies correctly both clean and attacked (eval mode);
    NaN for no samples. On a randomized model each prediction is one draw."""
    return (
        float(robust_correct(model, attack, x, y, batch_size).float().mean())
        if len(x)
        else float("nan")
    )


@dataclass
class AttackOutcome:
    """Per-sample result of one attack on a set of samples."""

    robust: Tensor  # bool: right on the clean input and on the attacked one
    pred: Tensor  # the label predicted on the attacked input (clean prediction if not attacked;
    # NO_PREDICTION where the logits hold a NaN)
    x_adv: Tensor | None  # the attacked inputs (x itself where not attacked); None unless kept
    seconds: float

    @property
    def accuracy(self) -> float:
        return float(self.robust.float().mean()) if len(self.robust) else float("nan")


def attack_outcome(
    model: nn.Module,
    attack: Attack,
    x: Tensor,
    y: Tensor,
    clean_pred: Tensor,
    batch_size: int = 512,
    keep_examples: bool = False,
) -> AttackOutcome:
    """Attack the samples the model classifies correctly (``clean_pred == y``) and report, per
    sample, whether it stays correct.

    Samples that are already wrong count as not robust without being attacked: the robust
    accuracy is the same as attacking everything (:func:`robust_correct`), with no work spent on
    them and no second clean forward pass. The model is evaluated in eval mode (restored after),
    and so is the attack's (see :func:`check_counting_mode`).
    """
    check_counting_mode(attack)
    y = checked_labels(x, y)
    _check_batch_size(batch_size)
    start = time.perf_counter()
    with eval_mode(model):
        robust = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        pred = clean_pred.clone()
        x_adv_all = x.clone() if keep_examples else None
        todo = (clean_pred == y).nonzero(as_tuple=True)[0]
        for i in range(0, len(todo), batch_size):
            idx = todo[i : i + batch_size]
            xb, yb = x[idx], y[idx]
            x_adv = attack(model, xb, yb)
            pred_b = _predict(model, x_adv)
            pred[idx] = pred_b
            robust[idx] = pred_b == yb
            if x_adv_all is not None:
                x_adv_all[idx] = x_adv
        return AttackOutcome(robust, pred, x_adv_all, time.perf_counter() - start)
