"""scripts/bench.py end to end on a small slice of the real MNIST split: every row runs and the
JSON holds what the README quotes. No timing is asserted (speed is the benchmark's job); the
checks are the ones a wrong benchmark would fail: PGD-10 rows compare the same attack, and
early stop is never more robust than the plain pass."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]

ROWS = (
    "clean epoch",
    "FGSM-RS epoch (robustai)",
    "FGSM-RS epoch (torchattacks)",
    "attack floor epoch",
    "free AT epoch, m=4 (robustai)",
    "PGD-10 eval (robustai)",
    "PGD-10 eval (torchattacks)",
    "PGD-10 eval, early stop",
    "PGD-10 eval (robustai), AT model",
    "PGD-10 eval (torchattacks), AT model",
    "PGD-10 eval, early stop, AT model",
    "DP-SGD epoch (robustai)",
    "DP-SGD epoch (robustai, hooks)",
    "DP-SGD epoch (Opacus hooks)",
)


@pytest.mark.slow
def test_bench_runs_every_row_and_writes_its_json(tmp_path: Path, mnist_idx_dir: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench.py"), "--repeats", "2", "--at-epochs", "2",
         "--train-size", "600", "--eval-size", "500", "--eps", "0.05", "--threads", "1",
         "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "ROBUSTAI_MNIST_IDX": str(mnist_idx_dir), "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "x clean" in proc.stdout and "written:" in proc.stdout  # the printed table
    report = json.loads(out.read_text())
    assert (report["train_images"], report["eval_images"], report["repeats"]) == (600, 500, 2)
    # the CPU's model, not only "x86_64": the numbers hinge on its kernels (AVX-512 or AVX2)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        models = [x for x in cpuinfo.read_text().splitlines() if x.startswith("model name")]
        if models:
            assert models[0].split(":", 1)[1].strip() in report["machine"]
    results = report["results"]
    assert tuple(results) == ROWS
    for name, row in results.items():
        assert len(row["times_s"]) >= 2 and all(t > 0 for t in row["times_s"]), name
        assert row["peak_mb"] >= 0, name
        assert ("x_clean_epoch" in row) == (" eval" not in name), name
    assert results["clean epoch"]["x_clean_epoch"] == 1.0
    for row in results.values():  # the untimed first run of each row, e.g. a graph capture
        assert row["warmup_s"] > 0
    assert results["DP-SGD epoch (robustai)"]["grad_sample_mode"] == "ghost"  # auto, on a CPU
    # the memory column sees memory: Opacus' per-sample gradients of small_cnn's ~166k weights
    # for a batch of 100 hold about 66 MB that a clean epoch never allocates
    clean_mb = results["clean epoch"]["peak_mb"]
    assert results["DP-SGD epoch (Opacus hooks)"]["peak_mb"] > clean_mb + 30
    for suffix in ("", ", AT model"):
        ours = results[f"PGD-10 eval (robustai){suffix}"]["robust_acc"]
        theirs = results[f"PGD-10 eval (torchattacks){suffix}"]["robust_acc"]
        stop = results[f"PGD-10 eval, early stop{suffix}"]["robust_acc"]
        assert 0.0 < theirs < 1.0  # the comparison means something at this eps
        assert ours == pytest.approx(theirs, abs=1e-6)  # the very same iterates
        assert stop <= ours + 1e-6  # first fooling iterate: never more robust
    assert set(report["ratios"]) == {
        "pgd10_eval_speedup_vs_torchattacks",
        "pgd10_early_stop_speedup_vs_torchattacks",
        "pgd10_eval_speedup_vs_torchattacks_at_model",
        "pgd10_early_stop_speedup_vs_torchattacks_at_model",
    }


def test_bench_names_the_missing_mnist_file_in_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench.py"), "--mnist-dir", str(tmp_path),
         "--out", str(tmp_path / "b.json")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "t10k-images-idx3-ubyte.gz" in proc.stderr
    assert not (tmp_path / "b.json").exists()


@pytest.mark.parametrize(
    ("script", "args", "message"),
    [
        ("bench.py", ["--device", "nonsense"], "is not a device"),
        ("bench.py", ["--device", "cuda:7"], "cuda:7"),
        ("bench.py", ["--train-size", "0"], "--train-size: 0 is not a whole number >= 1"),
        ("bench.py", ["--eps", "-1"], "--eps: -1 is not in (0, 1]"),
        ("bench.py", ["--eps", "0"], "--eps: 0 is not in (0, 1]"),
        ("bench_pgd_eval.py", ["--eps", "0"], "--eps: 0 is not in (0, 1]"),
        ("bench.py", ["--repeats", "0"], "--repeats: 0 is not a whole number >= 1"),
        ("bench.py", ["--out", "/proc/bench.json"], "cannot write /proc/bench.json"),
        ("bench.py", ["--out", "."], "is a folder"),
        ("bench_dp.py", ["--samples", "-4"], "--samples: -4 is not a whole number >= 1"),
        ("bench_dp.py", ["--mnist-dir", "{tmp}"], "pass --mnist-dir"),
        ("bench_pgd_eval.py", ["--batch-size", "0"], "--batch-size: 0 is not a whole number"),
        ("bench_pgd_eval.py", ["--mnist-dir", "{tmp}"], "pass --mnist-dir"),
    ],
)
def test_bad_arguments_are_refused_before_any_work(
    tmp_path: Path,
    script: str,
    args: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Before the timed work, in one line, exit status 2: a benchmark that failed at its end
    (an output it cannot write) would lose minutes of timings. The script runs in this process,
    as ``python scripts/<script>`` would run it, without a new process importing torch again
    (test_bench_names_the_missing_mnist_file_in_one_line runs one from a shell)."""
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    path = REPO / "scripts" / script
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(path.parent))
    monkeypatch.setattr(sys, "argv", [str(path), *args])
    with pytest.raises(SystemExit) as exc:
        runpy.run_path(str(path), run_name="__main__")
    err = capsys.readouterr().err
    assert exc.value.code == 2, err[-2000:]
    assert "Traceback" not in err and message in err.strip().splitlines()[-1]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_bench_dp_times_the_accountant_not_a_cached_epsilon(
    tmp_path: Path, mnist_idx_dir: Path
) -> None:
    """DPSGD computes (and caches) epsilon for its planned steps when it is built; for a
    one-epoch run that is the epoch's epsilon, so a row timing DPSGD.epsilon_after would time a
    dict lookup (microseconds) where one PRV computation takes a tenth of a second or more."""
    out = tmp_path / "dp.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench_dp.py"), "--samples", "200",
         "--repeats", "1", "--threads", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "ROBUSTAI_MNIST_IDX": str(mnist_idx_dir), "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = json.loads(out.read_text())["results"]["PRV epsilon, once per epoch"]
    assert row["median_s"] > 1e-3


def test_bench_pgd_eval_refuses_a_checkpoint_of_other_images_in_one_line(
    tmp_path: Path, mnist_idx_dir: Path
) -> None:
    """A run of the CLI's default data set (digits, 8x8) is not an MNIST model: say so, naming
    both shapes, instead of a traceback from the model's first batch."""
    from robustai.models import build_model, save_model

    run = tmp_path / "digits_run"
    model = build_model("small_cnn", (1, 8, 8), 10, mean=(0.3,), std=(0.4,))
    save_model(model, run, name="small_cnn", params={}, input_shape=(1, 8, 8), num_classes=10,
               mean=(0.3,), std=(0.4,), extra={"data": "digits"})  # fmt: skip
    out = tmp_path / "out" / "p.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench_pgd_eval.py"), "--checkpoint", str(run),
         "--samples", "20", "--repeats", "1", "--threads", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "ROBUSTAI_MNIST_IDX": str(mnist_idx_dir)},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "(1, 8, 8)" in proc.stderr and "(1, 28, 28)" in proc.stderr
    assert not out.exists()


def test_bench_keeps_a_user_file_beside_its_output(tmp_path: Path, mnist_idx_dir: Path) -> None:
    """The CPU memory rows come from a child process whose output goes to a temporary file;
    it once went to a fixed <out stem>.memory.json beside --out, overwritten and deleted."""
    mine = tmp_path / "bench.memory.json"
    mine.write_text("my notes\n")
    skip = ["FGSM", "attack floor", "free AT", "PGD", "DP-SGD"]  # the clean epoch alone
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench.py"), "--repeats", "1", "--at-epochs",
         "0", "--train-size", "200", "--eval-size", "100", "--threads", "1",
         "--out", str(tmp_path / "bench.json"), "--skip", *skip],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "ROBUSTAI_MNIST_IDX": str(mnist_idx_dir), "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert mine.read_text() == "my notes\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json", "bench.memory.json"]
    assert list(json.loads((tmp_path / "bench.json").read_text())["results"]) == ["clean epoch"]


def test_cuda_graph_eval_rows_get_two_warm_up_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """graphs.py captures a batch shape the second time it sees it; an early-stop row's odd last
    batch is first seen at the end of the first warm-up run, so a CUDA-graph eval row needs a
    second untimed run for every timed run to replay. Other rows (a graph epoch row trains a
    fresh model each run) get one."""
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    import bench

    calls: dict[str, int] = {}

    def row(name: str) -> Any:
        def run() -> float:
            calls[name] = calls.get(name, 0) + 1
            return 0.0

        return run

    runs = {  # row name: (kind, untimed runs expected)
        "clean epoch": ("epoch", 1),
        "FGSM-RS epoch (robustai, CUDA graph)": ("epoch", 1),
        "PGD-10 eval (robustai)": ("eval", 1),
        "PGD-10 eval (robustai, CUDA graph)": ("eval", 2),
        "PGD-10 eval, early stop, CUDA graph, AT model": ("eval", 2),
    }
    seconds = bench.warm_up([(name, kind, row(name)) for name, (kind, _) in runs.items()])
    assert calls == {name: n for name, (_, n) in runs.items()}
    assert {name: len(s) for name, s in seconds.items()} == calls


def test_mnist_dir_is_found_as_the_tests_find_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As tests/conftest.py: ../shared/data/mnist beside the repository's path as given (a
    symlinked checkout's link, not its target), and ``~`` expanded in $ROBUSTAI_MNIST_IDX and
    --mnist-dir."""
    import argparse
    import importlib.util

    link = tmp_path / "work" / "repo"
    link.parent.mkdir()
    link.symlink_to(REPO, target_is_directory=True)
    spec = importlib.util.spec_from_file_location(
        "script_args_via_link", link / "scripts" / "script_args.py"
    )
    assert spec is not None and spec.loader is not None
    script_args = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script_args)

    def parse(*argv: str) -> Path:
        parser = argparse.ArgumentParser()
        script_args.add_mnist_dir(parser)
        return parser.parse_args(argv).mnist_dir

    monkeypatch.delenv("ROBUSTAI_MNIST_IDX", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert parse() == tmp_path / "work" / "shared" / "data" / "mnist"
    assert parse("--mnist-dir", "~/x") == tmp_path / "home" / "x"
    monkeypatch.setenv("ROBUSTAI_MNIST_IDX", "~/mnist")
    assert parse() == tmp_path / "home" / "mnist"
