"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Callable
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


# Seen twice in full-suite runs on a loaded 2-core machine, never when the tests run alone: one
# rank's gloo rendezvous fails with "connectFullMesh failed ... Connection closed by peer" inside
# init_process_group, before any code under test runs. The pair is then started once more, with a
# warning in the test summary; any other failure, or a second one, fails the test.
_TRANSIENT = "Gloo connectFullMesh failed"


@pytest.fixture
def two_ranks() -> Callable[..., None]:
    """Runs ``script`` in two processes (ranks 0 and 1 of a gloo group the script joins), each
    given ``python script <rank> <store>-<attempt> *args`` (``store``: the rendezvous file, a
    fresh one for each attempt); fails the test with every rank's stderr if one fails."""

    def start(script: Path, args: tuple[Callable[[int], str] | str, ...]) -> list[tuple[int, str]]:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
        procs = [
            subprocess.Popen(
                [sys.executable, str(script), str(r), *(a(r) if callable(a) else a for a in args)],
                env=env,
                stderr=subprocess.PIPE,
                text=True,
            )
            for r in range(2)
        ]
        errors = [p.communicate(timeout=300)[1] for p in procs]
        return [(p.returncode, err) for p, err in zip(procs, errors, strict=True)]

    def run(script: Path, store: str, *args: Callable[[int], str] | str) -> None:
        for attempt in (1, 2):
            results = start(script, (f"{store}-{attempt}", *args))
            if all(code == 0 for code, _ in results):
                return
            report = "\n".join(
                f"rank {r} (exit {c}): {e[-2000:]}" for r, (c, e) in enumerate(results)
            )
            if attempt == 1 and any(_TRANSIENT in e for _, e in results):
                warnings.warn(f"gloo rendezvous failed, ran again: {report}", stacklevel=2)
                continue
            pytest.fail(report)

    return run


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
