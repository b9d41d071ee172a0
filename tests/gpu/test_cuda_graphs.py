"""Attacks replayed from CUDA graphs compute what the eager attacks compute (needs CUDA)."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import Tensor, nn

from robustai.attacks import FGSM, PGD, graphs
from robustai.evaluation import Evaluator
from robustai.models import build_model

pytestmark = pytest.mark.gpu


def _model() -> nn.Module:
    torch.manual_seed(0)
    return build_model("small_cnn", (1, 28, 28), 10).cuda().eval()


def _batch(seed: int, n: int = 256) -> tuple[Tensor, Tensor]:
    g = torch.Generator(device="cuda").manual_seed(seed)
    x = torch.rand(n, 1, 28, 28, device="cuda", generator=g)
    return x, torch.randint(10, (n,), device="cuda", generator=g)


def _graph_count(model: nn.Module) -> int:
    cache = graphs._caches.get(model)
    return 0 if cache is None else len(cache.graphs)


@pytest.mark.parametrize("early_stop", [False, True])
def test_pgd_replayed_from_a_graph_matches_eager_bit_for_bit(early_stop: bool) -> None:
    model = _model()
    eager = PGD(0.1, steps=10, random_start=False, early_stop=early_stop)
    graphed = eager.with_cuda_graph()
    batches = [_batch(seed) for seed in range(4)]
    # first sighting eager, second warm-up + capture, then replays, each on another batch
    for i, (x, y) in enumerate(batches):
        out, ref = graphed(model, x, y), eager(model, x, y)
        differ = int((out != ref).sum())
        assert differ == 0, f"batch {i}: {differ} of {out.numel()} values differ from eager"
    assert _graph_count(model) == 1
    graphs.clear(model)


def test_replay_sees_weights_changed_in_place_and_new_tensors_recapture() -> None:
    model = _model()
    attack = PGD(0.1, steps=5, random_start=False).with_cuda_graph()
    x, y = _batch(0)
    for _ in range(3):
        attack(model, x, y)
    assert _graph_count(model) == 1
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()  # in place: the captured graph reads the new values
    opt.zero_grad(set_to_none=True)
    ref = PGD(0.1, steps=5, random_start=False)(model, x, y)
    assert torch.equal(attack(model, x, y), ref)
    model.double().float()  # new parameter tensors: a new key, eager again, never stale
    ref = PGD(0.1, steps=5, random_start=False)(model, x, y)
    assert torch.equal(attack(model, x, y), ref)
    graphs.clear(model)


def test_bf16_autocast_replay_matches_eager() -> None:
    model = _model()
    eager = PGD(0.1, steps=5, random_start=False)
    graphed = eager.with_cuda_graph()
    for seed in range(4):
        x, y = _batch(seed)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out, ref = graphed(model, x, y), eager(model, x, y)
        assert torch.equal(out, ref), f"batch {seed}"
    assert _graph_count(model) == 1
    graphs.clear(model)


def test_random_start_draws_anew_at_every_replay() -> None:
    model = _model()
    attack = FGSM(0.1, random_start=True).with_cuda_graph()
    x, y = _batch(0)
    outs = [attack(model, x, y) for _ in range(4)]
    assert _graph_count(model) == 1
    assert not torch.equal(outs[2], outs[3])  # two replays, two random starts
    for out in outs:
        assert float((out - x).abs().max()) <= 0.1 + 1e-6
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    graphs.clear(model)


class _SyncingModel(nn.Module):
    """Reads a value on the host in forward: cannot be captured."""

    def __init__(self) -> None:
        super().__init__()
        self.net = _model()

    def forward(self, x: Tensor) -> Tensor:
        scale = 1.0 if float(x.mean()) > -1 else 2.0  # a host sync
        return self.net(x) * scale


def test_a_model_that_syncs_with_the_host_runs_eagerly(caplog: pytest.LogCaptureFixture) -> None:
    model = _SyncingModel().cuda().eval()
    eager = PGD(0.1, steps=5, random_start=False)
    graphed = eager.with_cuda_graph()
    x, y = _batch(0)
    with caplog.at_level(logging.WARNING, logger="robustai.attacks.graphs"):
        for _ in range(4):
            assert torch.equal(graphed(model, x, y), eager(model, x, y))
    assert _graph_count(model) == 0
    warnings = [r for r in caplog.records if "cannot be captured" in r.getMessage()]
    assert len(warnings) == 1
    graphs.clear(model)


def test_evaluator_with_graphed_attacks_reports_the_same_accuracy() -> None:
    model = _model()
    x = torch.cat([_batch(seed)[0] for seed in range(4)])
    with torch.no_grad():
        y = model(x).argmax(1)  # every sample right clean: all of them are attacked
    results = [
        Evaluator(
            [lambda e, g=g: PGD(e, steps=10, random_start=False).with_cuda_graph(g)], [0.02], 256
        ).run(model, x, y, keep_examples=True)  # early stop on: the masked PGD loop
        for g in (False, True)
    ]
    assert results[0].robust_acc == results[1].robust_acc
    eager, graphed = (r.outcomes["pgd10@0.02"].x_adv for r in results)
    assert eager is not None and graphed is not None
    assert not torch.equal(eager, x)  # the attack moved the inputs
    assert torch.equal(graphed, eager)
    assert _graph_count(model) == 1
    graphs.clear(model)
