"""The default experiment reaches the README's numbers; adversarial training is what gives them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def train(tmp_path: Path, name: str, *overrides: str) -> dict[str, object]:
    run = tmp_path / name
    proc = subprocess.run(
        [sys.executable, "-m", "robustai", "train", *overrides, f"hydra.run.dir={run}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((run / "metrics.json").read_text())


@pytest.mark.slow
def test_default_run_is_robust_and_beats_standard_training(tmp_path: Path) -> None:
    robust = train(tmp_path, "fgsm_rs")
    plain = train(tmp_path, "none", "attack=none")
    assert robust["clean_acc"] >= 0.95
    assert robust["robust_acc"]["pgd20@0.1"] >= 0.75
    assert robust["robust_acc"]["pgd20@0.1"] - plain["robust_acc"]["pgd20@0.1"] >= 0.2
