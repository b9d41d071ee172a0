"""Argument checks shared by the benchmark scripts.

Bad input is found while the arguments are parsed, before any timed work: a benchmark that
failed at its end (an output folder that is not there, say) would lose minutes of timings.
argparse then prints its usage and one ``error:`` line and exits with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from robustai.errors import UserError

MNIST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
# The lexical path, as tests/conftest.py finds the fixture: through a symlinked checkout,
# ../shared is beside the link, not beside the link's target.
REPO = Path(os.path.abspath(__file__)).parent.parent


def cpu_name() -> str:
    """The CPU's model name (from ``/proc/cpuinfo`` on Linux, where ``platform.processor()``
    is empty), with its architecture: a CPU number hinges on the model (AVX-512 or AVX2
    kernels)."""
    import platform

    name = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    arch = platform.machine()
    return f"{name} ({arch})" if name else (platform.processor() or arch)


def machine_description(device: torch.device) -> str:
    """What a benchmark ran on, as its JSON and printout quote it: the CPU's model, its count
    and torch's threads, and the GPU's name where it ran on one."""
    text = f"{cpu_name()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads"
    if device.type == "cuda":
        text = f"{torch.cuda.get_device_name(device)}; host {text}"
    return text


def folder(text: str) -> Path:
    """A folder name, ``~`` expanded (a quoted ``~/mnist`` or ``--mnist-dir=~/mnist`` reaches
    the script unexpanded)."""
    return Path(text).expanduser()


def add_mnist_dir(parser: argparse.ArgumentParser) -> None:
    """``--mnist-dir``: $ROBUSTAI_MNIST_IDX, else ../shared/data/mnist beside the repository."""
    env = os.environ.get("ROBUSTAI_MNIST_IDX")
    parser.add_argument(
        "--mnist-dir",
        type=folder,
        default=folder(env) if env else REPO.parent / "shared" / "data" / "mnist",
        help="folder with the MNIST t10k IDX files (default: $ROBUSTAI_MNIST_IDX, else "
        "../shared/data/mnist beside the repository)",
    )


def positive_int(text: str) -> int:
    value = _number(int, text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number >= 1")
    return value


def nonnegative_int(text: str) -> int:
    value = _number(int, text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number >= 0")
    return value


def eps(text: str) -> float:
    """A perturbation budget in pixel units, in (0, 1]: at 0 the PGD step (a fraction of eps)
    would be 0, which the attacks refuse, and no attack would be timed."""
    value = _number(float, text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not in (0, 1] (pixel units, e.g. 0.3)")
    return value


def _number(kind: type, text: str) -> int | float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None


def device(text: str) -> torch.device:
    """``cpu``, or a CUDA device this machine has."""
    try:
        dev = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a device; use cpu or cuda") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text}: torch sees no CUDA device here")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(
                f"{text}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    elif dev.type != "cpu":
        raise argparse.ArgumentTypeError(f"{text}: the benchmarks run on cpu or cuda")
    return dev


def output_file(text: str) -> Path:
    """A file the results can be written to, tried now: its folder is made if missing, and
    the file is opened for appending (and removed again if it was not there)."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name, e.g. bench.json")
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a"):
            pass
    except OSError as e:
        raise argparse.ArgumentTypeError(f"cannot write {text}: {e.strerror}") from None
    if not existed:
        path.unlink()
    return path


def mnist_files(folder: Path) -> tuple[Path, Path]:
    """The MNIST test split's (images, labels) IDX files in ``folder``."""
    for name in MNIST_FILES:
        if not (folder / name).is_file():
            raise UserError(
                f"{folder / name} not found; pass --mnist-dir (or set ROBUSTAI_MNIST_IDX) "
                "to the folder with the MNIST t10k IDX files"
            )
    return folder / MNIST_FILES[0], folder / MNIST_FILES[1]


def run(main: Callable[[], object], name: str) -> None:
    """Run ``main``; a :class:`UserError` (no data there, a bad checkpoint) is one line and
    exit status 2."""
    try:
        main()
    except UserError as err:
        print(f"{name}: {err}", file=sys.stderr)
        sys.exit(2)
