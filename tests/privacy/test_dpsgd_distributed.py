"""Distributed DP-SGD with shards of unequal size: every record must weigh the same.

Rank 0 alone adds noise of std ``sigma * C``; if a rank divided its clipped sum by the expected
size of its *own* shard, the records on a smaller shard would weigh more than the noise is
calibrated for (an effective noise multiplier below the accounted one). Two real gloo processes.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

pytestmark = pytest.mark.slow

N, FEATURES, CLASSES = 5, 4, 3  # 5 records over 2 ranks: shards of 3 and 2

WORKER = textwrap.dedent(
    """
    import sys, warnings
    import torch
    import torch.distributed as dist
    from torch import nn
    from robustai.distributed import unwrap_model
    from robustai.privacy import DPSGD

    warnings.simplefilter("ignore")
    rank, store, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    n, f, c = (int(a) for a in sys.argv[4:7])
    mode = sys.argv[7]
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    torch.manual_seed(0)
    x, y = torch.randn(n, f), torch.randint(0, c, (n,))
    model = nn.Linear(f, c)
    dp = DPSGD(
        model, torch.optim.SGD(model.parameters(), lr=0.0), x, y, batch_size=64, epochs=1,
        noise_multiplier=0.0, max_grad_norm=1e6, accountant="rdp", noise_seed=0,
        distributed=True, grad_sample_mode=mode,
    )
    xb, yb = next(iter(dp.loader))  # sample rate 1: the rank's whole shard
    dp.optimizer.zero_grad(set_to_none=True)
    dp.start_training_pass()
    dp.loss(dp.model(xb), yb).backward()
    dp.optimizer.step()
    assert unwrap_model(dp.model) is model  # inside Opacus' GradSampleModule and DPDDP
    grads = [p.grad.detach().clone() for p in dp.model.parameters()]
    torch.save({"grads": grads, "expected": dp.optimizer.expected_batch_size}, out)
    dist.destroy_process_group()
    """
)


@pytest.mark.parametrize("mode", ["ghost", "hooks"])
def test_every_rank_scales_by_the_same_expected_batch_so_records_weigh_alike(
    mode: str, tmp_path: Path, two_ranks: Callable[..., None]
) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    two_ranks(
        script,
        str(tmp_path / "store"),
        lambda r: str(tmp_path / f"{r}"),
        *(str(v) for v in (N, FEATURES, CLASSES)),
        mode,
    )
    results = [torch.load(tmp_path / f"{r}") for r in range(2)]
    # Opacus' convention: the global expected batch split evenly, the same on every rank.
    assert [r["expected"] for r in results] == [N / 2, N / 2]

    torch.manual_seed(0)
    x, y = torch.randn(N, FEATURES), torch.randint(0, CLASSES, (N,))
    model = nn.Linear(FEATURES, CLASSES)
    F.cross_entropy(model(x), y).backward()  # no clipping at C=1e6, no noise: the mean gradient
    for r in results:
        for got, p in zip(r["grads"], model.parameters(), strict=True):
            torch.testing.assert_close(got, p.grad, rtol=1e-5, atol=1e-6)
