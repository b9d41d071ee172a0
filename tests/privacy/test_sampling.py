"""Poisson sampling: each record joins each batch independently with probability q."""

from __future__ import annotations

import math

import pytest
import torch

from robustai.privacy import PoissonLoader, entropy_generator


def _loader(n: int, batch_size: int, seed: int = 0) -> PoissonLoader:
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1)
    return PoissonLoader(x, torch.arange(n), batch_size, generator=entropy_generator("cpu", seed))


def test_rate_length_and_expected_batch() -> None:
    loader = _loader(1437, 64)
    assert loader.sample_rate == pytest.approx(64 / 1437)
    assert len(loader) == math.ceil(1437 / 64)
    assert loader.expected_batch_size == pytest.approx(64)


def test_batch_sizes_are_binomial_and_membership_is_independent() -> None:
    n, b = 500, 25
    loader = _loader(n, b)
    sizes, counts = [], torch.zeros(n)
    for _ in range(20):
        for x, y in loader:
            assert torch.equal(x.view(-1).long(), y)  # rows stay paired
            assert len(set(y.tolist())) == len(y)  # no record twice in one batch
            sizes.append(len(y))
            counts[y] += 1
    q, steps = b / n, 20 * len(loader)
    # Batch sizes ~ Binomial(n, q) (a fixed batch size would have variance 0).
    sample = torch.tensor(sizes, dtype=torch.float64)
    assert abs(sample.mean().item() - n * q) < 4 * math.sqrt(n * q * (1 - q) / len(sizes))
    assert sample.var().item() == pytest.approx(n * q * (1 - q), rel=0.3)
    # Each record's count over all steps ~ Binomial(steps, q).
    assert abs(counts.mean().item() - steps * q) < 4 * math.sqrt(steps * q * (1 - q) / n)
    assert counts.var().item() == pytest.approx(steps * q * (1 - q), rel=0.25)


def test_a_tiny_rate_is_not_rounded_up_to_float32_resolution() -> None:
    """The accountant assumes exactly q. Float32 uniforms are multiples of 2**-24 (6e-8), so
    'u < q' with q = 1e-9 would hold whenever u == 0: a rate 60x too high."""
    n = 2_000_000
    x = torch.zeros(n, 1, dtype=torch.uint8)
    loader = PoissonLoader(
        x, torch.zeros(n, dtype=torch.long), 1,
        generator=entropy_generator("cpu", 0), population=10**9,
    )  # fmt: skip
    assert loader.sample_rate == 1e-9
    steps = 100
    batches = iter(loader)
    chosen = sum(len(next(batches)[1]) for _ in range(steps))
    # Expected n * q * steps = 0.2 records (float32 draws: about 12); seeded, so no flakes.
    assert chosen <= 3, chosen


def test_empty_batches_are_yielded_not_skipped() -> None:
    loader = _loader(40, 1)  # q = 1/40: a batch is empty with probability ~0.36
    batches = [len(y) for _ in range(5) for _, y in loader]
    assert len(batches) == 5 * 40  # every step happens, empty or not
    assert batches.count(0) > 20
    x, y = next(b for b in loader if len(b[1]) == 0) if 0 in batches else (None, None)
    assert x is not None and x.shape == (0, 1, 1, 1) and y.shape == (0,)


def test_same_seed_same_batches_fresh_entropy_differs() -> None:
    a = [y.tolist() for _, y in _loader(200, 20, seed=3)]
    b = [y.tolist() for _, y in _loader(200, 20, seed=3)]
    assert a == b
    x = torch.zeros(200, 1, 1, 1)
    c = [y.tolist() for _, y in PoissonLoader(x, torch.arange(200), 20)]
    d = [y.tolist() for _, y in PoissonLoader(x, torch.arange(200), 20)]
    assert c != d  # seeded from OS entropy, not from the global (public) seed


def test_resume_position_skips_the_batches_already_done() -> None:
    loader = _loader(100, 10)
    it = iter(loader)
    for _ in range(4):
        next(it)
    state = loader.state_dict()
    assert state == {"position": 4}
    fresh = _loader(100, 10)
    fresh.load_state_dict(state)
    assert len(list(fresh)) == len(loader) - 4
    assert len(list(fresh)) == len(loader)  # the next epoch is whole again
    assert "generator" not in state  # the sampling randomness never reaches a checkpoint


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        PoissonLoader(torch.zeros(3, 1), torch.zeros(2), 1)
    with pytest.raises(ValueError, match="batch_size"):
        PoissonLoader(torch.zeros(3, 1), torch.zeros(3), 0)
