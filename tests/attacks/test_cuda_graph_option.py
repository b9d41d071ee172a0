"""The CUDA-graph option of attacks: which attacks take it, and that it changes nothing off CUDA.

The capture and replay themselves need a GPU: tests/gpu/test_cuda_graphs.py."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from attacks.attack_helpers import N_CLASSES, make_batch
from robustai.attacks import APGD, FGSM, PGD, Square, graphs
from robustai.evaluation import CurveSettings, evaluate_model
from robustai.training.objectives import AdversarialObjective


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, N_CLASSES)).eval()


def test_with_cuda_graph_is_a_copy_that_keeps_its_settings_across_eps() -> None:
    plain = PGD(0.1, steps=7)
    graphed = plain.with_cuda_graph()
    assert plain.cuda_graph is False and graphed.cuda_graph is True
    assert graphed.with_cuda_graph() is graphed
    assert graphed.with_cuda_graph(False).cuda_graph is False
    assert graphed.with_eps(0.2).cuda_graph is True  # eps warm-up keeps the option
    assert graphed.with_early_stop().cuda_graph is True
    assert "cuda_graph=True" in repr(graphed)  # part of the graph cache's key
    assert FGSM(0.1, random_start=True).with_cuda_graph().cuda_graph is True


def test_attacks_that_sync_with_the_host_decline() -> None:
    for attack in (APGD(0.1, steps=5), Square(0.1, n_queries=10)):
        assert attack.with_cuda_graph() is attack
        assert attack.cuda_graph is False
    # restarts choose samples on the host between runs: flagged, but never captured
    assert PGD(0.1, restarts=2).with_cuda_graph()._capturable() is False
    assert PGD(0.1).with_cuda_graph()._capturable() is True


@pytest.mark.parametrize("early_stop", [False, True])
def test_on_cpu_the_option_changes_nothing(early_stop: bool) -> None:
    model = _model()
    x, y = make_batch(64, seed=3)
    eager = PGD(0.1, steps=5, random_start=False, early_stop=early_stop)
    graphed = eager.with_cuda_graph()
    for _ in range(3):  # the number of sightings after which CUDA inputs would replay
        assert torch.equal(graphed(model, x, y), eager(model, x, y))
    assert model not in graphs._caches  # nothing was cached for a CPU model


def test_evaluate_model_passes_the_option_to_its_attacks() -> None:
    model = _model()
    x, y = make_batch(64, seed=4)
    runs = [
        evaluate_model(
            model,
            x,
            y,
            attacks=[lambda e: PGD(e, steps=5, random_start=False)],
            eps=[0.1],
            num_classes=N_CLASSES,
            per_class=False,
            cuda_graphs=flag,
        )
        for flag in (False, True)
    ]
    assert runs[0].result.robust_acc == runs[1].result.robust_acc
    assert [a.cuda_graph for a in runs[0].result.attacks.values()] == [False]
    assert [a.cuda_graph for a in runs[1].result.attacks.values()] == [True]


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_on_cpu_the_option_is_named_in_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    """cuda_graphs=True on CPU ran eagerly without a word; and eps warm-up makes a with_eps copy
    per batch, so a warning per attack object would repeat every batch."""
    model = _model()
    x, y = make_batch(16, seed=5)
    with caplog.at_level(logging.WARNING, logger="robustai.attacks.base"):
        PGD(0.1, steps=2)(model, x, y)  # without the option: nothing to say
        assert _warnings(caplog) == []
        graphed = PGD(0.1, steps=2).with_cuda_graph()
        objective = AdversarialObjective(graphed, eps_warmup_epochs=1.0)
        for progress in (0.0, 0.25, 0.5, 1.0, 2.0):  # warm-up copies, then the attack itself
            objective(model, x, y, progress)
    assert _warnings(caplog) == [
        "cuda_graphs=True has no effect on CPU inputs; the attack runs eagerly"
    ]


def test_evaluate_model_on_cpu_warns_once_for_all_its_attacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every attack at every eps (and in the curve) is a new attack object: one warning each
    was a dozen lines saying the same."""
    model = _model()
    x, y = make_batch(32, seed=6)
    with caplog.at_level(logging.WARNING, logger="robustai.attacks.base"):
        evaluate_model(
            model,
            x,
            y,
            attacks=[lambda e: FGSM(e), lambda e: PGD(e, steps=2)],
            eps=[0.05, 0.1],
            num_classes=N_CLASSES,
            curve=CurveSettings(eps=[0.02, 0.05, 0.1]),
            per_class=False,
            cuda_graphs=True,
        )
    assert _warnings(caplog) == [
        "cuda_graphs=True has no effect on CPU inputs; the attack runs eagerly"
    ]
