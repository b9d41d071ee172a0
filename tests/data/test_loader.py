"""TensorLoader (seeded in-memory batching) and the split helpers it is fed by."""

from __future__ import annotations

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from robustai.data import TensorLoader
from robustai.data.split import channel_stats, stratified_split, take

FAST = settings(max_examples=40, deadline=None)


def make_data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x[i] is filled with i and y[i] == i, so a batch shows which samples it holds and pairing."""
    y = torch.arange(n)
    x = y.float().view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    return x, y


def epoch(loader: TensorLoader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(loader)


def order(loader: TensorLoader) -> list[int]:
    return torch.cat([y for _, y in loader]).tolist()


# ------------------------------------------------------------------------------ TensorLoader
@FAST
@given(
    n=st.integers(1, 70),
    batch_size=st.integers(1, 20),
    shuffle=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_every_sample_exactly_once_per_epoch(
    n: int, batch_size: int, shuffle: bool, seed: int
) -> None:
    x, y = make_data(n)
    loader = TensorLoader(x, y, batch_size, shuffle=shuffle, seed=seed)
    for _ in range(3):  # several epochs: the generator advances, the coverage must not change
        batches = epoch(loader)
        seen = torch.cat([yb for _, yb in batches])
        assert sorted(seen.tolist()) == list(range(n))
        for xb, yb in batches:  # inputs stay paired with their labels
            assert torch.equal(xb[:, 0, 0, 0].long(), yb)
        if not shuffle:
            assert seen.tolist() == list(range(n))


@FAST
@given(n=st.integers(1, 70), batch_size=st.integers(1, 20), shuffle=st.booleans())
def test_batch_sizes_and_len(n: int, batch_size: int, shuffle: bool) -> None:
    x, y = make_data(n)
    loader = TensorLoader(x, y, batch_size, shuffle=shuffle)
    sizes = [len(yb) for _, yb in loader]
    assert len(loader) == len(sizes) == -(-n // batch_size)
    assert all(s == batch_size for s in sizes[:-1])
    assert sizes[-1] == n - (len(sizes) - 1) * batch_size  # the last batch is partial, not padded
    assert loader.num_samples == n


@FAST
@given(n=st.integers(1, 70), batch_size=st.integers(1, 20), shuffle=st.booleans())
def test_drop_last(n: int, batch_size: int, shuffle: bool) -> None:
    x, y = make_data(n)
    loader = TensorLoader(x, y, batch_size, shuffle=shuffle, drop_last=True)
    batches = epoch(loader)
    assert len(loader) == len(batches) == n // batch_size
    assert all(len(yb) == batch_size for _, yb in batches)
    seen = torch.cat([yb for _, yb in batches]).tolist() if batches else []
    assert len(set(seen)) == len(seen) == (n // batch_size) * batch_size


@FAST
@given(
    n=st.integers(1, 70),
    batch_size=st.integers(2, 20),
    min_batch=st.integers(1, 2),
    shuffle=st.booleans(),
)
@example(n=41, batch_size=20, min_batch=2, shuffle=True)  # a last batch of one, left out
def test_min_batch_leaves_out_only_a_last_batch_below_it(
    n: int, batch_size: int, min_batch: int, shuffle: bool
) -> None:
    x, y = make_data(n)
    loader = TensorLoader(x, y, batch_size, shuffle=shuffle, min_batch=min_batch)
    sizes = [len(yb) for _, yb in loader]
    assert len(loader) == len(sizes)
    assert all(s >= min_batch for s in sizes)
    last = n % batch_size
    left_out = last if 0 < last < min_batch else 0
    assert sum(sizes) == n - left_out


def test_same_seed_same_order_and_epochs_differ() -> None:
    x, y = make_data(200)
    a = TensorLoader(x, y, 32, shuffle=True, seed=7)
    b = TensorLoader(x, y, 32, shuffle=True, seed=7)
    a_epochs = [order(a) for _ in range(3)]
    b_epochs = [order(b) for _ in range(3)]
    assert a_epochs == b_epochs  # same seed: same sequence of epochs
    assert a_epochs[0] != a_epochs[1] != a_epochs[2]  # a new order every epoch
    assert a_epochs[0] != list(range(200))  # actually shuffled
    c = TensorLoader(x, y, 32, shuffle=True, seed=8)
    assert order(c) != a_epochs[0]  # another seed: another order


def test_unshuffled_order_is_stable_across_epochs() -> None:
    x, y = make_data(50)
    loader = TensorLoader(x, y, 8, shuffle=False, seed=3)
    assert order(loader) == order(loader) == list(range(50))


def test_rejects_bad_arguments() -> None:
    x, y = make_data(10)
    with pytest.raises(ValueError, match="length"):
        TensorLoader(x, y[:9], 4)
    with pytest.raises(ValueError, match="batch_size"):
        TensorLoader(x, y, 0)
    with pytest.raises(ValueError, match="min_batch"):
        TensorLoader(x, y, 4, min_batch=0)
    with pytest.raises(ValueError, match="batch_size must be a whole number"):
        TensorLoader(x, y, 4.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"torch\.as_tensor converts NumPy arrays"):
        TensorLoader(x.numpy(), y.numpy(), 4)  # type: ignore[arg-type]


def test_to_moves_data_and_returns_self() -> None:
    x, y = make_data(10)
    loader = TensorLoader(x, y, 4, shuffle=True)
    assert loader.to("cpu") is loader
    assert sorted(order(loader)) == list(range(10))


# ------------------------------------------------------------------------ stratified_split
@st.composite
def labels_and_holdout(draw: st.DrawFn) -> tuple[torch.Tensor, float]:
    counts = draw(st.lists(st.integers(2, 40), min_size=1, max_size=8))
    perm_seed = draw(st.integers(0, 1000))
    y = torch.cat([torch.full((c,), k) for k, c in enumerate(counts)])
    y = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(perm_seed))]
    holdout = draw(st.floats(0.05, 0.95))
    return y, holdout


@FAST
@given(data=labels_and_holdout(), seed=st.integers(0, 2**31 - 1))
# a tiny class with a large holdout: rounding must not move the whole class to eval
@example(data=(torch.tensor([0, 0, 1, 1, 1, 1, 1]), 0.8), seed=0)
@example(data=(torch.tensor([0, 1, 0, 1, 2, 2]), 0.1), seed=0)
def test_stratified_split_partitions_every_class(
    data: tuple[torch.Tensor, float], seed: int
) -> None:
    y, holdout = data
    tr, ev = stratified_split(y, holdout, seed)
    tr_set, ev_set = set(tr.tolist()), set(ev.tolist())
    assert len(tr_set) == len(tr) and len(ev_set) == len(ev)  # no duplicates
    assert not tr_set & ev_set  # disjoint
    assert tr_set | ev_set == set(range(len(y)))  # covers everything
    for c in torch.unique(y):
        n_c = int((y == c).sum())
        held = int((y[ev] == c).sum())
        assert 1 <= held <= n_c - 1, f"class {int(c)} ({n_c} samples) missing from a part"
        assert abs(held - n_c * holdout) <= 1
    tr2, ev2 = stratified_split(y, holdout, seed)
    assert torch.equal(tr, tr2) and torch.equal(ev, ev2)  # deterministic per seed


def test_stratified_split_depends_on_seed() -> None:
    y = torch.arange(500) % 5
    _, ev_a = stratified_split(y, 0.2, 0)
    _, ev_b = stratified_split(y, 0.2, 1)
    assert len(ev_a) == len(ev_b) == 100
    assert not torch.equal(ev_a, ev_b)


@pytest.mark.parametrize("holdout", [0.0, 1.0, -0.1, 1.5])
def test_stratified_split_rejects_bad_holdout(holdout: float) -> None:
    with pytest.raises(ValueError, match="holdout"):
        stratified_split(torch.arange(10) % 2, holdout, 0)


# ------------------------------------------------------------------------ channel_stats, take
def test_channel_stats_values() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand((64, 3, 5, 4), generator=g)
    x[:, 1] = x[:, 1] * 0.5 + 0.25
    x[:, 2] = 0.75  # constant channel: std is clamped, never zero
    mean, std = channel_stats(x)
    assert len(mean) == len(std) == 3
    for c in range(2):
        flat = x[:, c].flatten().double()
        assert mean[c] == pytest.approx(float(flat.mean()), abs=1e-6)
        assert std[c] == pytest.approx(float(flat.std()), abs=1e-6)
    assert mean[2] == pytest.approx(0.75)
    assert std[2] == pytest.approx(1e-6)
    assert all(s > 0 for s in std)


def test_take_subset() -> None:
    x, y = make_data(100)
    xs, ys = take(x, y, 30, seed=4)
    assert len(xs) == len(ys) == 30
    assert len(set(ys.tolist())) == 30 and set(ys.tolist()) <= set(range(100))
    assert torch.equal(xs[:, 0, 0, 0].long(), ys)  # rows stay paired
    assert ys.tolist() == sorted(ys.tolist())  # original order kept
    xs2, ys2 = take(x, y, 30, seed=4)
    assert torch.equal(xs, xs2) and torch.equal(ys, ys2)
    _, ys3 = take(x, y, 30, seed=5)
    assert not torch.equal(ys, ys3)


@pytest.mark.parametrize("n", [None, 100, 1000])
def test_take_all(n: int | None) -> None:
    x, y = make_data(100)
    xs, ys = take(x, y, n, seed=0)
    assert torch.equal(xs, x) and torch.equal(ys, y)


@pytest.mark.parametrize("n", [0, -1])
def test_take_refuses_a_size_below_one(n: int) -> None:
    x, y = make_data(10)
    with pytest.raises(ValueError, match="subset size must be >= 1"):
        take(x, y, n, 0)  # -1 kept all but one sample

