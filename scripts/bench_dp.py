"""Benchmark: one DP-SGD epoch against one non-private epoch of the same model and data.

All variants run in one process on the same small CNN (Wong et al. 2020) and the same MNIST
images (by default 8000 training images of the MNIST test split in IDX format, as
``robustai train data=idx`` uses them):

- ``non-private``: robustai's training loop, plain SGD over the in-memory loader;
- ``robustai DP-SGD (ghost)``: the same loop with ``privacy=dpsgd`` (Poisson sampling over
  tensors, Opacus' fast gradient clipping with ghost norms), i.e. what ``robustai train`` runs;
- ``robustai DP-SGD (hooks)``: the same with Opacus' per-sample-gradient hooks;
- ``Opacus default (hooks)``: stock Opacus, ``PrivacyEngine.make_private`` with its defaults
  (per-sample hooks, ``DPDataLoader`` over a ``TensorDataset``) and a plain loop;
- ``Opacus ghost``: stock Opacus with ``grad_sample_mode="ghost"``.

Each variant: one warm-up epoch, then the median of ``--repeats`` timed epochs (each on a fresh
model), the repeats taken round-robin over the variants so that load changes on a shared machine
hit all of them alike. Epsilon accounting runs once per epoch outside the timed loop; its cost
is reported as its own row: one computation by Opacus' PRV accountant of epsilon after one
epoch's steps with the run's noise multiplier, sample rate and delta (not ``DPSGD``'s cache).
Prints a table and writes JSON.

    python scripts/bench_dp.py [--mnist-dir ../shared/data/mnist] [--repeats 5] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import opacus
import script_args  # beside this script, on sys.path when it runs
import torch
from opacus import PrivacyEngine
from torch.utils.data import DataLoader, TensorDataset

from robustai.data import build_data
from robustai.models import build_model
from robustai.privacy import DPSGD
from robustai.privacy.accounting import epsilon_spent
from robustai.training import StandardObjective, Trainer

warnings.filterwarnings("ignore")  # Opacus' secure-RNG notice and PyTorch's backward-hook note


def _model(shape: tuple[int, int, int]) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("small_cnn", shape, 10, mean=(0.5,), std=(0.5,))


def _opt(model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    script_args.add_mnist_dir(ap)
    ap.add_argument(
        "--samples", type=script_args.positive_int, default=8000, help="training images"
    )
    ap.add_argument("--batch-size", type=script_args.positive_int, default=100)
    ap.add_argument("--repeats", type=script_args.positive_int, default=5)
    ap.add_argument(
        "--threads", type=script_args.positive_int, default=None, help="torch CPU threads"
    )
    ap.add_argument("--out", type=script_args.output_file, default=Path("bench_dp.json"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    images, labels = script_args.mnist_files(args.mnist_dir)
    data = build_data(
        "idx",
        images=images,
        labels=labels,
        batch_size=args.batch_size,
        train_size=args.samples,
    )
    x, y = data.train.x, data.train.y
    shape, b, lr = data.input_shape, args.batch_size, 0.05
    dp_kwargs = {"batch_size": b, "epochs": 1, "noise_multiplier": 1.0, "max_grad_norm": 1.0}

    def robustai_plain() -> float:
        model = _model(shape)
        trainer = Trainer(model, StandardObjective(), _opt(model, lr), epochs=1, progress=False)
        return trainer.train_epoch(data.train, 0).seconds

    def robustai_dp(mode: str) -> Callable[[], float]:
        def run() -> float:
            model = _model(shape)
            dp = DPSGD(model, _opt(model, lr), x, y, grad_sample_mode=mode, **dp_kwargs)
            trainer = Trainer(dp.model, dp.objective(), dp.optimizer, epochs=1, progress=False)
            return trainer.train_epoch(dp.loader, 0).seconds

        return run

    def opacus_stock(mode: str) -> Callable[[], float]:
        def run() -> float:
            model = _model(shape)
            loader = DataLoader(TensorDataset(x, y), batch_size=b)
            engine = PrivacyEngine()
            private = engine.make_private(
                module=model,
                optimizer=_opt(model, lr),
                data_loader=loader,
                noise_multiplier=1.0,
                max_grad_norm=1.0,
                grad_sample_mode=mode,
                criterion=torch.nn.CrossEntropyLoss(),
            )
            if mode == "ghost":
                module, opt, criterion, dl = private
            else:
                (module, opt, dl), criterion = private, torch.nn.CrossEntropyLoss()
            module.train()
            start = time.perf_counter()
            for xb, yb in dl:
                loss = criterion(module(xb), yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
            return time.perf_counter() - start

        return run

    # The run's noise multiplier, sample rate and delta. Its constructor already computed (and
    # cached) epsilon for the planned steps, so DPSGD.epsilon_after would time a dict lookup:
    # the row calls the accountant itself, as a run does for each epoch's new step count.
    planned = _model(shape)
    account = DPSGD(planned, _opt(planned, lr), x, y, **dp_kwargs)

    def accounting() -> float:
        start = time.perf_counter()
        epsilon_spent(
            account.noise_multiplier,
            account.sample_rate,
            account.steps_per_epoch,
            account.delta,
            account.accountant_name,
        )
        return time.perf_counter() - start

    variants: list[tuple[str, Callable[[], float]]] = [
        ("non-private (robustai loop)", robustai_plain),
        ("robustai DP-SGD (ghost)", robustai_dp("ghost")),
        ("robustai DP-SGD (hooks)", robustai_dp("hooks")),
        ("Opacus default (hooks)", opacus_stock("hooks")),
        ("Opacus ghost", opacus_stock("ghost")),
        ("PRV epsilon, once per epoch", accounting),
    ]
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    for _, fn in variants:
        fn()  # warm-up
    # Round-robin repeats: a load change on a shared machine hits every variant alike.
    times: dict[str, list[float]] = {name: [] for name, _ in variants}
    for _ in range(args.repeats):
        for name, fn in variants:
            times[name].append(fn())
    results: dict[str, dict[str, Any]] = {
        name: {"median_s": statistics.median(t), "times_s": t} for name, t in times.items()
    }
    base = results["non-private (robustai loop)"]["median_s"]
    for r in results.values():
        r["x_non_private"] = r["median_s"] / base

    print(
        f"one epoch: small_cnn, {len(x)} MNIST images, batch {b}, median of {args.repeats}; "
        f"{torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs"
    )
    print(f"{'variant':<30} {'median s':>9} {'x non-private':>14}")
    for name, r in results.items():
        print(f"{name:<30} {r['median_s']:>9.3f} {r['x_non_private']:>14.2f}")
    payload = {
        "images": len(x),
        "batch_size": b,
        "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": load,
        "machine": script_args.cpu_name(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "opacus": opacus.__version__,
        "results": results,
    }
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"written: {args.out}")


if __name__ == "__main__":
    script_args.run(main, "bench_dp.py")
