"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

# Lexical parent (no symlink resolution): the fixture lives at <repo root>/../shared/data/mnist.
REPO_ROOT = Path(os.path.abspath(__file__)).parent.parent
MNIST_IDX_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@pytest.fixture(scope="session")
def mnist_idx_dir() -> Path:
    """Folder holding the real MNIST test split as gzipped IDX files (10k images).

    ``ROBUSTAI_MNIST_IDX`` overrides the default ``<repo root>/../shared/data/mnist``. Missing
    files skip the test locally and fail it on CI.
    """
    env = os.environ.get("ROBUSTAI_MNIST_IDX")
    folder = Path(env).expanduser() if env else REPO_ROOT.parent / "shared" / "data" / "mnist"
    missing = [name for name in MNIST_IDX_FILES if not (folder / name).is_file()]
    if missing:
        reason = (
            f"MNIST IDX fixture not found: {folder} lacks {', '.join(missing)} "
            "(set ROBUSTAI_MNIST_IDX to the folder holding them)"
        )
        if os.environ.get("CI"):
            pytest.fail(f"CI must have the MNIST fixture: {reason}")
        pytest.skip(reason)
    return folder


@pytest.fixture(autouse=True)
def _restore_root_logging():
    """In-process CLI runs let Hydra reconfigure logging onto pytest's captured streams, which
    are closed after the test; put the root logger back so later tests do not log into them."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``make test`` runs one worker per core), each worker gets its share of
    the cores: torch's default of one thread per core in every worker, and in every CLI process
    a test starts, would put several spinning OpenMP threads on each core. OMP_NUM_THREADS
    reaches the subprocesses; an OMP_NUM_THREADS set by the user is kept."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers < 2:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (cores or 1) // workers)))
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``gpu`` need CUDA: without it they are deselected (reported as such, never
    counted as passed); ``scripts/gpu_check.sh`` runs them on a machine with a GPU."""
    import torch

    if torch.cuda.is_available():
        return
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if gpu:
        config.hook.pytest_deselected(items=gpu)
        items[:] = [item for item in items if not item.get_closest_marker("gpu")]
        if hasattr(config, "workeroutput"):  # an xdist worker: tell the controller (below)
            config.workeroutput["gpu_deselected"] = len(gpu)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """xdist's controller: a worker's deselections never reach pytest's summary line, so the
    count of deselected GPU tests comes back in the worker's output (each worker sees all)."""
    count = getattr(node, "workeroutput", {}).get("gpu_deselected", 0)
    node.config.stash[_GPU_DESELECTED] = max(count, node.config.stash.get(_GPU_DESELECTED, 0))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    count = config.stash.get(_GPU_DESELECTED, 0)
    if count:
        terminalreporter.write_line(
            f"{count} gpu-marked tests deselected (no CUDA device; scripts/gpu_check.sh runs them)"
        )


_GPU_DESELECTED = pytest.StashKey[int]()
