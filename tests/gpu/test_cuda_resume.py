"""A CUDA run stopped by SIGTERM mid-epoch and resumed ends like an uninterrupted one.

With random starts (FGSM-RS) the attack draws from the CUDA generator, whose state the checkpoint
must carry. With ``trainer.cuda_graphs`` a batch shape's first two attacks run eagerly and the
rest replay a graph, and the two runs switch between them at different steps (the resumed one
captures anew), so the draws match only if replays take the numbers eager runs would from the
same generator state. ``trainer.deterministic`` makes the kernels themselves repeat. (Run by
scripts/gpu_check.sh; deselected without CUDA.)
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

pytestmark = pytest.mark.gpu

ARGS = [
    "trainer.device=cuda",
    "trainer.deterministic=true",
    "data=synthetic",
    "data.num_samples=8192",
    "data.batch_size=16",  # many short steps: an epoch long enough to be interrupted inside
    "attack=fgsm_rs",
    "trainer.epochs=3",
    "trainer.watchdog.samples=64",
    "trainer.progress=false",
    "trainer.cuda_graphs=true",
    "evaluator.sanity.enabled=false",  # the final evaluation is compared; its checks add time
    "logger=none",
]
ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}


def start(run: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "robustai", "train", *ARGS, f"hydra.run.dir={run}"],
        cwd=run.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )


def finish(run: Path) -> None:
    proc = start(run)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]


def test_sigterm_mid_epoch_then_resume_matches_uninterrupted(tmp_path: Path) -> None:
    full = tmp_path / "full"
    finish(full)

    run = tmp_path / "run"
    proc = start(run)
    log = run / "train.log"
    pattern = re.compile(r"epoch 1/3 .*\| ([0-9.]+)s \|")
    deadline = time.monotonic() + 240
    while not (log.exists() and pattern.search(log.read_text())) and proc.poll() is None:
        assert time.monotonic() < deadline, "epoch 1 never ended"
        time.sleep(0.02)
    match = pattern.search(log.read_text())
    assert match and proc.poll() is None, "the run ended before it could be interrupted"
    time.sleep(float(match.group(1)) / 2)  # about half-way through epoch 2
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "resume with: robustai train" in err.strip().splitlines()[-1]
    assert list((run / "checkpoints").glob("epoch-*.json"))

    finish(run)  # the same folder: continues from the checkpoint
    assert "resumed from" in log.read_text()
    wa, wb = (load_file(str(p / "weights.safetensors")) for p in (full, run))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert (wa[k] == wb[k]).all(), k
    ma, mb = (json.loads((p / "metrics.json").read_text()) for p in (full, run))
    for key in ("clean_acc", "robust_acc", "epochs"):
        assert ma[key] == mb[key], key
    assert ma["device"].startswith("cuda")
