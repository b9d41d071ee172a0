"""Base class and input contract shared by every attack.

Every attack works in one unit: inputs are images in [0,1] and ``eps`` / step sizes are in
the same [0,1] pixel units (normalization lives inside the model). Attacks never disturb the
model: gradients are taken w.r.t. the input only with :func:`torch.autograd.grad`, parameter
``.grad`` fields are left as they were, every module's train/eval flag is restored, and the
buffers of modules that ran in train mode (BatchNorm's running statistics) are put back.
"""

from __future__ import annotations

import copy
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from robustai.argcheck import MAX_L2_EPS, check_flag, is_integer, is_real
from robustai.attacks import graphs
from robustai.attacks.kernels import input_grad_kernels

logger = logging.getLogger(__name__)

NORMS: tuple[str, ...] = ("linf", "l2")
MODEL_MODES: tuple[str, ...] = ("eval", "train", "keep")


def max_eps(norm: str) -> float:
    """The largest meaningful eps: an L-inf ball of radius 1 covers all of [0, 1]^d already;
    an L2 ball needs up to sqrt(d) for that, and budgets above 1 are common (2.0 on MNIST)."""
    return 1.0 if norm == "linf" else MAX_L2_EPS


def eps_range_text(norm: str) -> str:
    """What :func:`max_eps` allows, for error messages."""
    if norm == "linf":
        return "a number in [0, 1] (L-inf, pixel units, e.g. 8/255)"
    return (
        f"a number in [0, {MAX_L2_EPS:g}] (L2 norm of the perturbation in [0, 1] pixel units,"
        " e.g. 0.5; sqrt(d) covers all of [0, 1]^d)"
    )


def any_training(model: nn.Module) -> bool:
    """Whether a module of ``model`` is in training mode (batch statistics, dropout draws):
    the model's outputs for a sample then depend on the rest of its batch or the draw."""
    return any(m.training for m in model.modules())


@contextmanager
def autograd_on() -> Iterator[None]:
    """Autograd on inside the block, even under ``torch.inference_mode``, which
    ``torch.enable_grad`` does not leave: input gradients there would silently come out as none
    (zero) and the evaluation would report gradient masking that is not there."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


def autograd_tensor(t: Tensor) -> Tensor:
    """``t``, or a normal copy of it where it was made under ``torch.inference_mode``: autograd
    cannot save such tensors for backward (labels inside a loss, inputs). Call it inside
    :func:`autograd_on`, where the copy is a normal tensor."""
    return t.clone() if t.is_inference() else t


def per_sample_view(values: Tensor, like: Tensor) -> Tensor:
    """Reshape a per-sample vector of shape (B,) so it broadcasts against ``like`` (B, ...)."""
    return values.view(-1, *([1] * (like.dim() - 1)))


def l2_direction(grad: Tensor) -> Tensor:
    """``grad / ||grad||_2`` per sample, for any gradient however small: the direction of an
    L2 step, which like the sign of an L-inf step does not depend on the gradient's scale. A sample
    whose gradient is exactly zero stays zero.

    Adding a small constant to the norm instead, as torchattacks does (1e-10), shrinks the step
    wherever the gradient is about that small: for a model whose logits are merely multiplied by a
    constant, whose cross-entropy gradients vanish numerically, the attack stalled. The norm of a
    tiny gradient would underflow (float32 squares below 1e-38 are lost), so each sample is first
    multiplied by the power of two that brings its largest absolute value into [0.5, 1): an exact
    scaling, so the result is bit for bit ``grad / ||grad||`` wherever that one does not underflow,
    and the same for ``grad`` times any power of two."""
    flat = grad.reshape(grad.shape[0], -1)
    # A NaN entry (0/0 in the model's backward) counts as 0, as the sign of an L-inf step has
    # it; a sample with infinite entries steps along those alone (the limit of grad / ||grad||
    # as they grow). Left in, they made the norm NaN and the whole example NaN.
    infinite = flat.isinf()
    flat = torch.where(
        infinite.any(dim=1, keepdim=True),
        torch.where(infinite, flat.sign(), torch.zeros_like(flat)),
        flat.nan_to_num(nan=0.0),
    )
    top = flat.abs().amax(dim=1, keepdim=True)
    # exponents of subnormal values clamped to the smallest normal one, so the scale stays finite
    low = int(math.log2(torch.finfo(flat.dtype).tiny))
    exponent = torch.frexp(top).exponent.clamp(min=low)
    flat = flat * torch.full_like(top, 2.0).pow(-exponent)
    norms = flat.norm(p=2, dim=1, keepdim=True)
    return (flat / torch.where(norms > 0, norms, torch.ones_like(norms))).reshape(grad.shape)


def class_indices(y: Tensor) -> Tensor:
    """``y`` as int64 class indices of shape (B,), or a one-line error naming what it is instead.

    Integer labels of any width (int32 from numpy, uint8 from image files) are widened, as the
    losses and ``gather`` need int64; float, boolean, one-hot or column labels would otherwise
    fail deep inside a loss, or be silently broadcast into a (B, B) comparison.
    """
    if not isinstance(y, Tensor):
        raise TypeError(f"labels y must be a tensor of class indices; got {type(y).__name__}")
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool or y.dim() != 1:
        raise ValueError(
            f"labels y must be class indices of shape (batch,) and an integer dtype; got shape"
            f" {tuple(y.shape)} and dtype {y.dtype} (for one-hot labels pass y.argmax(1))"
        )
    return y if y.dtype == torch.int64 else y.long()


#: the predicted label of an input whose logits hold a NaN: no class, so never correct
NO_PREDICTION = -1


def labels_of(logits: Tensor) -> Tensor:
    """argmax per row, or :data:`NO_PREDICTION` where the row holds a NaN. ``argmax`` takes NaN
    for the largest value, so a model that puts NaN into its top logit off the data would keep
    its clean label under every attack and be counted robust."""
    return logits.argmax(dim=1).masked_fill(logits.isnan().any(dim=1), NO_PREDICTION)


def check_eot_iter(eot_iter: int) -> int:
    """``eot_iter`` as an int >= 1 (forward passes averaged per gradient, see
    :meth:`Attack.with_eot`), or a one-line error; shared by the attacks and the evaluators."""
    if not is_integer(eot_iter) or eot_iter < 1:
        raise ValueError(
            f"eot_iter must be an integer >= 1 (forward passes averaged per gradient);"
            f" got {eot_iter!r}"
        )
    return int(eot_iter)


def check_floating_inputs(x: Tensor) -> None:
    """Floating point ``x``, or a one-line ValueError: 8-bit images (0..255 integers) would be
    fed to the model as they are, and an accuracy computed on them means nothing."""
    if not x.dtype.is_floating_point:
        raise ValueError(
            f"x must be floating point inputs in [0,1]; got dtype {x.dtype} (for 8-bit images"
            " pass x.float() / 255)"
        )


def check_input_range(lo: float, hi: float, what: str = "inputs") -> None:
    """``[lo, hi]``, the range of a batch of inputs, inside [0,1], or a one-line ValueError.
    Callers compute the range with one ``aminmax`` (one device sync) per batch."""
    if math.isnan(lo) or math.isnan(hi):
        raise ValueError(f"{what} hold NaN; inputs must be numbers in [0,1]")
    if lo < 0.0 or hi > 1.0:
        hint = " (for 0..255 images divide by 255)" if lo >= 0.0 and hi <= 255.0 else ""
        raise ValueError(
            f"{what} must be in [0,1] (normalization belongs inside the model);"
            f" got values in [{lo:.4g}, {hi:.4g}]{hint}"
        )


def check_inputs_in_range(x: Tensor, what: str = "inputs") -> None:
    """:func:`check_floating_inputs` and :func:`check_input_range` for one batch ``x`` (one
    ``aminmax``, one device sync; nothing for an empty batch, or a meta one, which has no
    values)."""
    check_floating_inputs(x)
    if x.numel() > 0 and not x.is_meta:
        lo, hi = torch.stack(torch.aminmax(x.detach())).double().tolist()
        check_input_range(lo, hi, what)


def check_input_dtype(model: nn.Module, x: Tensor) -> None:
    """Floating ``x`` that the model's parameters can take: a wider one (float64 into a float32
    model) would fail deep inside the first layer with torch's "Input type (double) and bias
    type (float)"; a narrower one (float16) is widened by the normalization, as it should be."""
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    if param is not None and torch.promote_types(x.dtype, param.dtype) != param.dtype:
        raise ValueError(
            f"x is {x.dtype} but the model's parameters are {param.dtype}; pass"
            f" x.to({param.dtype}) (or convert the model)"
        )


def _check_devices(model: nn.Module, x: Tensor, y: Tensor) -> None:
    """x, y and the model on one device, or a one-line error saying which is where (the
    attack would otherwise fail inside the first layer, or move nothing and compare labels
    across devices)."""
    if y.device != x.device:
        raise ValueError(
            f"x is on {x.device} but y is on {y.device}; move both to the model's device"
        )
    first = next(model.parameters(), None)
    if first is None or first.device == x.device:
        return
    devices = {p.device for p in model.parameters()}
    if x.device not in devices:  # a model split over devices takes x on one of them
        where = ", ".join(sorted(str(d) for d in devices))
        raise ValueError(
            f"the model's parameters are on {where} but x and y are on {x.device};"
            f" move the inputs (or the model) so that they share a device"
        )


_warned_detached = False


class WarnOnce:
    """A warning's "already said" flag, shared by an attack and its shallow copies (training
    makes a :meth:`Attack.with_eps` copy per batch during eps warm-up) or by the attacks of one
    evaluation (a new attack per eps): each warning anew repeated it per batch or per eps."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = False


def input_grad(loss: Tensor, x: Tensor) -> Tensor:
    """d loss / d x, or zeros where the model's output is not connected to ``x`` in autograd
    (``x.detach()``, NumPy or ``torch.no_grad`` inside ``forward``): the attack then finds
    nothing, as with any other masked gradient, and the evaluation goes on for the sanity
    checks and the black-box attack to judge, instead of stopping in an autograd error."""
    global _warned_detached
    grad = None
    if loss.requires_grad:
        (grad,) = torch.autograd.grad(loss, x, allow_unused=True)
    if grad is None:
        if not _warned_detached:
            _warned_detached = True
            logger.warning(
                "the model's output does not depend differentiably on its input (x.detach(),"
                " NumPy or no_grad inside forward?): gradient attacks see a zero gradient"
            )
        return torch.zeros_like(x)
    if grad.numel() > 1 and 0 in grad.stride():
        # e.g. x.sum(1, keepdim=True) in forward: autograd returns an expanded view, which the
        # attacks' in-place steps (sign_, add_) cannot write
        grad = grad.contiguous()
    return grad


def check_logits_shape(out: object, who: str = "attacks") -> Tensor:
    """``out`` if it is logits of shape (batch, classes): anything else would fail inside a
    loss, differently per attack, or (a (batch, classes, 1) tensor) broadcast against the
    labels into a silently wrong accuracy."""
    if not isinstance(out, Tensor) or out.dim() != 2:
        what = (
            f"a tensor of shape {tuple(out.shape)}"
            if isinstance(out, Tensor)
            else f"a {type(out).__name__}"
        )
        raise TypeError(
            f"{who} need a model that returns logits of shape (batch, classes); it returned"
            f" {what} (wrap it, e.g. in a module whose forward returns out['logits'] or out[0])"
        )
    return out


def _check_logits(out: object, hook: RemovableHandle, top_label: int) -> None:
    """Once, on the first forward pass of an attack: the model's output must be logits, with a
    column for the largest label (``top_label``; known already, so this needs no device sync)."""
    hook.remove()
    classes = check_logits_shape(out).shape[1]
    if top_label >= classes:
        # A label the model has no logit for is never predicted: silently "not robust" in the
        # attacks that skip misclassified samples, an index error deep inside the others.
        raise ValueError(
            f"label {top_label} is out of range for a model with {classes} outputs (labels are"
            f" class indices 0 .. {classes - 1})"
        )


def _within_ball(x_adv: Tensor, x: Tensor, eps: float, norm: str) -> Tensor:
    """``x_adv`` inside the eps-ball around ``x``. In float16/bfloat16, rounding ``x + delta``
    to the dtype lands up to half a step of the dtype outside the ball the attack projected
    onto (6% over eps=8/255 in bfloat16). A sample outside is projected again in float64 and
    rounded to nearest; coordinates that rounding moved outwards then move one representable
    value towards ``x``: every one of them under L-inf, and under L2 only as many as bring the
    sample inside, those that shrink its norm most first (a coordinate of a bfloat16 image
    moves by a few steps of the dtype only, and moving all of them lost up to a third of the
    perturbation). Moving all of them would bring any sample inside: each coordinate is then
    no farther from ``x`` than the exact projection's."""
    x64 = x.double()
    d = x_adv.double() - x64
    if norm == "linf":
        target = x64 + d.clamp(-eps, eps)
    else:
        norms = d.flatten(1).norm(dim=1)
        scale = torch.where(norms > eps, eps / norms.clamp(min=1e-300), torch.ones_like(norms))
        target = x64 + d * per_sample_view(scale, d)
    rounded = target.to(x_adv.dtype)
    inward = torch.nextafter(rounded, x)
    outwards = (rounded.double() - x64).abs() > (target - x64).abs()
    if norm == "l2":
        flat = (rounded.double() - x64).flatten(1)
        excess = flat.square().sum(1) - eps**2  # > 0: outside the ball
        gain = torch.where(
            outwards.flatten(1), flat.square() - (inward.double() - x64).flatten(1).square(), 0.0
        )
        order = gain.argsort(dim=1, descending=True)
        before = gain.gather(1, order).cumsum(1) - gain.gather(1, order)  # gained before each
        chosen = torch.zeros_like(outwards.flatten(1))
        chosen.scatter_(1, order, before < excess[:, None])
        outwards = outwards & chosen.view_as(outwards)
    return torch.where(outwards, inward, rounded)


class Attack(ABC):
    """An evasion attack under a norm-ball threat model.

    Threat model: ``norm`` ('linf' or 'l2') and ``eps`` in [0,1] pixel units; inputs are always
    in [0,1]. ``model_mode`` is the mode the model is put in *during* the attack ("eval",
    "train", or "keep" to leave it alone); the original mode of every submodule is restored
    afterwards, even if the attack raises. In train mode BatchNorm normalizes with each batch's
    statistics during the attack, but its running statistics are restored afterwards: the
    attack's forward passes are not training steps.

    Subclasses implement :meth:`perturb`; :meth:`__call__` wraps it with the mode handling,
    input checks and the eps=0 short cut, and returns a detached tensor.
    """

    name: ClassVar[str] = ""
    #: norms the attack implements; tests iterate over these.
    supported_norms: ClassVar[tuple[str, ...]] = NORMS
    #: attributes holding step sizes in pixel units; :meth:`with_eps` rescales them.
    step_size_attrs: ClassVar[tuple[str, ...]] = ()
    #: whether the attack has an ``early_stop`` option (see :meth:`with_early_stop`).
    supports_early_stop: ClassVar[bool] = False
    #: whether :meth:`perturb` runs without host syncs, so CUDA graphs can capture it (see
    #: :meth:`with_cuda_graph`; an instance may still decline, e.g. PGD with restarts).
    supports_cuda_graph: ClassVar[bool] = False
    #: replay the attack from a captured CUDA graph on CUDA inputs (:mod:`robustai.attacks.graphs`)
    cuda_graph: bool = False
    #: whether "cuda_graphs has no effect" was logged (shared with copies; see :class:`WarnOnce`)
    _eager_notice: WarnOnce | None = None
    #: whether the attack follows gradients, so that averaging them over draws of a randomized
    #: model (EOT, see :meth:`with_eot`) applies to it.
    supports_eot: ClassVar[bool] = False
    #: forward and backward passes averaged per gradient (1: plain gradients).
    eot_iter: int = 1

    def __init__(self, eps: float, norm: str = "linf", model_mode: str = "eval") -> None:
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}; got {norm!r}")
        if not is_real(eps) or not math.isfinite(eps) or not 0.0 <= eps <= max_eps(norm):
            raise ValueError(f"eps must be {eps_range_text(norm)}; got {eps!r}")
        if norm not in self.supported_norms:
            raise ValueError(
                f"{type(self).__name__} supports norm {', '.join(self.supported_norms)} only;"
                f" got {norm!r}"
            )
        if model_mode not in MODEL_MODES:
            raise ValueError(
                f"model_mode must be one of {', '.join(MODEL_MODES)}; got {model_mode!r}"
            )
        self.eps = float(eps)
        self.norm = norm
        self.model_mode = model_mode

    # ------------------------------------------------------------------ public API
    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """Return adversarial examples for ``(x, y)``: detached, same shape/dtype/device as x,
        in [0,1] and inside the eps-ball around x: exactly in float16/bfloat16, which are
        projected again; in float32/float64 up to the rounding of ``x + delta`` (a unit in the
        last place of x, e.g. 0.10000002 for eps 0.1, as torchattacks)."""
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"model must be a torch.nn.Module (attacks set and restore its train/eval mode);"
                f" got {type(model).__name__}"
            )
        if not isinstance(x, Tensor):
            raise TypeError(
                f"x must be a tensor of inputs in [0,1]; got {type(x).__name__}"
                " (torch.as_tensor converts a NumPy array)"
            )
        check_floating_inputs(x)
        check_input_dtype(model, x)
        # Attacks need autograd, which inference_mode switches off (x would get no gradient and
        # FGSM would return it unchanged); as under no_grad, they turn it back on for themselves.
        with autograd_on():
            return self._attack(model, x, y)

    def _attack(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        y = class_indices(y)
        _check_devices(model, x, y)
        if x.dim() < 1 or x.shape[0] != y.shape[0]:
            raise ValueError(
                f"x and y must share the batch dimension; got x {tuple(x.shape)},"
                f" y {tuple(y.shape)}"
            )
        x = autograd_tensor(x).detach()
        top_label = -1
        if x.numel() > 0:
            # x's range and y's in one device sync
            ranges = [torch.stack(torch.aminmax(t)).double() for t in (x, y)]
            lo, hi, y_lo, y_hi = torch.cat(ranges).tolist()
            if y_lo < 0:
                raise ValueError(f"labels must be class indices >= 0; got {int(y_lo)}")
            top_label = int(y_hi)
            check_input_range(lo, hi, "attack inputs")
        if self.eps == 0.0 or x.numel() == 0:
            return x.clone()
        if self.cuda_graph and not x.is_cuda:
            self._warn_eager(x)
        y = autograd_tensor(y).detach()

        modules = list(model.modules())
        modes = [m.training for m in modules]
        buffers: list[tuple[Tensor, Tensor]] = []
        # The first forward pass checks that the model returns a logits tensor, then the hook
        # removes itself: a tuple or dict would otherwise fail inside a loss, differently per
        # attack.
        hook = model.register_forward_hook(
            lambda module, args, out: _check_logits(out, hook, top_label)
        )
        try:
            if self.model_mode == "eval":
                model.eval()
            elif self.model_mode == "train":
                model.train()
            # Train-mode forward passes update BatchNorm's running statistics (and any other
            # buffer a module keeps in training); the attack's passes are not training steps.
            buffers = [
                (buf, buf.detach().clone())
                for m in modules
                if m.training
                for buf in m._buffers.values()
                if buf is not None
            ]
            with torch.enable_grad():
                if self.cuda_graph and x.is_cuda and self._capturable():
                    x_adv = graphs.run(self, model, x, y, self.perturb)
                else:
                    x_adv = self.perturb(model, x, y)
        finally:
            hook.remove()
            with torch.no_grad():
                for buf, saved in buffers:
                    buf.copy_(saved)
            for module, mode in zip(modules, modes, strict=True):
                module.training = mode
        x_adv = x_adv.detach()
        if x_adv.dtype in (torch.float16, torch.bfloat16):
            x_adv = _within_ball(x_adv, x, self.eps, self.norm)
        return x_adv

    @abstractmethod
    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """Compute adversarial examples; ``x`` is detached, in [0,1], the model already in the
        attack mode and grad mode enabled."""

    def with_eps(self, eps: float) -> Attack:
        """A shallow copy with ``eps`` replaced and every step size scaled by ``eps/self.eps``.

        Used for eps warm-up during adversarial training: the step-size-to-eps ratio stays as
        configured. ``eps`` may be 0 (the copy then returns x unchanged). From an attack whose
        own eps is 0 the ratio is unknown, so step sizes are recomputed from their defaults
        (see :meth:`_default_step_size`) or, if given explicitly, kept as they are.
        """
        new = copy.copy(self)
        Attack.__init__(new, eps, norm=self.norm, model_mode=self.model_mode)
        for attr in self.step_size_attrs:
            old = getattr(self, attr)
            # the ratio is kept through an eps of 0 (warm-up from 0 and back), where the step
            # size itself is 0: scaling that back up gave a step of 0, an attack doing nothing
            ratio = old / self.eps if self.eps > 0.0 else getattr(self, f"_{attr}_per_eps", None)
            if ratio is not None:
                value = ratio * new.eps
            else:
                default = self._default_step_size(attr, new.eps)
                value = default if getattr(self, f"_{attr}_is_default", True) else old
            setattr(new, attr, value)
            setattr(new, f"_{attr}_per_eps", ratio)
        return new

    def with_early_stop(self, early_stop: bool = True) -> Attack:
        """A shallow copy with per-sample early stopping set, for attacks that have it (others
        are returned as they are: single-step attacks have nothing to stop, and APGD and Square
        already keep the first example that fools each sample). Evaluators use this; the attack's
        own default stays as constructed."""
        early_stop = check_flag("early_stop", early_stop)
        if not self.supports_early_stop or getattr(self, "early_stop", None) == early_stop:
            return self
        new = copy.copy(self)
        new.early_stop = early_stop  # type: ignore[attr-defined]
        return new

    def with_cuda_graph(self, enabled: bool = True, *, once: WarnOnce | None = None) -> Attack:
        """A shallow copy that, on CUDA inputs, replays the whole attack from a CUDA graph
        captured per batch shape (:mod:`robustai.attacks.graphs`: the same kernels and iterates,
        launched at once; several times faster for models whose steps are launch-bound). Opt-in,
        because Python code in the model's forward runs at capture only. Attacks that sync with
        the host (APGD, Square, PGD with restarts) are returned as they are, and on CPU it does
        nothing but log a warning, once for the copy and its own copies (:meth:`with_eps`, ...),
        or once for every attack given the same ``once``."""
        if not self.supports_cuda_graph or (self.cuda_graph == enabled and once is None):
            return self
        new = copy.copy(self)
        new.cuda_graph = enabled
        new._eager_notice = once if once is not None else WarnOnce()
        return new

    def with_eot(self, eot_iter: int) -> Attack:
        """A shallow copy that averages every input gradient over ``eot_iter`` forward and
        backward passes: Expectation over Transformation (Athalye, Carlini & Wagner, ICML 2018),
        the attack a randomized defense needs, whose single-pass gradients follow one draw of
        its randomness. Gradient-free attacks are returned as they are."""
        eot_iter = check_eot_iter(eot_iter)
        if not self.supports_eot or self.eot_iter == eot_iter:
            return self
        new = copy.copy(self)
        new.eot_iter = eot_iter
        return new

    def _warn_eager(self, x: Tensor) -> None:
        """One warning per attack (with its copies) that the CUDA graphs asked for are not
        used: on CPU, ``trainer.cuda_graphs=true`` ran exactly as without it, without a word."""
        notice = self._eager_notice
        if notice is None:  # cuda_graph set on the instance, not through with_cuda_graph
            notice = self._eager_notice = WarnOnce()
        if notice.done:
            return
        notice.done = True
        where = "CPU" if x.device.type == "cpu" else f"{x.device.type} (non-CUDA)"
        logger.warning(
            "cuda_graphs=True has no effect on %s inputs; the attack runs eagerly", where
        )

    def _capturable(self) -> bool:
        """Whether this instance's :meth:`perturb` can be captured (override to decline). EOT
        declines: a graph would replay one draw of a randomized model's own generator."""
        return self.supports_cuda_graph and self.eot_iter == 1

    @property
    def label(self) -> str:
        """Short name used in metric keys and TensorBoard tags (e.g. ``pgd20``)."""
        return self._eot_suffixed(self.name)

    def _eot_suffixed(self, label: str) -> str:
        """``label`` with ``_eot<n>`` when gradients average n passes: the number differs from
        the plain attack's, so it gets its own metric key."""
        return f"{label}_eot{self.eot_iter}" if self.eot_iter > 1 else label

    # ------------------------------------------------------------------ helpers
    def _default_step_size(self, attr: str, eps: float) -> float:
        """Default value of step-size attribute ``attr`` for a given eps (override)."""
        raise NotImplementedError(f"{type(self).__name__} has no default for {attr!r}")

    def _check_step_size(self, alpha: float | None) -> None:
        """A step in pixel units: above 1, an L-inf step is the 0..255 slip (alpha=2 for
        2/255) that eps is refused for, and runs as if it were 1 (the projection cuts it)."""
        if alpha is None:
            return
        if not is_real(alpha) or not math.isfinite(alpha) or alpha <= 0:
            raise ValueError(
                f"alpha must be a positive number (pixel units) or None for the default;"
                f" got {alpha!r}"
            )
        top = 1.0 if self.norm == "linf" else MAX_L2_EPS
        if alpha > top:
            raise ValueError(
                f"alpha must be in (0, {top:g}] (pixel units{', e.g. 2/255' if top == 1 else ''});"
                f" got {alpha!r}"
            )

    def _input_grad(self, model: nn.Module, x_adv: Tensor, y: Tensor) -> Tensor:
        """Gradient of the loss w.r.t. the input only; parameter ``.grad`` is not touched."""
        return self._logits_and_input_grad(model, x_adv, y)[1]

    def _logits_and_input_grad(
        self, model: nn.Module, x_adv: Tensor, y: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Logits at ``x_adv`` (detached) and the gradient of the mean cross-entropy (as in
        torchattacks) w.r.t. the input only; parameter ``.grad`` is not touched. With
        ``eot_iter`` > 1 the gradient is the mean over that many passes and the logits are the
        last pass's (as torchattacks.EOTPGD and AutoAttack's APGD take them)."""
        x_adv = x_adv.detach().requires_grad_(True)
        grad = None
        for _ in range(self.eot_iter):
            with input_grad_kernels(model):
                logits = model(x_adv)
            loss = nn.functional.cross_entropy(logits, y)
            g = input_grad(loss, x_adv)
            grad = g if grad is None else grad.add_(g)
        assert grad is not None
        if self.eot_iter > 1:
            grad.div_(self.eot_iter)
        return logits.detach(), grad

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"
