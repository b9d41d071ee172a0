"""Side-by-side benchmark of robustai's training and evaluation paths against the usual baselines.

One process, the same model, data, batch size and device for every row; each row is timed over
``--repeats`` runs taken round-robin (so load changes on a shared machine hit all rows alike) and
reported as the median. An epoch row's ratio to the clean-training epoch is the median, over the
repeats, of its time over that of a clean epoch run just before it (a shared machine's speed can
drift within a round); the clean row's median is over all its runs, those pairs included. Peak
memory is measured in one more, untimed run of each row: on CUDA the allocator's peak; on CPU the
growth of the process RSS, sampled from a thread every 2 ms, in a child process whose malloc
returns every block above 64 KiB to the system when it is freed (``MALLOC_MMAP_THRESHOLD_``), so
that RSS follows the live tensors instead of the allocator's cache. That setting slows allocation,
hence the separate process; the sampler may miss peaks shorter than 2 ms.

Rows:
  clean epoch                     robustai's loop, standard objective (the baseline, 1.0)
  FGSM-RS epoch (robustai)        AdversarialObjective(FGSM(random_start=True)): input-only grads
  FGSM-RS epoch (torchattacks)    a plain loop around torchattacks.FFGSM with the same optimizer
  attack floor epoch              a clean epoch plus, per batch, only the attack's forward pass and
                                  input-only backward pass at the clean input (robustai's kernels),
                                  without random start, step or checks: what FGSM-RS cannot go
                                  below with these kernels; the FGSM-RS row minus this is ours
  free AT epoch, m=4 (robustai)   FreeAdversarialObjective: m replays of every minibatch
  PGD-10 eval (robustai)          images/s over the eval split: PGD-10 (no random start) on
                                  every sample, the same iterates as torchattacks (robust_correct)
  PGD-10 eval (torchattacks)      torchattacks.PGD on the same model and images
  PGD-10 eval, early stop         robustai's Evaluator with its defaults: samples wrong clean are
                                  not attacked, and each sample leaves PGD at the first iterate
                                  that fools it (robust accuracy the same or lower)
  ... , AT model                  the PGD rows again on a model adversarially trained for a
                                  few epochs (FGSM-RS), where fewer samples fall early
  ... , CUDA graph                on CUDA only: FGSM-RS training and the robustai PGD rows with
                                  the attack replayed from CUDA graphs (Attack.with_cuda_graph);
                                  a batch shape runs eagerly when first seen and is captured
                                  the second time. The epoch row trains a fresh model each run,
                                  so each timed epoch captures its own graph. The eval rows
                                  reuse their model, and get two untimed warm-up runs: the
                                  early-stop rows attack only the samples right clean, so their
                                  last batch has an odd size that the first warm-up only sees
                                  and the second captures; every timed run then replays. The
                                  JSON keeps the first warm-up's time as warmup_s (as for every
                                  row) and both as warmup_runs_s
  DP-SGD epoch (robustai)         privacy=dpsgd, defaults (Poisson sampling; grad_sample_mode=auto:
                                  ghost clipping, or on CUDA hooks for small models; the JSON
                                  says which)
  DP-SGD epoch (robustai, hooks)  the same with privacy.grad_sample_mode=hooks
  DP-SGD epoch (robustai, ghost)  on CUDA only: the same with privacy.grad_sample_mode=ghost
  DP-SGD epoch (Opacus hooks)     stock Opacus make_private with its default per-sample hooks

``--amp`` (bf16 autocast) and ``--channels-last`` apply to every attack and clean row, robustai's
and torchattacks' alike, so that their ratios compare the same arithmetic; the DP rows run in
float32 with the default layout.

Suites: ``mnist`` (default): small_cnn on the real MNIST test split in IDX format, 8k train /
2k eval; ``cifar``: preact_resnet18 on CIFAR-shaped synthetic data (for a GPU).

    python scripts/bench.py [--device cuda] [--suite cifar] [--repeats 5] [--out bench.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import script_args  # beside this script, on sys.path when it runs
import torch
import torch.nn.functional as F

from robustai.attacks import FGSM, PGD
from robustai.attacks.kernels import input_grad_kernels
from robustai.data import DataBundle, build_data
from robustai.evaluation import Evaluator, robust_correct
from robustai.models import build_model
from robustai.training import (
    AdversarialObjective,
    FreeAdversarialObjective,
    StandardObjective,
    Trainer,
)

warnings.filterwarnings("ignore")  # Opacus' secure-RNG notice, backward-hook notes


class AttackFloorObjective:
    """A clean step after the part of an FGSM-RS step no attack can skip: one forward pass and
    one input-only backward pass (in the attack's eval mode, with its CPU kernels)."""

    adversarial = False

    def __call__(
        self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, progress: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x_in = x.detach().requires_grad_(True)
        model.eval()
        with input_grad_kernels(model):
            loss = F.cross_entropy(model(x_in), y)
        torch.autograd.grad(loss, x_in)
        model.train()
        logits = model(x)
        return F.cross_entropy(logits, y), logits


class PeakMemory:
    """Peak memory of a block: CUDA's allocator peak, or the process RSS sampled every 2 ms."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_mb = 0.0

    @staticmethod
    def _rss_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return self
        self._base = self._rss_mb()
        self._peak = self._base
        self._stop = threading.Event()

        def sample() -> None:
            while not self._stop.wait(0.002):
                self._peak = max(self._peak, self._rss_mb())

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak_mb = torch.cuda.max_memory_allocated() / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self.peak_mb = max(self._peak, self._rss_mb()) - self._base


def peak_memory(rows: list[tuple[str, str, Callable[[], float]]], device: torch.device) -> dict:
    """One more run of every row, under :class:`PeakMemory`."""
    peaks: dict[str, float] = {}
    for name, _, fn in rows:
        with PeakMemory(device) as mem:
            fn()
        peaks[name] = mem.peak_mb
    return peaks


def cpu_peak_memory() -> dict[str, float]:
    """The rows' peak memory on CPU, from a child process (see the module docstring). The
    child writes into a temporary folder of its own: a fixed name beside ``--out`` would
    overwrite, then delete, a user's file of that name."""
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as folder:
        child_out = Path(folder) / "memory.json"
        subprocess.run(
            [sys.executable, __file__, *sys.argv[1:], "--memory-only", "--out", str(child_out)],
            check=True,
            env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"},
        )
        return json.loads(child_out.read_text())


def warm_up(rows: list[tuple[str, str, Callable[[], float]]]) -> dict[str, list[float]]:
    """Untimed runs of every row before the timed ones (torch.compile, when asked; lazy CUDA
    set-up), and their seconds. A CUDA-graph eval row gets two: graphs.py runs a batch shape
    eagerly the first time and captures it the second, and an early-stop row's last batch
    (the samples right clean, in batches) first appears at the end of the first run, so with
    one warm-up its capture would fall in the first timed run."""
    seconds: dict[str, list[float]] = {}
    for name, kind, fn in rows:
        seconds[name] = []
        for _ in range(2 if kind == "eval" and "CUDA graph" in name else 1):
            start = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def load(
    suite: str, batch_size: int, mnist_dir: Path, sizes: tuple[int | None, int | None]
) -> tuple[DataBundle, str]:
    """The suite's data (8000 train / 2000 eval images unless ``sizes`` takes fewer)."""
    train_size, eval_size = sizes
    common = {
        "holdout": 0.2,
        "batch_size": batch_size,
        "eval_batch_size": 500,
        "train_size": train_size,
        "eval_size": eval_size,
    }
    if suite == "mnist":
        images, labels = script_args.mnist_files(mnist_dir)
        data = build_data("idx", images=images, labels=labels, **common)
        return data, "small_cnn"
    data = build_data(
        "synthetic", num_samples=10000, input_shape=(3, 32, 32), num_classes=10, **common
    )
    return data, "preact_resnet18"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", choices=("mnist", "cifar"), default="mnist")
    ap.add_argument("--device", type=script_args.device, default="cpu")
    script_args.add_mnist_dir(ap)
    ap.add_argument("--batch-size", type=script_args.positive_int, default=100)
    ap.add_argument(
        "--eps", type=script_args.eps, default=None, help="default: 0.3 mnist, 8/255 cifar"
    )
    ap.add_argument("--repeats", type=script_args.positive_int, default=5)
    ap.add_argument(
        "--threads", type=script_args.positive_int, default=None, help="torch CPU threads"
    )
    ap.add_argument("--amp", action="store_true", help="bf16 autocast, attack and clean rows")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--compile", action="store_true", help="torch.compile the robustai model")
    ap.add_argument(
        "--at-epochs",
        type=script_args.nonnegative_int,
        default=5,
        help="FGSM-RS epochs of the AT model",
    )
    ap.add_argument("--skip", nargs="*", default=[], help="row names (substrings) to leave out")
    ap.add_argument(
        "--train-size",
        type=script_args.positive_int,
        default=None,
        help="fewer training images (smoke)",
    )
    ap.add_argument(
        "--eval-size", type=script_args.positive_int, default=None, help="fewer eval images (smoke)"
    )
    ap.add_argument("--out", type=script_args.output_file, default=Path("bench.json"))
    ap.add_argument("--memory-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    data, model_name = load(
        args.suite, args.batch_size, args.mnist_dir, (args.train_size, args.eval_size)
    )
    eps = args.eps if args.eps is not None else (0.3 if args.suite == "mnist" else 8 / 255)
    data.train.to(device)
    data.eval.to(device)
    x_ev, y_ev = data.eval.x, data.eval.y
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format

    def fresh(robustai: bool = True, layout: bool = True) -> torch.nn.Module:
        """A fresh model for a row. ``--channels-last`` applies to the attack and clean rows,
        robustai's and the baselines' alike; DP rows keep the default layout (``layout=False``).
        ``--compile`` applies to robustai's training rows and to the two models the PGD rows
        evaluate (so the torchattacks PGD rows see the compiled model too)."""
        torch.manual_seed(0)
        model = build_model(model_name, data.input_shape, data.num_classes, data.mean, data.std)
        model = model.to(device, memory_format=fmt) if layout else model.to(device)
        return torch.compile(model) if (robustai and args.compile) else model

    def sgd(model: torch.nn.Module) -> torch.optim.Optimizer:
        return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def epoch(objective_factory: Callable[[], Any]) -> Callable[[], float]:
        def run() -> float:
            model = fresh()
            trainer = Trainer(model, objective_factory(), sgd(model), epochs=1, progress=False)
            with autocast():
                sync()
                seconds = trainer.train_epoch(data.train, 0).seconds
                sync()
            return seconds

        return run

    def torchattacks_fgsm_rs() -> float:
        import torchattacks

        model = fresh(robustai=False)
        opt = sgd(model)
        attack = torchattacks.FFGSM(model, eps=eps, alpha=1.25 * eps)
        model.train()
        sync()
        start = time.perf_counter()
        with autocast():
            for x, y in data.train:
                x_adv = attack(x, y)
                model.train()
                loss = F.cross_entropy(model(x_adv), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
        sync()
        return time.perf_counter() - start

    trained = fresh()
    Trainer(trained, StandardObjective(), sgd(trained), epochs=1, progress=False).fit(data.train)
    trained.eval()
    robust = fresh()  # a few epochs of FGSM-RS: most samples take PGD several steps to fall
    Trainer(
        robust,
        AdversarialObjective(FGSM(eps, random_start=True), eps_warmup_epochs=1),
        sgd(robust),
        epochs=args.at_epochs,
        progress=False,
    ).fit(data.train)
    robust.eval()
    robust_acc: dict[str, float] = {}
    dp_modes: dict[str, str] = {}  # requested grad_sample_mode -> the mode DPSGD chose

    def pgd() -> PGD:
        return PGD(eps, alpha=eps / 4, steps=10, random_start=False)

    def pgd_robustai(model: torch.nn.Module, row: str, graph: bool = False) -> Callable[[], float]:
        def run() -> float:
            attack = pgd().with_cuda_graph(graph)
            sync()
            start = time.perf_counter()
            with autocast():
                ok = robust_correct(model, attack, x_ev, y_ev, batch_size=500)
            sync()
            robust_acc[row] = float(ok.float().mean())
            return time.perf_counter() - start

        return run

    def pgd_early_stop(
        model: torch.nn.Module, row: str, graph: bool = False
    ) -> Callable[[], float]:
        def run() -> float:
            make = lambda e: pgd().with_cuda_graph(graph)  # noqa: E731
            evaluator = Evaluator([make], [eps], batch_size=500)  # early_stop=True
            sync()
            start = time.perf_counter()
            with autocast():
                result = evaluator.run(model, x_ev, y_ev)
            sync()
            robust_acc[row] = result.worst_case[f"{eps:g}"]
            return time.perf_counter() - start

        return run

    def pgd_torchattacks(model: torch.nn.Module, row: str) -> Callable[[], float]:
        def run() -> float:
            import torchattacks

            attack = torchattacks.PGD(model, eps=eps, alpha=eps / 4, steps=10, random_start=False)
            sync()
            start = time.perf_counter()
            correct = 0
            with autocast():
                for i in range(0, len(x_ev), 500):
                    xb, yb = x_ev[i : i + 500], y_ev[i : i + 500]
                    x_adv = attack(xb, yb)
                    with torch.no_grad():
                        correct += int(
                            ((model(xb).argmax(1) == yb) & (model(x_adv).argmax(1) == yb)).sum()
                        )
            sync()
            robust_acc[row] = correct / len(x_ev)
            return time.perf_counter() - start

        return run

    def dp_robustai(grad_sample_mode: str = "auto") -> Callable[[], float]:
        return lambda: _dp_robustai(grad_sample_mode)

    def _dp_robustai(grad_sample_mode: str) -> float:
        from robustai.privacy import DPSGD

        model = fresh(robustai=False, layout=False)
        dp = DPSGD(
            model,
            sgd(model),
            data.train.x,
            data.train.y,
            batch_size=args.batch_size,
            epochs=1,
            noise_multiplier=1.0,
            max_grad_norm=1.0,
            grad_sample_mode=grad_sample_mode,
        )
        dp_modes[grad_sample_mode] = dp.grad_sample_mode
        trainer = Trainer(dp.model, dp.objective(), dp.optimizer, epochs=1, progress=False)
        sync()
        seconds = trainer.train_epoch(dp.loader, 0).seconds
        sync()
        return seconds

    def dp_opacus_hooks() -> float:
        from opacus import PrivacyEngine
        from torch.utils.data import DataLoader, TensorDataset

        model = fresh(robustai=False, layout=False)
        loader = DataLoader(TensorDataset(data.train.x, data.train.y), batch_size=args.batch_size)
        module, opt, dl = PrivacyEngine().make_private(
            module=model,
            optimizer=sgd(model),
            data_loader=loader,
            noise_multiplier=1.0,
            max_grad_norm=1.0,
        )
        module.train()
        sync()
        start = time.perf_counter()
        for xb, yb in dl:
            loss = F.cross_entropy(module(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sync()
        return time.perf_counter() - start

    n_eval = len(x_ev)
    rows: list[tuple[str, str, Callable[[], float]]] = [
        ("clean epoch", "epoch", epoch(StandardObjective)),
        (
            "FGSM-RS epoch (robustai)",
            "epoch",
            epoch(lambda: AdversarialObjective(FGSM(eps, random_start=True))),
        ),
        ("FGSM-RS epoch (torchattacks)", "epoch", torchattacks_fgsm_rs),
        ("attack floor epoch", "epoch", epoch(AttackFloorObjective)),
        (
            "free AT epoch, m=4 (robustai)",
            "epoch",
            epoch(lambda: FreeAdversarialObjective(eps, replays=4)),
        ),
    ]
    if device.type == "cuda":
        rows.append(
            (
                "FGSM-RS epoch (robustai, CUDA graph)",
                "epoch",
                epoch(lambda: AdversarialObjective(FGSM(eps, random_start=True).with_cuda_graph())),
            )
        )
    for model, suffix in ((trained, ""), (robust, ", AT model")):
        for name, make in (
            (f"PGD-10 eval (robustai){suffix}", pgd_robustai),
            (f"PGD-10 eval (torchattacks){suffix}", pgd_torchattacks),
            (f"PGD-10 eval, early stop{suffix}", pgd_early_stop),
        ):
            rows.append((name, "eval", make(model, name)))
        if device.type == "cuda":  # captured in the two untimed warm-up runs (see warm_up)
            for name, make in (
                (f"PGD-10 eval (robustai, CUDA graph){suffix}", pgd_robustai),
                (f"PGD-10 eval, early stop, CUDA graph{suffix}", pgd_early_stop),
            ):
                rows.append((name, "eval", make(model, name, graph=True)))
    rows += [
        ("DP-SGD epoch (robustai)", "epoch", dp_robustai()),
        ("DP-SGD epoch (robustai, hooks)", "epoch", dp_robustai("hooks")),
        *(
            [("DP-SGD epoch (robustai, ghost)", "epoch", dp_robustai("ghost"))]
            if device.type == "cuda"
            else []
        ),
        ("DP-SGD epoch (Opacus hooks)", "epoch", dp_opacus_hooks),
    ]
    rows = [r for r in rows if not any(s in r[0] for s in args.skip)]
    load_avg = os.getloadavg()
    warmup = warm_up(rows)
    if args.memory_only:
        args.out.write_text(json.dumps(peak_memory(rows, device)) + "\n")
        return
    times: dict[str, list[float]] = {name: [] for name, _, _ in rows}
    # Each epoch row is timed right after a clean epoch of its own, and its ratio is the median
    # of those pairs: a shared machine's speed can drift between rows of one round.
    clean = next((fn for name, _, fn in rows if name == "clean epoch"), None)
    paired: dict[str, list[float]] = {name: [] for name, kind, _ in rows if kind == "epoch"}
    for _ in range(args.repeats):
        for name, kind, fn in rows:
            if kind == "epoch" and clean is not None and fn is not clean:
                base_s = clean()
                times["clean epoch"].append(base_s)
                times[name].append(fn())
                paired[name].append(times[name][-1] / base_s)
            else:
                times[name].append(fn())
    # untimed: the RSS sampler thread (and, on CPU, the malloc setting) would slow the timed runs
    peaks = peak_memory(rows, device) if device.type == "cuda" else cpu_peak_memory()

    base = statistics.median(times["clean epoch"]) if "clean epoch" in times else float("nan")
    results: dict[str, dict[str, Any]] = {}
    for name, kind, _ in rows:
        med = statistics.median(times[name])
        r: dict[str, Any] = {
            "median_s": med,
            "times_s": times[name],
            "warmup_s": warmup[name][0],
            "peak_mb": peaks[name],
        }
        if len(warmup[name]) > 1:
            r["warmup_runs_s"] = warmup[name]
        if kind == "epoch":
            r["x_clean_epoch"] = statistics.median(paired[name]) if paired[name] else med / base
        else:
            r["images_per_s"] = n_eval / med
        results[name] = r
    for name, acc in robust_acc.items():
        results[name]["robust_acc"] = acc
    if "DP-SGD epoch (robustai)" in results:
        results["DP-SGD epoch (robustai)"]["grad_sample_mode"] = dp_modes["auto"]
    ratios = {}
    for suffix, tag in (("", ""), (", AT model", "_at_model")):
        base_row = f"PGD-10 eval (torchattacks){suffix}"
        for row, key in (
            (f"PGD-10 eval (robustai){suffix}", f"pgd10_eval_speedup_vs_torchattacks{tag}"),
            (f"PGD-10 eval, early stop{suffix}", f"pgd10_early_stop_speedup_vs_torchattacks{tag}"),
            (
                f"PGD-10 eval (robustai, CUDA graph){suffix}",
                f"pgd10_cuda_graph_speedup_vs_torchattacks{tag}",
            ),
            (
                f"PGD-10 eval, early stop, CUDA graph{suffix}",
                f"pgd10_early_stop_cuda_graph_speedup_vs_torchattacks{tag}",
            ),
        ):
            if {row, base_row} <= results.keys():
                ratios[key] = results[row]["images_per_s"] / results[base_row]["images_per_s"]
    machine = script_args.machine_description(device)
    print(
        f"{args.suite}: {model_name}, {data.train.num_samples} train / {n_eval} eval images, "
        f"batch {args.batch_size}, eps {eps:.4g}, {device}, median of {args.repeats}; {machine}"
    )
    print(
        f"{'row':<42} {'median s':>9} {'x clean':>8} {'images/s':>10} {'robust acc':>10}"
        f" {'peak MB':>8}"
    )
    for name, r in results.items():
        ratio = f"{r['x_clean_epoch']:.2f}" if "x_clean_epoch" in r else ""
        ips = f"{r['images_per_s']:.0f}" if "images_per_s" in r else ""
        acc = f"{r['robust_acc']:.4f}" if "robust_acc" in r else ""
        print(
            f"{name:<42} {r['median_s']:>9.3f} {ratio:>8} {ips:>10} {acc:>10} {r['peak_mb']:>8.1f}"
        )
    for key, value in ratios.items():
        print(f"{key}: {value:.2f}x")
    print(
        "PGD-10: eps/4 steps, no random start; robust acc counts a sample right clean and"
        f" attacked; AT model: {args.at_epochs} epochs of FGSM-RS"
    )
    payload = {
        "suite": args.suite,
        "model": model_name,
        "device": str(device),
        "machine": machine,
        "batch_size": args.batch_size,
        "eps": eps,
        "repeats": args.repeats,
        "train_images": data.train.num_samples,
        "eval_images": n_eval,
        "options": {"amp": args.amp, "channels_last": args.channels_last, "compile": args.compile},
        "load_average_at_start": load_avg,
        "torch": torch.__version__,
        "results": results,
        "ratios": ratios,
        "pgd10_robust_acc": robust_acc,
        "at_model_epochs": args.at_epochs,
    }
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"written: {args.out}")


if __name__ == "__main__":
    script_args.run(main, "bench.py")
