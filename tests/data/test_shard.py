"""TensorLoader.shard: each rank's part of every global batch, for data-parallel training."""

from __future__ import annotations

import pytest
import torch

from robustai.data import TensorLoader


def loaders(n: int, batch: int, world: int, shuffle: bool = True) -> list[TensorLoader]:
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1)
    y = torch.arange(n)
    return [
        TensorLoader(x, y, batch, shuffle=shuffle, seed=3).shard(r, world) for r in range(world)
    ]


@pytest.mark.parametrize(("n", "batch", "world"), [(100, 10, 2), (103, 10, 2), (103, 16, 3)])
def test_shards_of_each_step_make_up_the_single_process_batch(n: int, batch: int, world: int):
    single = TensorLoader(
        torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1),
        torch.arange(n),
        batch,
        shuffle=True,
        seed=3,
    )
    expected = [y for _, y in single]  # one pass, the first, as each rank's first pass
    ranks = loaders(n, batch, world)
    for loader in ranks:
        assert len(loader) == len(single)
    for step, parts in enumerate(zip(*ranks, strict=True)):
        ys = [y for _, y in parts]
        sizes = [len(y) for y in ys]
        assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
        # every rank reports the size of the global batch its part belongs to
        assert {loader.global_batch for loader in ranks} == {sum(sizes)}
        assert torch.equal(torch.cat(ys), expected[step])


def test_weights_make_the_mean_of_rank_means_the_global_mean():
    # What the trainer does with global_batch: weight_r = n_r * world / n_global.
    ranks = loaders(103, 10, 3)
    for parts in zip(*ranks, strict=True):
        ys = [y.float() for _, y in parts]
        n = ranks[0].global_batch
        weighted = sum(y.mean() * len(y) * 3 / n for y in ys) / 3
        assert weighted == pytest.approx(torch.cat(ys).mean().item())


def test_a_last_batch_smaller_than_the_world_is_dropped_on_every_rank():
    ranks = loaders(21, 10, 3)  # batches of 10, 10, 1: the last cannot feed 3 ranks
    assert [len(loader) for loader in ranks] == [2, 2, 2]
    assert sum(len(y) for loader in ranks for _, y in loader) == 20


@pytest.mark.parametrize(("n", "steps"), [(25, 3), (23, 2)])
def test_min_batch_counts_per_rank(n: int, steps: int):
    # batches of 10, 10 and then 5 (3 + 2 per rank: kept) or 3 (2 + 1: BatchNorm could not
    # train on rank 1's one sample, so every rank leaves that batch out)
    ranks = loaders(n, 10, 2)
    for loader in ranks:
        loader.min_batch = 2
    assert [len(loader) for loader in ranks] == [steps, steps]
    assert all(len(y) >= 2 for loader in ranks for _, y in loader)


def test_shard_refuses_bad_ranks_and_batches_smaller_than_the_world():
    x, y = torch.zeros(8, 1, 1, 1), torch.zeros(8, dtype=torch.long)
    with pytest.raises(ValueError, match="rank must be in"):
        TensorLoader(x, y, 4).shard(2, 2)
    with pytest.raises(ValueError, match="smaller than the 4 processes"):
        TensorLoader(x, y, 2).shard(0, 4)


def test_resuming_a_sharded_pass_replays_the_same_parts():
    first = loaders(100, 10, 2)[1]
    it = iter(first)
    for _ in range(3):
        next(it)
    state = first.state_dict()
    rest = [y for _, y in it]
    again = loaders(100, 10, 2)[1]
    again.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip([y for _, y in again], rest, strict=True))
