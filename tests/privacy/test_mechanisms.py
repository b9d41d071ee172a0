"""Noise layers: the noise has the promised law, clipping always bounds the sensitivity, the
Gaussian calibration is exact, and the augmentation says it is not DP."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

from robustai.models import build_model
from robustai.privacy import (
    GaussianMechanism,
    GaussianNoise,
    LaplaceMechanism,
    analytic_gaussian_sigma,
    attach,
    clip_records,
    epsilon_spent,
    gaussian_delta,
)


def _noise(layer: torch.nn.Module, n: int = 20_000) -> np.ndarray:
    """Noise alone: zero records are inside every clipping ball, so output = noise."""
    return layer(torch.zeros(n, 4)).flatten().double().numpy()


def test_laplace_noise_has_scale_sensitivity_over_epsilon() -> None:
    layer = LaplaceMechanism(sensitivity=2.0, epsilon=0.5, seed=1)
    b = 2.0 / 0.5
    z = _noise(layer)
    assert stats.kstest(z, stats.laplace(scale=b).cdf).pvalue > 1e-3
    assert z.var() == pytest.approx(2 * b**2, rel=0.05)
    # The test has power: a 20% wrong scale is rejected.
    assert stats.kstest(z, stats.laplace(scale=1.2 * b).cdf).pvalue < 1e-6


def test_gaussian_noise_has_the_calibrated_sigma() -> None:
    layer = GaussianMechanism(sensitivity=1.0, epsilon=1.0, delta=1e-5, seed=2)
    z = _noise(layer)
    assert stats.kstest(z, stats.norm(scale=layer.sigma).cdf).pvalue > 1e-3
    assert z.var() == pytest.approx(layer.sigma**2, rel=0.05)
    assert stats.kstest(z, stats.norm(scale=1.2 * layer.sigma).cdf).pvalue < 1e-6


records = arrays(
    np.float32,
    st.tuples(st.integers(1, 6), st.integers(1, 12)),
    elements=st.floats(-1e6, 1e6, width=32),
)


@settings(max_examples=60, deadline=None)
@given(x=records, bound=st.floats(1e-3, 1e3), p=st.sampled_from([1, 2]))
def test_clipping_bounds_every_record(x: np.ndarray, bound: float, p: int) -> None:
    t = torch.from_numpy(x)
    out = clip_records(t, bound, p)
    norms = out.double().norm(p=p, dim=1)
    assert (norms <= bound * (1 + 1e-6)).all()
    # Any two clipped records differ by at most 2 * bound = the declared sensitivity.
    assert torch.cdist(out.double()[None], out.double()[None], p=p).max() <= 2 * bound * (1 + 1e-6)
    inside = t.double().norm(p=p, dim=1) <= bound
    assert torch.equal(out[inside], t[inside])  # records inside the ball are left alone


@settings(max_examples=20, deadline=None)
@given(x=records, sensitivity=st.floats(0.01, 100.0))
def test_mechanisms_clip_to_half_the_sensitivity(x: np.ndarray, sensitivity: float) -> None:
    t = torch.from_numpy(x)
    lap = LaplaceMechanism(sensitivity, 1.0)
    gau = GaussianMechanism(sensitivity, 1.0, 1e-5)
    assert (lap.clip(t).double().norm(p=1, dim=1) <= sensitivity / 2 * (1 + 1e-6)).all()
    assert (gau.clip(t).double().norm(p=2, dim=1) <= sensitivity / 2 * (1 + 1e-6)).all()


def test_non_finite_records_are_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        clip_records(torch.tensor([[1.0, math.inf]]), 1.0, 1)


@pytest.mark.parametrize(("eps", "delta"), [(0.5, 1e-5), (1.0, 1e-6), (8.0, 1e-5)])
def test_analytic_gaussian_calibration(eps: float, delta: float) -> None:
    sens = 2.0
    sigma = analytic_gaussian_sigma(eps, delta, sens)
    # Exactly on the boundary of Balle & Wang's Theorem 8, on the private side.
    assert gaussian_delta(eps, sigma, sens) <= delta
    assert gaussian_delta(eps, sigma * (1 - 1e-6), sens) > delta
    if eps < 1:  # tighter than the classical calibration where that one is valid
        assert sigma < sens * math.sqrt(2 * math.log(1.25 / delta)) / eps
    # Independent check: Opacus' PRV accountant on one unsampled Gaussian release.
    prv = epsilon_spent(sigma / sens, 1.0, 1, delta, "prv")
    assert eps <= prv <= eps + 0.02


@pytest.mark.parametrize("sens", [1e-320, 1e-300, 1e300])
def test_analytic_gaussian_calibration_at_extreme_sensitivities(sens: float) -> None:
    """The std is the sensitivity times that of sensitivity 1, on the private side, however
    large or small the sensitivity (the search once ran out of float range above 1e307 and
    returned a std 4x too small)."""
    sigma = analytic_gaussian_sigma(1.0, 1e-5, sens)
    assert gaussian_delta(1.0, sigma, sens) <= 1e-5
    assert sigma / sens == pytest.approx(analytic_gaussian_sigma(1.0, 1e-5, 1.0), rel=1e-3)


def test_a_sensitivity_whose_std_overflows_is_refused() -> None:
    with pytest.raises(ValueError, match=r"sensitivity 1e\+308 is out of range"):
        analytic_gaussian_sigma(1.0, 1e-5, 1e308)


def test_laplace_output_range_is_post_processing() -> None:
    layer = LaplaceMechanism(4.0, 1.0, output_range=(0.0, 1.0), seed=0)
    out = layer(torch.rand(64, 1, 8, 8))
    assert out.min() >= 0 and out.max() <= 1
    assert layer.releases == 64


def test_gaussian_noise_is_training_only_and_claims_no_privacy() -> None:
    aug = GaussianNoise(0.3)
    x = torch.zeros(10_000, 3)
    z = aug.train()(x)
    assert z.std().item() == pytest.approx(0.3, rel=0.05)
    assert torch.equal(aug.eval()(x), x)
    assert "no DP" in repr(aug)
    assert "No differential privacy" in (GaussianNoise.__doc__ or "")


@pytest.mark.parametrize("where", ["input", "features", "output"])
def test_attach_runs_the_layer_without_changing_the_weights(where: str) -> None:
    torch.manual_seed(0)
    model = build_model("small_cnn", (1, 8, 8), 10)
    keys = list(model.state_dict())
    x = torch.rand(4, 1, 8, 8)
    clean = model(x)
    layer = LaplaceMechanism(1.0, 1.0, seed=0)
    handle = attach(model, layer, where)
    assert not torch.allclose(model(x), clean)
    assert layer.releases == 4  # one release per row per forward pass
    assert list(model.state_dict()) == keys
    handle.remove()
    assert torch.allclose(model(x), clean)


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="epsilon"):
        LaplaceMechanism(1.0, 0.0)
    with pytest.raises(ValueError, match="sensitivity"):
        GaussianMechanism(-1.0, 1.0, 1e-5)
    with pytest.raises(ValueError, match="delta"):
        GaussianMechanism(1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="input, features, output"):
        attach(torch.nn.Linear(2, 2), GaussianNoise(0.1), "logits")
    with pytest.raises(ValueError, match="delta must be a number"):
        GaussianMechanism(1.0, 1.0, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="output_range"):
        LaplaceMechanism(1.0, 1.0, output_range=(1.0, 0.0))  # reversed: every output was 0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        # each failed with a raw TypeError ("'>' not supported ...") or NumPy's array errors
        (lambda: LaplaceMechanism(1.0, "1"), "epsilon must be a positive number, got '1'"),
        (lambda: LaplaceMechanism(None, 1.0), "sensitivity must be a positive number, got None"),
        (lambda: GaussianMechanism(np.array([1.0]), 1.0, 1e-5), "not an array"),
        (lambda: GaussianMechanism(np.array([1.0, 2.0]), 1.0, 1e-5), "not an array"),
        (lambda: GaussianMechanism(1.0, 1.0, "1e-5"), "delta must be a number in \\(0, 1\\)"),
        (lambda: analytic_gaussian_sigma("1", 1e-5, 1.0), "epsilon must be a positive number"),
        (lambda: analytic_gaussian_sigma(1.0, 1e-5, [1.0]), "sensitivity must be a positive"),
        (lambda: GaussianNoise("0.1"), "sigma must be a non-negative number, got '0.1'"),
    ],
)
def test_parameters_that_are_not_numbers_are_named(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_numpy_numbers_are_taken() -> None:
    """As the attacks take them: np.float32 from an array of settings was refused as 'must be
    a number'."""
    assert GaussianMechanism(1.0, 1.0, np.float32(1e-5)).sigma == pytest.approx(
        GaussianMechanism(1.0, 1.0, 1e-5).sigma, rel=1e-4
    )
    with pytest.raises(ValueError, match="delta must be a number"):
        GaussianMechanism(1.0, 1.0, True)  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64])
def test_integer_records_are_refused(dtype: torch.dtype) -> None:
    """Cast back to an integer dtype, the clipped record and the noise were truncated (uint8
    wrapped around): not the mechanism whose epsilon is stated."""
    for mechanism in (LaplaceMechanism(1.0, 1.0, seed=0), GaussianMechanism(1.0, 1.0, 1e-5)):
        with pytest.raises(TypeError, match="floating-point records"):
            mechanism(torch.full((4, 3), 100, dtype=dtype))


RANK_WORKER = """
import sys, warnings
import torch
import torch.distributed as dist
from robustai.privacy.plans import build_privacy

warnings.simplefilter("ignore")
rank, store, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
torch.set_num_threads(1)
dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
noises = {}
for name, where in (("gaussian", "features"), ("laplace", "output")):
    plan = build_privacy(name, where=where, sensitivity=4.0, epsilon=16.0, delta=1e-5, noise_seed=7)
    model = plan.prepare_model(torch.nn.Linear(4, 4))
    with torch.no_grad():
        model.weight.copy_(torch.eye(4))
        model.bias.zero_()
        noises[f"{name}-{where}"] = model(torch.zeros(3, 4))  # zero records: the noise alone
torch.save(noises, out)
dist.destroy_process_group()
"""


def _rank_noises(
    tmp_path: Path, tag: str, two_ranks: Callable[..., None]
) -> list[dict[str, torch.Tensor]]:
    """Each of two gloo ranks' noise from a query mechanism seeded with ``noise_seed=7``."""
    script = tmp_path / "worker.py"
    script.write_text(RANK_WORKER)
    store, outs = tmp_path / f"store-{tag}", [tmp_path / f"{tag}-{r}.pt" for r in range(2)]
    two_ranks(script, str(store), lambda r: str(outs[r]))
    return [torch.load(out) for out in outs]


@pytest.mark.slow
def test_a_seeded_query_mechanism_draws_its_own_noise_on_each_ddp_rank(
    tmp_path: Path, two_ranks: Callable[..., None]
) -> None:
    """With noise_seed, each rank of a DDP run must not reuse the other's draws (each noise
    would be applied world_size times in the global batch); a rerun reproduces each rank's, and
    rank 0 draws what one process does."""
    first = _rank_noises(tmp_path, "a", two_ranks)
    again = _rank_noises(tmp_path, "b", two_ranks)
    for key in first[0]:
        assert not torch.equal(first[0][key], first[1][key]), key
        for rank in range(2):
            assert torch.equal(first[rank][key], again[rank][key]), (key, rank)
    one = LaplaceMechanism(sensitivity=4.0, epsilon=16.0, seed=7)
    assert torch.equal(first[0]["laplace-output"], one(torch.zeros(3, 4)))


def test_attach_refuses_what_is_not_a_module() -> None:
    """A number where the layer belongs was taken, and the first forward pass failed inside the
    hook with an AttributeError."""
    with pytest.raises(TypeError, match=r"layer must be a torch\.nn\.Module .* got float"):
        attach(torch.nn.Linear(2, 2), 0.1, "input")  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", [(0, 3), (0, 1, 8, 8)])
def test_an_empty_batch_is_released_empty(shape: tuple[int, ...]) -> None:
    """As GaussianNoise returns it: flattening 0 records failed with "cannot reshape tensor of
    0 elements into shape [0, -1]"."""
    for mechanism in (LaplaceMechanism(1.0, 1.0), GaussianMechanism(1.0, 1.0, 1e-5)):
        out = mechanism(torch.zeros(shape))
        assert out.shape == shape and out.dtype == torch.float32
        assert mechanism.releases == 0


@settings(max_examples=30, deadline=None)
@given(x=records, bound=st.floats(1e-3, 1e3), p=st.sampled_from([1, 2]))
def test_bfloat16_records_are_clipped_within_the_bound(x: np.ndarray, bound: float, p: int) -> None:
    """Cast back to bfloat16 (autocast), a clipped norm exceeded the bound by up to 0.2%: the
    records come back in float32, within the bound up to float32 rounding."""
    out = clip_records(torch.from_numpy(x).bfloat16(), bound, p)
    assert out.dtype == torch.float32
    assert (out.double().norm(p=p, dim=1) <= bound * (1 + 1e-6)).all()
    assert clip_records(torch.from_numpy(x).double(), bound, p).dtype == torch.float64


def test_a_mechanism_under_autocast_clips_and_adds_noise_in_float32(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With trainer.amp the features reach the mechanism in bfloat16: the clipped records it
    adds noise to keep the bound, and only the noisy output is cast back to bfloat16."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, 100), torch.nn.ReLU(), torch.nn.Linear(100, 10)
    )
    mechanism = LaplaceMechanism(2.0, 1.0, seed=0)
    clipped: list[torch.Tensor] = []
    clip = mechanism.clip
    monkeypatch.setattr(mechanism, "clip", lambda x: clipped.append(clip(x)) or clipped[-1])
    attach(model, mechanism, "features")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.rand(500, 1, 8, 8) * 5)
    assert clipped[0].dtype == torch.float32
    assert (clipped[0].double().norm(p=1, dim=1) <= mechanism.bound * (1 + 1e-6)).all()
    assert out.dtype == torch.bfloat16 and mechanism.releases == 500


@pytest.mark.parametrize(
    ("seed", "error", "message"),
    [
        # 1.5 was silently truncated to 1, the others failed in torch's words at the first draw
        (1.5, TypeError, "seed must be a whole number or None"),
        ("abc", TypeError, "seed must be a whole number or None"),
        (True, TypeError, "seed must be a whole number or None"),
        (2**70, ValueError, r"seed=\d+: must be a whole number in \[0, 2\*\*62\)"),
        (-1, ValueError, r"seed=-1: must be a whole number in \[0, 2\*\*62\)"),
    ],
)
def test_a_bad_seed_is_refused_when_the_mechanism_is_built(
    seed: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        LaplaceMechanism(1.0, 1.0, seed=seed)  # type: ignore[arg-type]
    with pytest.raises(error, match=message):
        GaussianMechanism(1.0, 1.0, 1e-5, seed=seed)  # type: ignore[arg-type]
    with pytest.raises(error, match=message):
        LaplaceMechanism(1.0, 1.0).reseed(seed)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [None, 0, np.int64(3), 2**62 - 1])
def test_good_seeds_are_taken(seed: int | None) -> None:
    assert LaplaceMechanism(1.0, 1.0, seed=seed)(torch.zeros(2, 3)).shape == (2, 3)
