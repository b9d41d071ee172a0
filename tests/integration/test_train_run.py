"""A tiny real run through the CLI: the files it writes and the TensorBoard tags inside."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from inprocess import robustai as in_process
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from robustai.data import build_data
from robustai.evaluation import accuracy
from robustai.models import load_model

TINY = [
    "data=synthetic",
    "data.num_samples=256",
    "trainer.epochs=2",
    "trainer.watchdog.samples=100",  # more than the eval split holds (64), fewer than train
    "logger.image_grid=4",
]


def robustai(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """In this process (tests/inprocess.py); test_default_experiment.py starts the command
    itself."""
    proc = in_process(*args, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("run")
    robustai("train", *TINY, f"hydra.run.dir={tmp / 'run'}", cwd=tmp)
    return tmp / "run"


def test_run_folder_has_the_contract_files(run_dir: Path) -> None:
    names = {p.name for p in run_dir.iterdir()}
    assert {"weights.safetensors", "meta.json", "metrics.json", "train.log", ".hydra"} <= names
    assert any(n.startswith("events.out.tfevents.") for n in names)
    assert not [n for n in names if n.endswith((".pt", ".pth", ".pkl", ".ckpt"))]
    assert (run_dir / ".hydra" / "config.yaml").is_file()


def test_metrics_follow_the_contract(run_dir: Path) -> None:
    m = json.loads((run_dir / "metrics.json").read_text())
    assert 0.0 <= m["clean_acc"] <= 1.0
    assert set(m["robust_acc"]) == {"fgsm@0.1", "pgd20@0.1"}
    assert all(0.0 <= v <= m["clean_acc"] for v in m["robust_acc"].values())
    assert m["epochs"] == 2
    assert m["train_seconds"] > 0 and m["images_per_s"] > 0
    assert m["privacy"] is None
    assert m["worst_case_acc"]["0.1"] <= min(m["robust_acc"].values())
    # The watchdog watches training images (100 of 192; the eval split has only 64), so the
    # epoch it would restore is not chosen on the images the accuracies above come from.
    assert (m["watchdog"]["split"], m["watchdog"]["samples"]) == ("train", 100)


def test_meta_records_the_eval_split(run_dir: Path) -> None:
    """`robustai evaluate` rebuilds the eval split from these (a split of its own would hold
    training images)."""
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["data"] == "synthetic"
    assert meta["attack"] == "fgsm_rs"  # the default training attack, by its label
    assert meta["split"] == {
        "split_seed": 0, "holdout": 0.25, "num_samples": 256, "noise": 0.3,
        "input_shape": [1, 8, 8], "num_classes": 4,
    }


def test_weights_reload_and_reproduce_clean_accuracy(run_dir: Path) -> None:
    model, meta = load_model(run_dir)
    assert meta["model"]["name"] == "small_cnn"
    assert meta["input_shape"] == [1, 8, 8]
    data = build_data(
        "synthetic", num_samples=256, input_shape=(1, 8, 8), num_classes=4, holdout=0.25
    )
    m = json.loads((run_dir / "metrics.json").read_text())
    assert accuracy(model, data.eval.x, data.eval.y) == pytest.approx(m["clean_acc"])


def test_tensorboard_tags(run_dir: Path) -> None:
    acc = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    expected = {
        "train/loss",
        "train/acc",
        "train/adv_acc",
        "val/clean_acc",
        "train/robust_acc/pgd10",  # the watchdog watches training images
        "lr",
        "perf/images_per_s",
        "perf/epoch_seconds",
        "eval/clean_acc",
        "eval/robust_acc/pgd20@0.1",
    }
    assert expected <= set(tags["scalars"])
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2]
    assert "eval/adversarial/pgd20@0.1" in tags["images"]
    img = acc.Images("eval/adversarial/pgd20@0.1")[0]
    assert img.width > img.height > 0  # 3 rows (clean, adversarial, perturbation) of 4 images
    assert any(t.startswith("config") for t in tags["tensors"])  # add_text is stored as a tensor


def test_sweep_writes_one_run_folder_per_member(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    robustai(
        "train",
        "-m",
        *TINY,
        "trainer.epochs=1",
        "attack.eps=0.05,0.1",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    members = sorted(p for p in sweep.iterdir() if p.is_dir() and (p / "metrics.json").exists())
    assert [p.name for p in members] == ["0", "1"]
    keys = [set(json.loads((p / "metrics.json").read_text())["robust_acc"]) for p in members]
    assert keys == [{"fgsm@0.05", "pgd20@0.05"}, {"fgsm@0.1", "pgd20@0.1"}]


def test_same_seed_same_run(tmp_path: Path) -> None:
    """CPU runs repeat exactly: same seed, same weights, same metrics."""
    outs = []
    for i in range(2):
        robustai(
            "train",
            *TINY,
            "trainer.epochs=1",
            "logger=none",
            f"hydra.run.dir={tmp_path / str(i)}",
            cwd=tmp_path,
        )
        outs.append(tmp_path / str(i))
    w0, _ = load_model(outs[0])
    w1, _ = load_model(outs[1])
    for (k, a), (_, b) in zip(w0.state_dict().items(), w1.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    m0, m1 = (json.loads((p / "metrics.json").read_text()) for p in outs)
    assert m0["robust_acc"] == m1["robust_acc"] and m0["clean_acc"] == m1["clean_acc"]


def test_an_l2_run_at_eps_0_trains_and_passes_its_checks(tmp_path: Path) -> None:
    """eps 0 (the first member of a sweep over eps, say): the sanity checks' L2 single step has
    nothing to take, which it once refused with a traceback (alpha=0)."""
    run = tmp_path / "l2"
    robustai(
        "train", *TINY, "trainer.epochs=1", "attack=pgd", "attack.norm=l2", "attack.eps=0",
        "attack.steps=2", "evaluator=quick_l2", "evaluator.curve.enabled=false",
        f"hydra.run.dir={run}", cwd=tmp_path,
    )  # fmt: skip
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["robust_acc"] == {"pgd20_l2@0": metrics["clean_acc"]}
    assert "fail" not in {c["status"] for c in metrics["sanity"]["checks"].values()}


def test_l2_run_at_a_budget_above_one(tmp_path: Path) -> None:
    """An L2 threat model trains, watches for catastrophic overfitting (PGD in the run's own
    norm) and evaluates at radius 2.0, the usual MNIST budget; the curve goes beyond 1."""
    run = tmp_path / "l2"
    robustai(
        "train",
        *TINY,
        "trainer.epochs=1",
        "attack=pgd",
        "attack.norm=l2",
        "attack.eps=2.0",
        "attack.steps=3",
        "evaluator=quick",
        "evaluator.attacks=[{name:pgd,norm:l2,steps:5}]",
        "evaluator.sanity.enabled=false",
        f"hydra.run.dir={run}",
        cwd=tmp_path,
    )
    meta = json.loads((run / "meta.json").read_text())
    assert meta["threat_model"] == {"norm": "l2", "eps": 2.0}
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["robust_acc"]) == {"pgd5_l2@2"}
    curve = json.loads((run / "report.json").read_text())["curve"]
    assert curve["norm"] == "l2" and max(curve["eps"]) == 4.0


def test_a_batchnorm_model_trains_when_the_last_batch_would_hold_one_image(
    tmp_path: Path,
) -> None:
    # 136 samples, a quarter held out: 102 training images, batches of 101 and then 1, on which
    # BatchNorm cannot train; the run leaves that image out of every epoch and says so
    run = tmp_path / "run"
    robustai(
        "train", "data=synthetic", "data.num_samples=136", "data.batch_size=101",
        "model=preact_resnet18", "model.params.width=8", "trainer.epochs=1", "evaluator=quick",
        "evaluator.sanity.enabled=false", "evaluator.curve.enabled=false",
        f"hydra.run.dir={run}", cwd=tmp_path,
    )  # fmt: skip
    log = (run / "train.log").read_text()
    assert "leaves out its last 1 training image(s): BatchNorm cannot train on a batch of" in log
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 1



def test_hparams_record_the_objective_the_run_trained_with(tmp_path: Path) -> None:
    """With attack=none the run trains without an attack whatever trainer.objective says; the
    HParams column showed the config's "adversarial" beside runs that did train adversarially."""
    from tensorboard.plugins.hparams import metadata

    run = tmp_path / "run"
    robustai(
        "train", *TINY, "attack=none", "trainer.epochs=1", "evaluator.sanity.enabled=false",
        "evaluator.curve.enabled=false", f"hydra.run.dir={run}", cwd=tmp_path,
    )  # fmt: skip
    acc = EventAccumulator(str(run), size_guidance={"tensors": 0})
    acc.Reload()
    content = acc.PluginTagToContent(metadata.PLUGIN_NAME)
    hp = metadata.parse_session_start_info_plugin_data(
        content[metadata.SESSION_START_INFO_TAG]
    ).hparams
    assert hp["trainer.objective"].string_value == "standard"
    assert "objective: standard training (no attack)" in (run / "train.log").read_text()
