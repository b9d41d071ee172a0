"""The same contracts on a CUDA device (run by scripts/gpu_check.sh; deselected without CUDA)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from robustai.attacks import ATTACKS, build_attack
from robustai.attacks.registry import accepted_kwargs
from robustai.models import build_model

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attacks_keep_their_contract_on_cuda(name: str) -> None:
    torch.manual_seed(0)
    model = build_model("small_cnn", (1, 28, 28), 10).cuda().eval()
    x = torch.rand(64, 1, 28, 28, device="cuda")
    y = torch.randint(10, (64,), device="cuda")
    kwargs = {"steps": 5} if "steps" in accepted_kwargs(ATTACKS[name]) else {}
    x_adv = build_attack(name, eps=0.1, **kwargs)(model, x, y)
    assert x_adv.device.type == "cuda" and x_adv.shape == x.shape
    assert float((x_adv - x).abs().max()) <= 0.1 + 1e-6
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["trainer.amp=true", "trainer.channels_last=true"],
        ["trainer.cuda_graphs=true", "evaluator.cuda_graphs=true"],
    ],
)
def test_training_run_on_cuda(tmp_path: Path, extra: list[str]) -> None:
    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "robustai", "train", "trainer.device=cuda", "logger=none",
         *extra, f"hydra.run.dir={run}"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["device"].startswith("cuda")
    assert metrics["clean_acc"] >= 0.9
    assert metrics["robust_acc"]["pgd20@0.1"] >= 0.7



def test_dp_sgd_adversarial_training_with_cuda_graphs(tmp_path: Path) -> None:
    # The training attack runs eagerly under DP-SGD (Poisson batch sizes vary); the evaluation's
    # attacks replay from graphs on the released model.
    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "robustai", "train", "trainer.device=cuda", "logger=none",
         "privacy=dpsgd", "trainer.cuda_graphs=true", "evaluator.cuda_graphs=true",
         f"hydra.run.dir={run}"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["device"].startswith("cuda")
    assert 0 < metrics["privacy"]["epsilon"] < float("inf")
    assert metrics["clean_acc"] >= 0.5  # digits under DP noise: well above chance (0.1)
    assert "training attack runs without CUDA graphs" in proc.stdout + proc.stderr

def test_ddp_on_cuda_with_nccl_and_sync_batchnorm(tmp_path: Path) -> None:
    # One GPU here: one NCCL process; preact_resnet18's BatchNorm becomes SyncBatchNorm.
    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
         "-m", "robustai", "train", "trainer=ddp", "model=preact_resnet18", "data=synthetic",
         "data.input_shape=[3,32,32]", "trainer.epochs=1", "logger=none",
         "evaluator.sanity.enabled=false", f"hydra.run.dir={run}"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["distributed"] == {"world_size": 1, "backend": "nccl"}
    assert metrics["device"] == "cuda:0"
