"""What the CLI loads before it works: a config typo is refused before torch loads, and a run
without DP-SGD never loads Opacus or torchvision (each costs seconds at every start)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_a_config_typo_is_refused_without_loading_torch(tmp_path: Path) -> None:
    # A torch that cannot be imported, first on the path: the schema check must not need it.
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("raise ImportError('torch was imported')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    proc = subprocess.run(
        [sys.executable, "-m", "robustai", "train", "trainer.epochs=abc"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "trainer.epochs=abc" in proc.stderr
    assert "torch was imported" not in proc.stderr
    assert not (tmp_path / "experiments").exists()


def test_the_training_pipeline_loads_neither_opacus_torchvision_nor_scipy() -> None:
    """Each adds a noticeable share of a CLI start (scipy.optimize 0.3-0.4 s); they load where a
    run needs them (DP-SGD, MNIST, the Gaussian mechanism's calibration)."""
    code = (
        "import sys, robustai.cli.pipeline, robustai.privacy, robustai.tracking\n"
        "print(sorted(m for m in ('opacus', 'torchvision', 'scipy') if m in sys.modules))\n"
        "from robustai.privacy import DPSGD\n"  # the DP-SGD names still resolve, on first use
        "print('opacus' in sys.modules, DPSGD.__module__)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == ["[]", "True robustai.privacy.dpsgd"]
