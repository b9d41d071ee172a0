"""Privacy tests train tiny models: one CPU thread is faster for them and, unlike the default of
one thread per core, does not collapse when other processes share the cores."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def two_ranks() -> Callable[..., None]:
    """Runs ``script`` in two processes (ranks 0 and 1 of a gloo group the script joins), each
    given ``python script <rank> *args``; fails the test with a rank's stderr if it fails."""

    def run(script: Path, *args: Callable[[int], str] | str) -> None:
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
        for p in procs:
            _, err = p.communicate(timeout=300)
            assert p.returncode == 0, err[-3000:]

    return run
