"""PGD-10 evaluation throughput: robustai against torchattacks, same model, data and device.

Both sides compute the same number, robust accuracy under L-inf PGD-10 with a random start
(a sample counts if it is classified correctly clean and attacked), over the same images in the
same batches, with the same step size (2.5 * eps / steps). Reported: images per second (median of
``--repeats`` interleaved runs after a warm-up), and the ratio robustai / torchattacks. The row
``robustai_early_stop`` is the evaluator's default, per-sample early stop (each sample leaves at
the first iterate that fools it): a robust accuracy the same or lower, not the same number.

    python scripts/bench_pgd_eval.py                      # real MNIST from ../shared/data/mnist
    python scripts/bench_pgd_eval.py --device cuda --samples 10000 --batch-size 1024

The model is the small CNN of Wong et al. (2020), trained for ``--train-epochs`` on the first
8,000 MNIST test images (or loaded from ``--checkpoint``, a robustai run folder of a model for
28x28 single-channel images; another shape is refused); the benchmark
runs on the remaining images. torchattacks is a test-only dependency of robustai
(``pip install -e .[dev]``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import script_args  # beside this script, on sys.path when it runs
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
TRAIN_IMAGES = 8000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    script_args.add_mnist_dir(p)
    p.add_argument("--device", type=script_args.device, default="cpu", help="cpu or cuda")
    p.add_argument(
        "--samples", type=script_args.positive_int, default=2000, help="images evaluated per run"
    )
    p.add_argument("--batch-size", type=script_args.positive_int, default=500)
    p.add_argument("--eps", type=script_args.eps, default=0.1)
    p.add_argument("--steps", type=script_args.positive_int, default=10)
    p.add_argument("--repeats", type=script_args.positive_int, default=5)
    p.add_argument(
        "--threads",
        type=script_args.positive_int,
        default=None,
        help="torch CPU threads (default: all)",
    )
    p.add_argument("--train-epochs", type=script_args.nonnegative_int, default=1)
    p.add_argument(
        "--checkpoint", type=Path, default=None, help="a robustai run folder of an MNIST model"
    )
    p.add_argument(
        "--out",
        type=script_args.output_file,
        default=REPO / "experiments" / "bench" / "bench_pgd_eval.json",
    )
    return p.parse_args(argv)


def load_mnist(folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    from robustai.data.idx import load_idx_images

    return load_idx_images(*script_args.mnist_files(folder))


def check_fits_mnist(checkpoint: Path, meta: dict, image_shape: tuple[int, ...]) -> None:
    """Refuse a run trained on other images before any timing: its model would fail on the
    first MNIST batch with a traceback (digits, the CLI's default data set, is 8x8)."""
    from robustai.errors import CheckpointError

    model_shape = tuple(int(v) for v in meta["input_shape"])
    if model_shape != image_shape:
        raise CheckpointError(
            f"checkpoint {checkpoint} expects inputs of shape {model_shape} but the MNIST "
            f"images have shape {image_shape}; pass a run trained on MNIST (data=idx or "
            f"data=mnist; meta.json says data={meta.get('data', 'unknown')})"
        )
    if int(meta["num_classes"]) < 10:
        raise CheckpointError(
            f"checkpoint {checkpoint} predicts {meta['num_classes']} classes but MNIST has 10; "
            "pass a run trained on MNIST"
        )


def trained_model(x: torch.Tensor, y: torch.Tensor, epochs: int, device: torch.device) -> nn.Module:
    """small_cnn trained with Adam on (x, y): a realistic, mostly-correct model to attack."""
    from robustai.data.split import channel_stats
    from robustai.models import build_model

    torch.manual_seed(0)
    mean, std = channel_stats(x)
    model = build_model("small_cnn", tuple(x.shape[1:]), 10, mean, std).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = x.to(device), y.to(device)
    for _ in range(epochs):
        order = torch.randperm(len(x), device=device)
        for i in range(0, len(x), 128):
            idx = order[i : i + 128]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def robustai_eval(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, a: argparse.Namespace
) -> float:
    """robustai's evaluator: one clean pass, then plain PGD on the samples that are right clean."""
    from robustai.attacks import PGD
    from robustai.evaluation import Evaluator

    ev = Evaluator(
        [lambda e: PGD(e, steps=a.steps)], [a.eps], batch_size=a.batch_size, early_stop=False
    )
    return ev.run(model, x, y).worst_case[f"{a.eps:g}"]


def robustai_early_stop(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, a: argparse.Namespace
) -> float:
    """robustai's evaluator with its defaults: also per-sample early stop."""
    from robustai.attacks import PGD
    from robustai.evaluation import Evaluator

    ev = Evaluator([lambda e: PGD(e, steps=a.steps)], [a.eps], batch_size=a.batch_size)
    return ev.run(model, x, y).worst_case[f"{a.eps:g}"]


def robustai_attack_all(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, a: argparse.Namespace
) -> float:
    """robustai's ``robust_accuracy``: attacks every sample (the library function's path)."""
    from robustai.attacks import PGD
    from robustai.evaluation import robust_accuracy

    return robust_accuracy(model, PGD(a.eps, steps=a.steps), x, y, a.batch_size)


def torchattacks_eval(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, a: argparse.Namespace
) -> float:
    """The usual torchattacks loop: clean prediction, attack, prediction on the attacked batch."""
    import torchattacks

    atk = torchattacks.PGD(
        model, eps=a.eps, alpha=2.5 * a.eps / a.steps, steps=a.steps, random_start=True
    )
    robust = 0
    for i in range(0, len(x), a.batch_size):
        xb, yb = x[i : i + a.batch_size], y[i : i + a.batch_size]
        with torch.no_grad():
            clean = model(xb).argmax(1) == yb
        adv = atk(xb, yb)
        with torch.no_grad():
            robust += int((clean & (model(adv).argmax(1) == yb)).sum())
    return robust / len(x)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = a.device
    x_all, y_all = load_mnist(a.mnist_dir)
    if a.checkpoint:
        from robustai.models import load_model

        model, meta = load_model(a.checkpoint, map_location=device)
        check_fits_mnist(a.checkpoint, meta, tuple(x_all.shape[1:]))
    else:
        model = trained_model(x_all[:TRAIN_IMAGES], y_all[:TRAIN_IMAGES], a.train_epochs, device)
    x = x_all[TRAIN_IMAGES:][: a.samples].to(device)
    y = y_all[TRAIN_IMAGES:][: a.samples].to(device)
    with torch.no_grad():
        clean_acc = float((model(x).argmax(1) == y).float().mean())

    runners: dict[str, Callable[..., float]] = {
        "robustai": robustai_eval,
        "robustai_attack_all": robustai_attack_all,
        "robustai_early_stop": robustai_early_stop,
        "torchattacks": torchattacks_eval,
    }
    times: dict[str, list[float]] = {k: [] for k in runners}
    accs: dict[str, list[float]] = {k: [] for k in runners}
    for run in runners.values():  # warm-up (allocator, kernels, lazy imports)
        run(model, x[: a.batch_size], y[: a.batch_size], a)
    for rep in range(a.repeats):
        for name, run in runners.items():  # interleaved: every side sees the same load
            torch.manual_seed(rep)
            sync(device)
            start = time.perf_counter()
            acc = run(model, x, y, a)
            sync(device)
            times[name].append(time.perf_counter() - start)
            accs[name].append(acc)

    rate = {k: len(x) / statistics.median(v) for k, v in times.items()}
    ratio = rate["robustai"] / rate["torchattacks"]
    result = {
        "benchmark": f"PGD-{a.steps} evaluation, L-inf eps={a.eps:g}, random start",
        "model": "small_cnn" if not a.checkpoint else str(a.checkpoint),
        "data": f"MNIST test images {TRAIN_IMAGES}..{TRAIN_IMAGES + len(x)}",
        "device": str(device)
        if device.type == "cpu"
        else f"cuda ({torch.cuda.get_device_name(device)})",
        "cpu": script_args.cpu_name(),
        "cpu_count": __import__("os").cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "samples": len(x),
        "batch_size": a.batch_size,
        "repeats": a.repeats,
        "clean_acc": clean_acc,
        "images_per_s": rate,
        "seconds": times,
        "robust_acc": {k: statistics.mean(v) for k, v in accs.items()},
        "ratio_robustai_over_torchattacks": ratio,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{result['benchmark']} on {result['device']} ({result['torch_threads']} threads), "
        f"{len(x)} images, batch {a.batch_size}, clean acc {clean_acc:.3f}"
    )
    for k in runners:
        print(f"  {k:<20} {rate[k]:9.1f} images/s   robust acc {result['robust_acc'][k]:.4f}")
    print(f"  ratio robustai / torchattacks: {ratio:.2f}x   (written to {a.out})")
    return 0


if __name__ == "__main__":
    script_args.run(main, "bench_pgd_eval.py")
