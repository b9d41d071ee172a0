"""Property tests every registered attack must pass (parametrized over ATTACKS).

A newly registered attack is tested by being registered: its variants are derived from the
class (``supported_norms`` and the keyword arguments its ``__init__`` accepts).
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from attacks.attack_helpers import N_CLASSES, SHAPE, make_batch, train_briefly
from robustai.attacks import ATTACKS, FGSM, PGD, Attack, attack_names, build_attack
from robustai.attacks.registry import AttackArgumentError, accepted_kwargs

TOL = 1e-6
FAST = settings(max_examples=15, deadline=None)


# ---------------------------------------------------------------------------- fixtures
class ModeRecorder(nn.Module):
    """Identity that records the training flag it sees in every forward."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(self.training)
        return x


class TinyNet(nn.Module):
    """Conv + BatchNorm + Dropout net on 1x8x8 inputs: BN and dropout make mode matter."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.1)
        )
        self.recorder = ModeRecorder()
        self.head = nn.Linear(4 * 8 * 8, N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.recorder(self.features(x)).flatten(1))


@functools.cache
def trained_net() -> TinyNet:
    """A 'trained-ish' TinyNet (high clean accuracy on make_batch data), built once."""
    torch.manual_seed(0)
    net = TinyNet()
    train_briefly(net)
    net.recorder.seen.clear()
    return net


def fresh_net(dtype: torch.dtype = torch.float32) -> TinyNet:
    return copy.deepcopy(trained_net()).to(dtype)


def variants() -> list[Any]:
    """(name, kwargs) for every registered attack, norm it supports, random start on/off,
    and restarts>1 where accepted; a small ``steps`` keeps it fast."""
    out = []
    for name, cls in ATTACKS.items():
        accepted = accepted_kwargs(cls)
        for norm in cls.supported_norms:
            base: dict[str, Any] = {"norm": norm}
            if "steps" in accepted:
                base["steps"] = 3
            if "n_queries" in accepted:  # score-based attacks: a few queries keep it fast
                base["n_queries"] = 10
            if "n_target_classes" in accepted:
                base["n_target_classes"] = 2
            options: list[dict[str, Any]] = [{}]
            if "random_start" in accepted:
                options = [{"random_start": False}, {"random_start": True}]
                if "restarts" in accepted:
                    options.append({"random_start": True, "restarts": 2})
            elif "restarts" in accepted:  # always starts at random (APGD, Square)
                options.append({"restarts": 2})
            for opt in options:
                kwargs = {**base, **opt}
                ident = "-".join([name, *(f"{k}={v}" for k, v in kwargs.items())])
                out.append(pytest.param(name, kwargs, id=ident))
    return out


VARIANTS = variants()


def random_inputs(batch: int, seed: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform inputs in [0,1] with about a quarter of the entries set to exactly 0 or 1."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((batch, *SHAPE), generator=g, dtype=torch.float64)
    pick = torch.rand(x.shape, generator=g)
    x = torch.where(pick < 0.125, torch.zeros_like(x), x)
    x = torch.where(pick > 0.875, torch.ones_like(x), x)
    y = torch.randint(0, N_CLASSES, (batch,), generator=g)
    return x.to(dtype), y


def assert_in_ball(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str) -> None:
    delta = (x_adv - x).double()
    if norm == "linf":
        assert delta.abs().max().item() <= eps + TOL
    else:
        assert delta.reshape(len(x), -1).norm(dim=1).max().item() <= eps + TOL


def grads_snapshot(model: nn.Module) -> list[torch.Tensor | None]:
    return [None if p.grad is None else p.grad.clone() for p in model.parameters()]


# ---------------------------------------------------------------------------- properties
@pytest.mark.parametrize(("name", "kwargs"), VARIANTS)
@FAST
@given(
    eps=st.floats(0.0, 0.5),
    batch=st.integers(1, 6),
    seed=st.integers(0, 2**31 - 1),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    training=st.booleans(),
    mixed_modes=st.booleans(),
    prefill_grads=st.booleans(),
)
def test_output_contract(
    name: str,
    kwargs: dict[str, Any],
    eps: float,
    batch: int,
    seed: int,
    dtype: torch.dtype,
    training: bool,
    mixed_modes: bool,
    prefill_grads: bool,
) -> None:
    """In [0,1], inside the eps-ball, same shape/dtype/device, detached; parameter grads
    (None or filled) bit-identical; every module's mode restored."""
    torch.manual_seed(seed)
    model = fresh_net(dtype).train(training)
    if mixed_modes:  # a submodule in the opposite mode must come back as it was
        model.features[1].train(not training)
    if prefill_grads:
        xg, yg = random_inputs(4, seed + 1, dtype)
        nn.functional.cross_entropy(model(xg), yg).backward()
    grads_before = grads_snapshot(model)
    modes_before = [m.training for m in model.modules()]
    x, y = random_inputs(batch, seed, dtype)
    x_orig = x.clone()

    x_adv = build_attack(name, eps=eps, **kwargs)(model, x, y)

    assert x_adv.shape == x.shape
    assert x_adv.dtype == x.dtype
    assert x_adv.device == x.device
    assert not x_adv.requires_grad
    assert torch.equal(x, x_orig), "the attack modified its input in place"
    assert x_adv.min().item() >= 0.0
    assert x_adv.max().item() <= 1.0
    assert_in_ball(x_adv, x, eps, kwargs.get("norm", "linf"))
    assert [m.training for m in model.modules()] == modes_before
    for before, p in zip(grads_before, model.parameters(), strict=True):
        if before is None:
            assert p.grad is None
        else:
            assert p.grad is not None
            assert torch.equal(p.grad, before)


@pytest.mark.parametrize(("name", "kwargs"), VARIANTS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_stays_inside_the_ball(
    name: str, kwargs: dict[str, Any], dtype: torch.dtype
) -> None:
    """x + delta rounded to bfloat16 landed up to 6% outside an eps=8/255 ball (and an L2
    one), after the projection in float32."""
    torch.manual_seed(0)
    norm = kwargs.get("norm", "linf")
    eps = 8 / 255 if norm == "linf" else 0.5
    x, y = random_inputs(32, 0, dtype)
    x_adv = build_attack(name, eps=eps, **kwargs)(fresh_net(dtype), x, y)
    assert x_adv.dtype == dtype
    delta = (x_adv.double() - x.double()).reshape(len(x), -1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert size.max().item() <= eps
    assert size.max().item() > 0.9 * eps  # it did attack
    assert x_adv.min().item() >= 0.0 and x_adv.max().item() <= 1.0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_l2_keeps_its_budget(dtype: torch.dtype) -> None:
    """Bringing a bfloat16 L2 result back inside the ball moved every coordinate rounded
    outwards towards x: on 3x32x32 images at eps 0.25 a third of the perturbation was lost
    (the attack weakened, robust accuracy overstated)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, N_CLASSES)).to(dtype)
    x = torch.rand(32, 3, 32, 32).to(dtype)
    y = torch.randint(0, N_CLASSES, (32,))
    x_adv = PGD(0.25, norm="l2", steps=10)(model, x, y)
    size = (x_adv.double() - x.double()).flatten(1).norm(dim=1) / 0.25
    assert size.max().item() <= 1.0
    assert size.min().item() > 0.95


@pytest.mark.parametrize(("name", "kwargs"), VARIANTS)
@FAST
@given(batch=st.integers(1, 6), seed=st.integers(0, 2**31 - 1))
def test_eps_zero_returns_x(name: str, kwargs: dict[str, Any], batch: int, seed: int) -> None:
    """eps=0 (e.g. the start of an eps warm-up) returns x exactly, without running the model."""
    model = fresh_net()
    x, y = random_inputs(batch, seed, torch.float32)
    for attack in (build_attack(name, eps=0.0, **kwargs), build_attack(name, eps=0.3, **kwargs)):
        x_adv = attack.with_eps(0.0)(model, x, y)
        assert torch.equal(x_adv, x)
        assert x_adv.data_ptr() != x.data_ptr()
    assert model.recorder.seen == []


@pytest.mark.parametrize(("name", "kwargs"), VARIANTS)
@pytest.mark.parametrize("model_mode", ["eval", "train", "keep"])
@pytest.mark.parametrize("initially_training", [False, True])
def test_mode_during_attack(
    name: str, kwargs: dict[str, Any], model_mode: str, initially_training: bool
) -> None:
    """model_mode='eval'/'train' is the mode the forward passes really run in; 'keep' leaves
    the model's own mode; afterwards the original mode is back."""
    model = fresh_net().train(initially_training)
    x, y = make_batch(8, seed=1)
    build_attack(name, eps=0.1, model_mode=model_mode, **kwargs)(model, x, y)
    expected = {"eval": False, "train": True, "keep": initially_training}[model_mode]
    assert model.recorder.seen, "the attack never ran the model"
    assert set(model.recorder.seen) == {expected}
    assert model.training is initially_training
    assert all(m.training is initially_training for m in model.modules())


@pytest.mark.parametrize(("name", "kwargs"), VARIANTS)
def test_mode_restored_on_error(name: str, kwargs: dict[str, Any]) -> None:
    """The original mode comes back even when the forward pass raises."""
    model = fresh_net().train()
    x, y = make_batch(4, seed=2)
    with pytest.raises(RuntimeError):
        build_attack(name, eps=0.1, **kwargs)(model, x[:, :, :7], y)  # wrong spatial size
    assert all(m.training for m in model.modules())


@pytest.mark.parametrize(("name", "kwargs"), VARIANTS)
@pytest.mark.parametrize("eps", [0.1, 0.5])
def test_increases_loss(name: str, kwargs: dict[str, Any], eps: float) -> None:
    """On a trained model the adversarial loss is above the clean loss and accuracy not above."""
    torch.manual_seed(0)
    model = fresh_net().eval()
    x, y = make_batch(128, seed=10_000)
    with torch.no_grad():
        clean_logits = model(x)
    clean_loss = nn.functional.cross_entropy(clean_logits, y).item()
    assert (clean_logits.argmax(1) == y).float().mean().item() > 0.8, "fixture not trained"
    if kwargs.get("norm") == "l2":
        # the L2 radius of the L-inf ball's corners (sqrt(64) * eps): L2 radius 0.1 changes a
        # pixel by 0.0125 on average, too little for 10 queries of Square's L2 search to raise
        # the loss by the 1e-3 asked below
        eps *= x[0].numel() ** 0.5
    x_adv = build_attack(name, eps=eps, **kwargs)(model, x, y)
    with torch.no_grad():
        adv_logits = model(x_adv)
    adv_loss = nn.functional.cross_entropy(adv_logits, y).item()
    assert adv_loss > clean_loss * 1.05 + 1e-3
    assert (adv_logits.argmax(1) == y).sum() <= (clean_logits.argmax(1) == y).sum()


@pytest.mark.parametrize(("name", "kwargs"), VARIANTS)
def test_works_under_no_grad_and_inference_mode(name: str, kwargs: dict[str, Any]) -> None:
    """Evaluation code often runs under no_grad / inference_mode; the attack still works."""
    model = fresh_net()
    x, y = make_batch(8, seed=3)
    attack = build_attack(name, eps=0.2, **kwargs)
    torch.manual_seed(5)
    with torch.no_grad():
        a = attack(model, x, y)
    with torch.inference_mode():
        xi, yi = x.clone(), y.clone()
    b = attack(model, xi, yi)
    torch.manual_seed(5)
    with torch.inference_mode():  # called inside it: the same attack as under no_grad
        c = attack(model, x, y)
    assert torch.equal(c, a)
    for x_adv in (a, b):
        assert not torch.equal(x_adv, x)
        assert_in_ball(x_adv, x, 0.2, kwargs.get("norm", "linf"))


@pytest.mark.parametrize(("name", "kwargs"), VARIANTS)
@given(eps=st.floats(0.01, 1.0), new_eps=st.floats(0.0, 1.0))
@FAST
def test_with_eps_scales_step_sizes(
    name: str, kwargs: dict[str, Any], eps: float, new_eps: float
) -> None:
    """with_eps keeps the step-size/eps ratio, returns a copy and leaves the original alone."""
    attack = build_attack(name, eps=eps, **kwargs)
    before = dict(vars(attack))
    scaled = attack.with_eps(new_eps)
    assert type(scaled) is type(attack)
    assert scaled is not attack
    assert vars(attack) == before
    assert scaled.eps == new_eps
    assert scaled.label == attack.label
    for attr in type(attack).step_size_attrs:
        assert getattr(scaled, attr) == pytest.approx(getattr(attack, attr) * new_eps / eps)


# ---------------------------------------------------------------------------- contract
def test_registry_names_match_classes() -> None:
    assert attack_names() == list(ATTACKS)
    assert {"fgsm", "pgd"} <= set(ATTACKS)
    for name, cls in ATTACKS.items():
        assert issubclass(cls, Attack)
        assert cls.name == name


def test_unknown_attack_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"unknown attack 'cw'; valid: fgsm, pgd"):
        build_attack("cw", eps=0.1)


def test_unexpected_argument_names_it_and_accepted_ones() -> None:
    with pytest.raises(AttackArgumentError, match=r"steps.*accepted: eps, alpha") as err:
        build_attack("fgsm", eps=0.1, steps=3)
    assert isinstance(err.value, ValueError)
    assert isinstance(err.value, TypeError)


@pytest.mark.parametrize(
    ("factory", "argument"),
    [
        (lambda: PGD(eps=1.5), "eps"),
        (lambda: PGD(eps=-0.1), "eps"),
        (lambda: PGD(eps=float("inf"), norm="l2"), "eps"),
        (lambda: PGD(eps=float("nan"), norm="l2"), "eps"),
        (lambda: PGD(eps=-0.5, norm="l2"), "eps"),
        (lambda: PGD(eps=0.1, steps=0), "steps"),
        (lambda: PGD(eps=0.1, restarts=0), "restarts"),
        (lambda: PGD(eps=0.1, restarts=3, random_start=False), "restarts"),
        (lambda: PGD(eps=0.1, alpha=0.0), "alpha"),
        (lambda: PGD(eps=0.1, norm="l1"), "norm"),
        (lambda: PGD(eps=0.1, model_mode="inference"), "model_mode"),
        (lambda: FGSM(eps=0.1, norm="l2"), "l2"),
        (lambda: FGSM(eps=0.1, alpha=-1.0), "alpha"),
    ],
)
def test_invalid_arguments(factory: Any, argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        factory()


@pytest.mark.parametrize("name", ["pgd", "apgd"])
def test_l2_budgets_above_one_are_attacks_too(name: str) -> None:
    """An L2 radius is not bounded by 1 (the usual MNIST budget is 2.0; the L2 diameter of
    [0, 1]^d is sqrt(d)): such an attack runs, stays in its ball, and goes beyond radius 1."""
    torch.manual_seed(0)
    net = train_briefly(fresh_net())
    x, y = make_batch(32, seed=7)
    x_adv = build_attack(name, eps=2.0, norm="l2", steps=10)(net, x, y)
    dist = (x_adv - x).flatten(1).norm(dim=1)
    assert float(dist.max()) <= 2.0 + 1e-4
    assert float(dist.max()) > 1.0
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    with pytest.raises(ValueError, match=r"eps must be a number in \[0, 1\] \(L-inf"):
        build_attack(name, eps=2.0, norm="linf", steps=10)


def test_inputs_outside_unit_range_rejected() -> None:
    x, y = make_batch(4, seed=4)
    with pytest.raises(ValueError, match=r"\[0,1\]"):
        PGD(eps=0.1, steps=1)(fresh_net(), (x - 0.5) / 0.5, y)


def test_inputs_that_are_not_float_tensors_or_hold_nan_rejected() -> None:
    """Each in one line that says what to pass instead (a NumPy array once read as "x is on
    cpu but y is on cpu", NaN passed the range check)."""
    x, y = make_batch(4, seed=4)
    attack, model = PGD(eps=0.1, steps=1), fresh_net()
    with pytest.raises(TypeError, match=r"got ndarray \(torch.as_tensor converts"):
        attack(model, x.numpy(), y)
    with pytest.raises(ValueError, match=r"got dtype torch.uint8 \(for 8-bit images pass"):
        attack(model, (x * 255).to(torch.uint8), y)
    x[1, 0, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="attack inputs hold NaN"):
        attack(model, x, y)


def test_labels() -> None:
    assert FGSM(0.1).label == "fgsm"
    assert FGSM(0.1, random_start=True).label == "fgsm_rs"
    assert PGD(0.1, steps=20).label == "pgd20"
    assert PGD(0.1, steps=20, norm="l2").label == "pgd20_l2"
    assert PGD(0.1, steps=10, restarts=5).label == "pgd10_r5"


def test_default_step_sizes() -> None:
    assert FGSM(0.1).alpha == pytest.approx(0.1)
    assert FGSM(0.1, random_start=True).alpha == pytest.approx(0.125)
    assert PGD(0.1, steps=10).alpha == pytest.approx(0.025)
    assert PGD(0.5, steps=20, norm="l2").alpha == pytest.approx(0.0625)
    # from eps=0 the default ratio is used again
    assert PGD(0.0, steps=10).with_eps(0.1).alpha == pytest.approx(0.025)


@pytest.mark.parametrize(("name", "kwargs"), VARIANTS)
def test_integer_labels_of_any_width(name: str, kwargs: dict[str, Any]) -> None:
    """int32 / uint8 labels (numpy's default on some platforms, many datasets) attack like int64."""
    x, y = make_batch(6, seed=5)
    net = fresh_net()  # before seeding: the first call trains the shared net
    torch.manual_seed(0)
    reference = build_attack(name, eps=0.1, **kwargs)(net, x, y)
    for dtype in (torch.int32, torch.uint8):
        torch.manual_seed(0)
        out = build_attack(name, eps=0.1, **kwargs)(net, x, y.to(dtype))
        assert torch.equal(out, reference), dtype


@pytest.mark.parametrize(("name", "kwargs"), VARIANTS)
@pytest.mark.parametrize("bad", ["float", "column", "one_hot", "bool"])
def test_labels_that_are_not_class_indices_rejected(
    name: str, kwargs: dict[str, Any], bad: str
) -> None:
    x, y = make_batch(6, seed=5)
    labels = {
        "float": y.float(),
        "column": y[:, None],
        "one_hot": nn.functional.one_hot(y, N_CLASSES),
        "bool": y > 4,
    }[bad]
    with pytest.raises((ValueError, TypeError), match="class indices"):
        build_attack(name, eps=0.1, **kwargs)(fresh_net(), x, labels)


@pytest.mark.parametrize(("name", "kwargs"), VARIANTS)
@pytest.mark.parametrize("label", [N_CLASSES, -1])
def test_labels_out_of_the_models_range_rejected(
    name: str, kwargs: dict[str, Any], label: int
) -> None:
    """A label the model has no logit for would never be predicted: counted "not robust"
    without an attack by those that skip misclassified samples (APGD, Square)."""
    x, y = make_batch(6, seed=5)
    y[2] = label
    match = "out of range for a model with" if label > 0 else "class indices >= 0"
    with pytest.raises(ValueError, match=match):
        build_attack(name, eps=0.1, **kwargs)(fresh_net(), x, y)


class _Wrapped(nn.Module):
    """Returns the net's logits inside a tuple or a dict, as detection / HF-style models do."""

    def __init__(self, net: nn.Module, kind: str) -> None:
        super().__init__()
        self.net, self.kind = net, kind

    def forward(self, x: torch.Tensor) -> Any:
        logits = self.net(x)
        return (logits, x) if self.kind == "tuple" else {"logits": logits}


@pytest.mark.parametrize(("name", "kwargs"), VARIANTS)
@pytest.mark.parametrize("kind", ["tuple", "dict"])
def test_model_that_does_not_return_logits_rejected(
    name: str, kwargs: dict[str, Any], kind: str
) -> None:
    x, y = make_batch(6, seed=5)
    model = _Wrapped(fresh_net(), kind)
    with pytest.raises(TypeError, match=f"returns logits of shape.*returned a {kind}"):
        build_attack(name, eps=0.1, **kwargs)(model, x, y)
    assert not model._forward_hooks  # the check leaves nothing behind
    out = build_attack(name, eps=0.1, **kwargs)(model.net, x, y)  # and the net itself works
    assert not model.net._forward_hooks and out.shape == x.shape


def test_model_must_be_a_module() -> None:
    x, y = make_batch(4, seed=4)
    net = fresh_net()
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        PGD(eps=0.1, steps=1)(lambda t: net(t), x, y)  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "kwargs"), VARIANTS)
def test_inputs_on_another_device_than_the_model_rejected(
    name: str, kwargs: dict[str, Any]
) -> None:
    """As a CUDA model with CPU inputs: the meta device stands in for the other device."""
    x, y = make_batch(4, seed=4)
    attack = build_attack(name, eps=0.1, **kwargs)
    with pytest.raises(ValueError, match="parameters are on meta but x and y are on cpu"):
        attack(fresh_net().to("meta"), x, y)
    with pytest.raises(ValueError, match="x is on cpu but y is on meta"):
        attack(fresh_net(), x, y.to("meta"))


@pytest.mark.parametrize(("name", "kwargs"), VARIANTS)
@pytest.mark.parametrize(("model_mode", "initially_training"), [("train", False), ("keep", True)])
def test_batchnorm_statistics_untouched_by_train_mode_attacks(
    name: str, kwargs: dict[str, Any], model_mode: str, initially_training: bool
) -> None:
    """Attacks never disturb the model: in train mode BatchNorm normalizes with the batch's
    statistics during the attack, but its running statistics are what they were afterwards
    (the attack's forward passes are not training steps)."""
    model = fresh_net().train(initially_training)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = make_batch(8, seed=1)
    build_attack(name, eps=0.1, model_mode=model_mode, **kwargs)(model, x, y)
    assert set(model.recorder.seen) == {True}  # the forward passes did run in train mode
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())


def test_numpy_scalars_accepted_as_the_numbers_they_are() -> None:
    """eps from np.float32 arithmetic or steps from np.arange are numbers; they used to be refused
    with 'eps must be a number', and are stored as Python numbers (metric keys, JSON)."""
    np = pytest.importorskip("numpy")
    f, i = np.float32, np.int64
    pairs = [
        (
            PGD(f(0.125), alpha=f(0.03125), steps=i(3), restarts=i(2)),
            PGD(0.125, 0.03125, 3, restarts=2),
        ),
        (
            FGSM(f(0.125), alpha=f(0.15625), random_start=True),
            FGSM(0.125, 0.15625, random_start=True),
        ),
        (
            build_attack("apgd", eps=f(0.125), steps=i(3), restarts=i(2), rho=f(0.75), seed=i(1)),
            build_attack("apgd", eps=0.125, steps=3, restarts=2, rho=0.75, seed=1),
        ),
        (
            build_attack("apgd_t", eps=f(0.125), steps=i(3), n_target_classes=i(2)),
            build_attack("apgd_t", eps=0.125, steps=3, n_target_classes=2),
        ),
        (
            build_attack(
                "square", eps=f(0.125), n_queries=i(10), restarts=i(2), p_init=f(0.5), seed=i(1)
            ),
            build_attack("square", eps=0.125, n_queries=10, restarts=2, p_init=0.5, seed=1),
        ),
    ]
    x, y = make_batch(6, seed=5)
    for numpy_made, plain in pairs:
        for k, v in vars(numpy_made).items():
            assert type(v) is type(vars(plain)[k]), k
        assert numpy_made.label == plain.label
        net = fresh_net()
        torch.manual_seed(0)
        a = numpy_made(net, x, y)
        torch.manual_seed(0)
        b = plain(net, x, y)
        assert torch.equal(a, b)


def test_square_under_autocast() -> None:
    """Under bf16 autocast the margins come out in bf16; Square keeps them in float32 (it once
    failed with "Index put requires the source and destination dtypes match")."""
    model = fresh_net().eval()
    x, y = make_batch(16, seed=6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x_adv = build_attack("square", eps=0.1, n_queries=20)(model, x, y)
    assert x_adv.dtype == x.dtype
    assert_in_ball(x_adv, x, 0.1, "linf")
