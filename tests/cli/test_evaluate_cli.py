"""``robustai evaluate``: a run of ``robustai train`` in, report / curve / JSON / TensorBoard out;
bad input (checkpoint missing, unreadable or not fitting the data) is one line and exit 2; a
failed sanity check with ``evaluator.strict=true`` is exit 1, for train and evaluate alike."""

from __future__ import annotations

import json
import logging
import shutil
import signal
from pathlib import Path

import pytest
import torch
from inprocess import robustai
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from robustai.cli.common import config_dir
from robustai.cli.evaluate import data_from_checkpoint, run_evaluate
from robustai.cli.main import main
from robustai.cli.preflight import preflight
from robustai.config import to_evaluate_config
from robustai.errors import CheckpointError, ConfigError
from robustai.models import build_model, save_model
from robustai.security.roles import experiment_of

TINY = [
    "data=synthetic",
    "data.num_samples=256",
    "trainer.epochs=15",  # enough to learn the synthetic task (2 epochs stay at chance)
    "trainer.watchdog.samples=32",
    "trainer.threads=1",
    "logger.image_grid=0",
]


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def strict_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, int]:
    """A tiny training run whose end-of-training sanity checks fail on purpose (at
    large_eps=0.02 PGD cannot bring accuracy to chance) with evaluator.strict=true."""
    tmp = tmp_path_factory.mktemp("train")
    proc = robustai(
        "train",
        *TINY,
        "evaluator.strict=true",
        "evaluator.sanity.large_eps=0.02",
        f"hydra.run.dir={tmp / 'run'}",
        cwd=tmp,
    )
    return tmp / "run", proc.stderr, proc.returncode


@pytest.mark.slow
def test_train_strict_exits_1_naming_the_failed_check(strict_run: tuple[Path, str, int]) -> None:
    run, stderr, code = strict_run
    assert code == 1, stderr[-3000:]
    line = one_line(stderr)
    assert line.startswith("robustai train: error: evaluation untrustworthy: large_eps: ")
    # the run folder is complete all the same: metrics, report, curve, weights
    m = json.loads((run / "metrics.json").read_text())
    assert m["sanity"]["failed"] == ["large_eps"] and m["sanity"]["passed"] is False
    assert set(m["sanity"]["checks"]) >= {"gradients", "black_box", "convergence"}
    assert m["curve"]["eps"][0] == 0.0 and m["report"] == "report.md"
    assert set(m["per_class"]["clean_acc"]) == {"0", "1", "2", "3"}
    assert "**Verdict: NOT trustworthy.**" in (run / "report.md").read_text()
    assert (run / "robustness_curve.png").is_file()
    assert "sanity large_eps: FAIL" in (run / "train.log").read_text()


@pytest.mark.slow
def test_evaluate_a_training_run(strict_run: tuple[Path, str, int], tmp_path: Path) -> None:
    """The default command (evaluator=standard) on a finished run: report, curve, JSON,
    TensorBoard; the data set comes from the checkpoint's meta.json."""
    run, _, _ = strict_run
    out = tmp_path / "eval"
    proc = robustai(
        "evaluate",
        f"checkpoint={run}",
        "data.num_samples=256",  # same split as the training run
        "threads=1",
        "evaluator.curve.eps=[0.1,0.2]",  # 0.1: the suite's own results, reused
        "evaluator.save_examples=true",
        f"hydra.run.dir={out}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = {p.name for p in out.iterdir()}
    assert {
        "report.md",
        "report.json",
        "robustness_curve.png",
        "adversarial_examples.safetensors",
        "evaluate.log",
    } <= names
    assert any(n.startswith("events.out.tfevents.") for n in names)
    report = json.loads((out / "report.json").read_text())
    assert set(report["robust_acc"]) == {"apgd_ce@0.1", "apgd_t@0.1", "square@0.1"}
    assert report["data"].startswith("synthetic")  # chosen from meta.json
    assert report["worst_case_acc"]["0.1"] <= min(report["robust_acc"].values())
    assert report["curve"]["eps"] == [0.0, 0.1, 0.2]
    assert len(report["sanity"]["checks"]) == 7
    # the verdict follows the checks: trustworthy exactly when none failed, and report.md says so
    assert report["trustworthy"] is (report["sanity"]["failed"] == [])
    text = (out / "report.md").read_text()
    verdict = "trustworthy.**" if report["trustworthy"] else "NOT trustworthy.**"
    assert f"**Verdict: {verdict}" in text
    assert "![robustness curve](robustness_curve.png)" in text and "## Sanity checks" in text
    metrics = json.loads((run / "metrics.json").read_text())
    assert report["clean_acc"] == pytest.approx(metrics["clean_acc"])  # same model, same split

    acc = EventAccumulator(str(out), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"eval/clean_acc", "eval/robust_acc/apgd_t@0.1", "eval/worst_case_acc/0.1"} <= set(
        tags["scalars"]
    )
    assert {f"eval/sanity/{c}" for c in ("gradients", "deterministic")} <= set(tags["scalars"])
    assert "eval/robustness_curve" in tags["images"]
    assert any(t.startswith("eval/report") for t in tags["tensors"])


@pytest.mark.slow
def test_evaluate_repeats_the_training_runs_own_evaluation(
    strict_run: tuple[Path, str, int], tmp_path: Path
) -> None:
    """The suite the run ended with, run again by ``robustai evaluate``: the same numbers to the
    last digit, PGD's random starts and the sanity checks' included (the evaluation seeds its own
    draws; the training run's generator had moved on through its epochs)."""
    run, _, _ = strict_run
    out = tmp_path / "eval"
    proc = robustai(
        "evaluate",
        f"checkpoint={run}",
        "evaluator=quick",
        "evaluator.sanity.large_eps=0.02",
        "threads=1",
        f"hydra.run.dir={out}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(report["robust_acc"]) == {"fgsm@0.1", "pgd20@0.1"}
    assert report["robust_acc"] == metrics["robust_acc"]
    assert report["worst_case_acc"] == metrics["worst_case_acc"]
    assert report["curve"] == metrics["curve"]
    for name, check in metrics["sanity"]["checks"].items():  # all but its timing
        check.pop("seconds")
        assert report["sanity"]["checks"][name] | {"seconds": None} == check | {"seconds": None}


# ---------------------------------------------------------------------------- bad input
def save_small_cnn(run: Path, classes: int = 10, extra: dict | None = None) -> Path:
    """A small_cnn for 1x8x8 inputs saved as robustai train saves it."""
    save_model(
        build_model("small_cnn", (1, 8, 8), classes),
        run,
        name="small_cnn",
        params={},
        input_shape=(1, 8, 8),
        num_classes=classes,
        mean=(0.0,),
        std=(1.0,),
        extra=extra,
    )
    return run


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """Trained on digits with an L-inf threat model of eps 0.2."""
    threat = {"norm": "linf", "eps": 0.2}
    return save_small_cnn(tmp_path / "ckpt", extra={"data": "digits", "threat_model": threat})


def evaluate_fails(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", *args])
    assert exc.value.code == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("robustai evaluate: error: ")
    return line


def test_checkpoint_is_required(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert "checkpoint is not set" in evaluate_fails([], capsys)
    assert "checkpoint not found" in evaluate_fails([f"checkpoint={tmp_path / 'nope'}"], capsys)
    assert list(tmp_path.iterdir()) == []  # nothing was written
    other = tmp_path / "ckpt" / "checkpoints" / "epoch-0001.safetensors"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"x")  # a training checkpoint, not the run's weights
    (tmp_path / "ckpt" / "weights.safetensors").write_bytes(b"x")
    assert (
        f"{other} is neither a run folder nor its weights.safetensors or meta.json; "
        f"give the run folder, e.g. {tmp_path / 'ckpt'}"
    ) in evaluate_fails([f"checkpoint={other}"], capsys)


def test_unreadable_checkpoint(
    checkpoint: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(checkpoint.parent)
    weights = checkpoint / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert "modified or corrupt" in evaluate_fails([f"checkpoint={checkpoint}"], capsys)
    (checkpoint / "meta.json").write_text("{not json")
    assert "not valid JSON" in evaluate_fails([f"checkpoint={weights}"], capsys)


def test_bad_evaluator_settings(
    checkpoint: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(checkpoint.parent)
    ck = f"checkpoint={checkpoint}"
    assert "evaluator.sanity.samples=0: must be >= 1" in evaluate_fails(
        [ck, "evaluator.sanity.samples=0"], capsys
    )
    assert "evaluator.curve.eps[1]=2.0: must be in [0, 1]" in evaluate_fails(
        [ck, "evaluator.curve.eps=[0.1,2]"], capsys
    )
    assert "evaluator=strong: unknown option" in evaluate_fails([ck, "evaluator=strong"], capsys)
    assert "did you mean evaluator.strict" in evaluate_fails([ck, "evaluator.strictt=true"], capsys)
    assert "evaluator.attacks[0].loss=l1: unknown" in evaluate_fails(
        [ck, "evaluator.attacks.0.loss=l1"], capsys
    )
    assert "two attacks have the metric key pgd5@0.2" in evaluate_fails(
        [ck, "evaluator.attacks=[{name:pgd,steps:5},{name:pgd,steps:5}]"], capsys
    )  # was a traceback
    assert "evaluator.eps[1]=0.1 repeats evaluator.eps[0]" in evaluate_fails(
        [ck, "evaluator=quick", "evaluator.eps=[0.1,0.1000001]"], capsys
    )  # one row of metrics.json for both
    assert "evaluator.attacks[0].eps: the evaluator runs each attack" in evaluate_fails(
        [ck, "evaluator.attacks=[{name:fgsm,eps:0.3}]"], capsys
    )  # was ignored
    assert "tolerance=1.0: must be in [0, 1)" in evaluate_fails(
        [ck, "evaluator.sanity.tolerance=1"], capsys
    )
    line = evaluate_fails(
        [ck, "evaluator.attacks=[{name:pgd,restarts:3,random_start:false}]"], capsys
    )
    assert "random_start" in line and "threat model" not in line  # no eps hint for another error
    # train's groups: "attack: no such key (did you mean the config group attack, ...)"
    assert evaluate_fails([ck, "attack=pgd"], capsys).endswith(
        "attack: attack is no config group of robustai evaluate (its groups: data, evaluator,"
        " logger, paths); attack=<option> is for robustai train"
    )
    assert "samples: no such key (did you mean evaluator.samples?)" in evaluate_fails(
        [ck, "samples=3"], capsys
    )
    for seed in ("99999999999999999999", "-1"):  # torch's overflow traceback, or a wrap
        assert f"evaluator.seed={seed}: must be a whole number in [0, 2**62)" in evaluate_fails(
            [ck, f"evaluator.seed={seed}"], capsys
        )


def test_missing_device_is_refused_before_the_run_folder(
    checkpoint: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(checkpoint.parent)
    before = sorted(checkpoint.parent.rglob("*"))
    # No such device on any machine the suite runs on (no CUDA, or fewer than 100 GPUs).
    line = evaluate_fails([f"checkpoint={checkpoint}", "device=cuda:99"], capsys)
    assert "device=cuda:99: " in line and "trainer.device" not in line
    assert sorted(checkpoint.parent.rglob("*")) == before  # no evaluation folder was made


def test_an_l2_checkpoint_under_an_l_inf_suite_says_how_to_evaluate_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without evaluator.eps, the checkpoint's threat model sets eps, a radius in its own norm:
    an L2 checkpoint under the (L-inf) default suite would be attacked in another threat model,
    at 2.0 not even a valid one. Refused before the evaluation folder exists, with what to set;
    with an explicit eps, a radius of 2.0 is still refused for L-inf attacks."""
    for eps in (2.0, 0.5):
        threat = {"norm": "l2", "eps": eps}
        shutil.rmtree(tmp_path / "l2", ignore_errors=True)  # save_model keeps a saved model
        run = save_small_cnn(tmp_path / "l2", extra={"data": "digits", "threat_model": threat})
        monkeypatch.chdir(tmp_path)
        line = evaluate_fails([f"checkpoint={run}"], capsys)
        assert f"the checkpoint's threat model is l2 at eps {eps:g}, but every attack" in line
        assert "choose evaluator=standard_l2 (or quick_l2)" in line
        assert sorted(p.name for p in tmp_path.iterdir()) == ["l2"]
    line = evaluate_fails([f"checkpoint={run}", "evaluator.eps=[2.0]"], capsys)
    assert "evaluator.eps[0]=2.0: must be in [0, 1]" in line


def test_an_l2_suite_on_a_checkpoint_without_a_threat_model_needs_its_eps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model trained without an attack records no threat model, so eps fell back to data.eps,
    the data set's L-inf budget (0.1), which the L2 suite took as its radius: a tiny one, and a
    report calling the model robust. Refused before the folder exists, naming evaluator.eps."""
    run = save_small_cnn(tmp_path / "plain", extra={"data": "digits", "threat_model": None})
    monkeypatch.chdir(tmp_path)
    line = evaluate_fails([f"checkpoint={run}", "evaluator=quick_l2"], capsys)
    assert "the checkpoint records no threat model (trained without an attack)" in line
    assert "data.eps=0.1" in line and "give evaluator.eps=[...] as L2 radii" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain"]


def test_shape_mismatch_names_both_shapes(checkpoint: Path, tmp_path: Path) -> None:
    cfg = to_evaluate_config(
        {
            "checkpoint": str(checkpoint),
            "data": {"name": "synthetic", "input_shape": [1, 12, 12], "num_samples": 64},
            "logger": {"tensorboard": False},
        }
    )
    with pytest.raises(CheckpointError, match=r"\(1, 8, 8\).*\(1, 12, 12\)"):
        run_evaluate(cfg, tmp_path / "out")


@pytest.mark.parametrize("data_classes", [4, 12])
def test_a_class_count_other_than_the_models_is_one_line(
    data_classes: int,
    checkpoint: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Fewer classes in the data than the model's 10 ended in a traceback (the evaluation's own
    check, deep inside it), after the run folder was made."""
    monkeypatch.chdir(tmp_path)
    line = evaluate_fails(
        [f"checkpoint={checkpoint}", "data=synthetic", f"data.num_classes={data_classes}",
         "evaluator=quick", f"hydra.run.dir={tmp_path / 'e'}"],
        capsys,
    )  # fmt: skip
    assert f"predicts 10 classes but data=synthetic has {data_classes}" in line
    assert "meta.json says data=digits" in line


def test_targeted_suite_needs_four_classes(tmp_path: Path) -> None:
    run = save_small_cnn(tmp_path / "three", classes=3)
    cfg = to_evaluate_config(
        {
            "checkpoint": str(run),
            "data": {"name": "synthetic", "num_classes": 3, "num_samples": 60},
            "evaluator": {"attacks": [{"name": "apgd"}, {"name": "apgd_t"}]},
            "logger": {"tensorboard": False},
        }
    )
    with pytest.raises(ConfigError, match=r"evaluator.attacks\[1\]: apgd_t needs at least 4"):
        run_evaluate(cfg, tmp_path / "out")


def test_eps_defaults_to_the_checkpoints_threat_model(checkpoint: Path, tmp_path: Path) -> None:
    cfg = to_evaluate_config(
        {
            "checkpoint": str(checkpoint),
            "evaluator": {
                "eps": [],
                "attacks": [{"name": "fgsm"}],
                "samples": 40,
                "sanity": {"enabled": False},
                "curve": {"enabled": False},
            },
            "logger": {"tensorboard": False},
            "threads": 1,
        }
    )
    threads = torch.get_num_threads()
    try:
        report = run_evaluate(cfg, tmp_path / "out")
        assert torch.get_num_threads() == 1  # threads=1 took effect
    finally:
        torch.set_num_threads(threads)
    assert list(report["robust_acc"]) == ["fgsm@0.2"]  # meta.json's threat_model eps
    assert report["sanity"] is None and report["trustworthy"] is None
    assert (tmp_path / "out" / "report.md").is_file()


def test_a_model_trained_at_eps_0_is_evaluated_at_the_datas_eps_and_the_log_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    threat = {"norm": "linf", "eps": 0.0}  # attack.eps=0: robust accuracy would be clean accuracy
    run = save_small_cnn(tmp_path / "ckpt", extra={"data": "digits", "threat_model": threat})
    cfg = to_evaluate_config(
        {
            "checkpoint": str(run),
            "evaluator": {"eps": [], "attacks": [{"name": "fgsm"}], "samples": 20,
                          "sanity": {"enabled": False}, "curve": {"enabled": False}},
            "logger": {"tensorboard": False},
        }
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="robustai"):
        report = run_evaluate(cfg, tmp_path / "out")
    assert list(report["robust_acc"]) == ["fgsm@0.1"]  # digits' data.eps
    assert "no threat model with eps > 0; evaluating at data.eps=0.1" in caplog.text


def test_data_follows_the_checkpoint(checkpoint: Path) -> None:
    meta = json.loads((checkpoint / "meta.json").read_text())
    meta["data"] = "fashion_mnist"
    (checkpoint / "meta.json").write_text(json.dumps(meta))
    assert data_from_checkpoint([f"checkpoint={checkpoint}"])[-1] == "data=fashion_mnist"
    meta["data"] = "idx"  # an IDX copy: its folder comes as data.root, as in training
    (checkpoint / "meta.json").write_text(json.dumps(meta))
    given = [f"checkpoint={checkpoint}", "data.root=path/to/mnist"]
    assert data_from_checkpoint(given) == [given[0], "data=idx", given[1]]
    given = [f"checkpoint={checkpoint}", "data=mnist"]
    assert data_from_checkpoint(given) == given
    assert data_from_checkpoint(["checkpoint=/no/such/run"]) == ["checkpoint=/no/such/run"]


def test_seed_is_the_evaluations_seed(checkpoint: Path) -> None:
    """``robustai evaluate seed=N`` seeds the evaluation's draws (evaluator.seed follows it): it
    used to seed only the TensorBoard examples, so ``-m seed=0,1,2`` gave three equal rows. The
    default stays 0, the training run's evaluator.seed, whose numbers it repeats."""
    ck = f"checkpoint={checkpoint}"
    for given, seeds in (
        ([], (0, 0)),
        (["seed=3"], (3, 3)),
        (["seed=3", "evaluator.seed=5"], (3, 5)),
        (["evaluator=quick", "seed=2"], (2, 2)),
        (["seed=4", "evaluator.seed=null"], (4, None)),
    ):
        composed: list = []
        preflight(config_dir(), "evaluate", [ck, *given], composed.append)
        cfg = to_evaluate_config(composed[0])
        assert (cfg.seed, cfg.evaluator.seed) == seeds, given


def test_a_seed_out_of_range_is_named_as_given(
    checkpoint: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(checkpoint.parent)
    line = evaluate_fails([f"checkpoint={checkpoint}", "seed=-1"], capsys)
    assert line.endswith("seed=-1: must be a whole number in [0, 2**62), e.g. 0")
    assert "evaluator.seed" not in line


def test_split_follows_the_checkpoint(checkpoint: Path) -> None:
    """The split the run was trained with, unless given: with the group's own split_seed /
    holdout / num_samples, most of the eval images of a run trained on another split would be
    images it was trained on."""
    meta = json.loads((checkpoint / "meta.json").read_text())
    meta["data"] = "synthetic"
    meta["split"] = {
        "split_seed": 3,
        "holdout": 0.3,
        "num_samples": 256,
        "noise": 0.5,
        "input_shape": [1, 12, 12],
        "num_classes": 3,
    }
    (checkpoint / "meta.json").write_text(json.dumps(meta))
    ck = f"checkpoint={checkpoint}"
    recorded = [
        "data.split_seed=3",
        "data.holdout=0.3",
        "data.num_samples=256",
        "data.noise=0.5",
        "data.input_shape=[1, 12, 12]",
        "data.num_classes=3",
    ]
    assert data_from_checkpoint([ck]) == [ck, "data=synthetic", *recorded]
    assert data_from_checkpoint([ck, "data=synthetic"]) == [ck, *recorded, "data=synthetic"]
    given = [ck, "data.split_seed=5"]  # given settings stay (pre-flight checks them)
    assert data_from_checkpoint(given) == [ck, "data=synthetic", *recorded[1:], given[1]]
    assert data_from_checkpoint([ck, "data=digits"]) == [ck, "data=digits"]  # another data set
    # and they compose into the config the evaluation runs with
    composed: list = []
    preflight(config_dir(), "evaluate", data_from_checkpoint([ck]), composed.append)
    data = to_evaluate_config(composed[0]).data
    assert (data.name, data.split_seed, data.holdout, data.num_samples, data.noise) == (
        "synthetic",
        3,
        0.3,
        256,
        0.5,
    )
    assert (list(data.input_shape), data.num_classes) == ([1, 12, 12], 3)


def test_a_sweep_over_checkpoints_takes_their_common_split_or_is_refused(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``checkpoint=a,b`` skipped the recorded data and split: each member was evaluated on the
    group's default split, most of which a run trained with another split_seed had trained on."""
    runs = [tmp_path / "a", tmp_path / "b"]
    for run in runs:
        shutil.copytree(checkpoint, run)
        meta = json.loads((run / "meta.json").read_text())
        meta["split"] = {"split_seed": 3, "holdout": 0.3}
        (run / "meta.json").write_text(json.dumps(meta))
    sweep = ["-m", f"checkpoint={runs[0]},{runs[1]}"]
    assert data_from_checkpoint(sweep) == [*sweep, "data.split_seed=3", "data.holdout=0.3"]
    meta["split"]["split_seed"] = 4
    (runs[1] / "meta.json").write_text(json.dumps(meta))
    line = evaluate_fails(sweep, capsys)
    assert "these runs were trained on different data or splits" in line
    assert f"{runs[1]}: data.split_seed=4 data.holdout=0.3" in line
    assert not (tmp_path / "multirun").exists()


@pytest.mark.slow
def test_an_evaluation_sweep_can_be_summarized(checkpoint: Path, tmp_path: Path) -> None:
    """The sweep's last line says `robustai summarize <dir>`: its members are finished runs
    (report.json), not "incomplete" ones as when only metrics.json counted."""
    from robustai.cli.summarize import summarize

    sweep = tmp_path / "sweep"
    proc = robustai(
        "evaluate", "-m", f"checkpoint={checkpoint}", "evaluator=quick",
        "evaluator.eps=[0.05],[0.1]", "evaluator.samples=40", "evaluator.sanity.enabled=false",
        "evaluator.curve.enabled=false", "logger.tensorboard=false", "threads=1",
        f"hydra.sweep.dir={sweep}", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"robustai summarize {sweep}" in proc.stdout + proc.stderr
    summary = summarize(sweep)
    assert [m.status for m in summary.members] == ["ok", "ok"]
    for member, eps in zip(summary.members, ("0.05", "0.1"), strict=True):
        report = json.loads((member.folder / "report.json").read_text())
        assert member.objective == report["worst_case_acc"][eps]


def _sweep_args(checkpoint: Path, sweep: Path, *extra: str) -> list[str]:
    return [
        "evaluate", "-m", f"checkpoint={checkpoint}", "evaluator=quick",
        "evaluator.eps=[0.05],[0.1]", "evaluator.samples=20", "evaluator.sanity.enabled=false",
        "evaluator.curve.enabled=false", "logger=none", "threads=1", *extra,
        f"hydra.sweep.dir={sweep}",
    ]  # fmt: skip


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_an_evaluation_sweep_into_a_folder_of_training_runs_is_refused_untouched(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """It replaced the training runs' .hydra/ records and reports, and summarize then showed a
    training run's metrics as an evaluation of the checkpoint."""
    monkeypatch.chdir(tmp_path)
    sweep = tmp_path / "sweep"
    save_small_cnn(sweep / "0")  # a training sweep's member: weights and meta.json
    (sweep / "0" / ".hydra").mkdir()
    (sweep / "0" / ".hydra" / "overrides.yaml").write_text("- attack.eps=0.1\n")
    before = _files(sweep)
    line = evaluate_fails(_sweep_args(checkpoint, sweep)[1:], capsys)
    said = f"hydra.sweep.dir={sweep} holds training runs ({sweep / '0'}: weights.safetensors"
    assert said in line
    assert _files(sweep) == before
    # a run beside the members' folders is no member's: the sweep goes on, and leaves it be
    (sweep / "0").rename(sweep / "earlier")
    assert main(_sweep_args(checkpoint, sweep)) == 0
    assert {k: v for k, v in _files(sweep).items() if k.startswith("earlier")} == {
        k.replace("0/", "earlier/", 1): v for k, v in before.items()
    }
    assert (sweep / "1" / "report.json").is_file()


@pytest.mark.slow
def test_an_evaluation_sweep_run_again_starts_afresh_and_another_one_is_refused(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """The same sweep run again (after a failure, or an interruption) evaluates its members
    again: an earlier failure record or report is not this attempt's outcome. A sweep of other
    overrides there would mix two sweeps' members: refused."""
    from robustai.cli.summarize import summarize

    monkeypatch.chdir(tmp_path)
    sweep = tmp_path / "sweep"
    assert main(_sweep_args(checkpoint, sweep)) == 0
    (sweep / "0" / "status.json").write_text('{"status": "failed", "error": "earlier attempt"}')
    (sweep / "1" / "report.json").write_text("{}")  # an earlier attempt's, to be replaced
    assert main(_sweep_args(checkpoint, sweep)) == 0
    assert not (sweep / "0" / "status.json").exists()
    assert [m.status for m in summarize(sweep).members] == ["ok", "ok"]
    report = json.loads((sweep / "1" / "report.json").read_text())
    assert "worst_case_acc" in report
    # summarize's seconds column: the evaluation's wall time, as a training run's, not the
    # attack suite's alone
    assert report["wall_seconds"] > report["eval_seconds"] > 0
    assert summarize(sweep).members[1].flat["wall_seconds"] == report["wall_seconds"]
    before = _files(sweep)
    line = evaluate_fails(_sweep_args(checkpoint, sweep, "evaluator.samples=10")[1:], capsys)
    assert f"hydra.sweep.dir={sweep} holds the evaluations of another sweep: member 0" in line
    assert _files(sweep) == before


def test_a_crashed_evaluation_sweep_member_is_recorded_and_the_sweep_goes_on(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """A member that crashed (a bug, out of memory) ended the sweep in a traceback, with no
    status.json; the README promises a record and that the sweep goes on, as for training."""
    import robustai.cli.evaluate as evaluate
    from robustai.cli.summarize import summarize

    def crash(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("out of memory, say")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(evaluate, "run_evaluate", crash)
    sweep = tmp_path / "sweep"
    with pytest.raises(SystemExit) as exc:
        main(_sweep_args(checkpoint, sweep))
    assert exc.value.code == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith("robustai evaluate: error: 2 of 2 sweep members failed (0, 1);")
    assert [(m.status, m.error) for m in summarize(sweep).members] == [
        ("failed", "out of memory, say")
    ] * 2


def test_ctrl_c_is_one_line_not_a_traceback(
    checkpoint: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C during the attacks ended in a KeyboardInterrupt traceback: now one line, 130."""
    import robustai.cli.evaluate as evaluate

    def ctrl_c(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.chdir(checkpoint.parent)
    monkeypatch.setattr(evaluate, "run_evaluation", ctrl_c)
    with pytest.raises(SystemExit) as exc:
        try:
            main(["evaluate", f"checkpoint={checkpoint}", "evaluator=quick", "logger=none"])
        except KeyboardInterrupt:
            pytest.fail("Ctrl-C escaped the command: a KeyboardInterrupt traceback")
    assert exc.value.code == 130
    line = one_line(capsys.readouterr().err)
    assert line.startswith("robustai evaluate: error: interrupted: the evaluation in ")
    assert line.endswith(" did not finish; run the command again")


def test_an_evaluation_into_a_finished_runs_folder_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """hydra.run.dir=<the training run> would replace the run's .hydra/ record and report;
    refused as robustai train refuses it, before anything is written."""
    run = save_small_cnn(tmp_path / "run", extra={"data": "digits"})
    (run / "metrics.json").write_text("{}")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    monkeypatch.chdir(tmp_path)
    line = evaluate_fails([f"checkpoint={run}", f"hydra.run.dir={run}"], capsys)
    assert f"hydra.run.dir={run} holds a run or evaluation (weights.safetensors," in line
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    # A training run interrupted before it wrote weights: its checkpoints are what it resumes
    # from, and its folder took the evaluation's .hydra/ record, log and events.
    stopped = tmp_path / "stopped"
    (stopped / "checkpoints").mkdir(parents=True)
    (stopped / "checkpoints" / "epoch-0001-step-000035.json").write_text("{}")
    line = evaluate_fails([f"checkpoint={run}", f"hydra.run.dir={stopped}"], capsys)
    assert f"hydra.run.dir={stopped} holds a run or evaluation (checkpoints/)" in line
    assert [p.name for p in stopped.iterdir()] == ["checkpoints"]
    # ... and that checkpoints folder itself
    folder = stopped / "checkpoints"
    line = evaluate_fails([f"checkpoint={run}", f"hydra.run.dir={folder}"], capsys)
    assert f"hydra.run.dir={folder} holds a run or evaluation (epoch-0001-step-000035.json)" in line
    assert [p.name for p in folder.iterdir()] == ["epoch-0001-step-000035.json"]


@pytest.mark.parametrize(
    "untrained", [["attack=none"], ["attack=pgd", "trainer.objective=standard"]], ids=" ".join
)
def test_a_model_trained_without_an_attack_records_no_threat_model(
    tmp_path: Path, untrained: list[str]
) -> None:
    """It was not trained for one: meta.json said linf at data.eps, so evaluate's log never
    said it chose the eps, and an L2 suite was refused as if the model had an L-inf one (it now
    is for want of an L2 radius: data.eps is an L-inf budget); and with objective=standard
    meta.json and the report named the attack it was not trained with."""
    run = tmp_path / "run"
    proc = robustai(
        "train", "data=synthetic", *untrained, "trainer.epochs=1", "evaluator.attacks=[]",
        "evaluator.sanity.enabled=false", "evaluator.curve.enabled=false", "logger=none",
        f"hydra.run.dir={run}", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    meta = json.loads((run / "meta.json").read_text())
    assert meta["threat_model"] is None and meta["attack"] == "none"
    assert "(trained with none)" in (run / "report.md").read_text().splitlines()[0]
    proc = robustai(
        "evaluate", f"checkpoint={run}", "evaluator.samples=16",
        "evaluator.sanity.enabled=false", "evaluator.curve.enabled=false", "logger=none",
        f"hydra.run.dir={tmp_path / 'eval'}", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = (tmp_path / "eval" / "evaluate.log").read_text()
    assert "records no threat model with eps > 0; evaluating at data.eps=0.1" in log
    proc = robustai(
        "evaluate", f"checkpoint={run}", "evaluator=quick_l2", "evaluator.samples=16",
        "evaluator.sanity.enabled=false", "evaluator.curve.enabled=false", "logger=none",
        f"hydra.run.dir={tmp_path / 'eval_l2'}", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2 and "the checkpoint records no threat model" in proc.stderr
    assert "linf" not in proc.stderr  # not refused as if the model had an L-inf threat model


def _split_checkpoint(tmp_path: Path, split: dict) -> Path:
    extra = {"data": "digits", "threat_model": {"norm": "linf", "eps": 0.2}, "split": split}
    return save_small_cnn(tmp_path / "ckpt", extra=extra)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("data.split_seed=1", "data.split_seed=1: the model was trained with data.split_seed=0"),
        ("data.holdout=0.5", "data.holdout=0.5: the model was trained with data.holdout=0.2"),
    ],
)
def test_a_split_setting_other_than_the_runs_is_refused(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    given: str,
    message: str,
) -> None:
    """Given on the command line, another split's eval images were mostly training images:
    clean accuracy read 1.000 against 0.992 on the run's own split, with no word."""
    run = _split_checkpoint(tmp_path, {"split_seed": 0, "holdout": 0.2})
    monkeypatch.chdir(tmp_path)
    line = evaluate_fails([f"checkpoint={run}", given, f"hydra.run.dir={tmp_path / 'e'}"], capsys)
    assert message in line and "leave data." in line
    assert not (tmp_path / "e").exists()


def test_a_flag_after_the_overrides_keeps_the_recorded_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The recorded split settings were appended after the user's arguments, so a trailing
    flag (-m, --cfg job) left them to argparse: "unrecognized arguments"."""
    run = _split_checkpoint(tmp_path, {"split_seed": 3, "holdout": 0.25})
    monkeypatch.chdir(tmp_path)
    args = data_from_checkpoint([f"checkpoint={run}", "evaluator=quick", "--cfg", "job"])
    assert args[-2:] == ["--cfg", "job"] and "data.split_seed=3" in args
    assert main(["evaluate", f"checkpoint={run}", "--cfg", "job"]) == 0
    printed = capsys.readouterr().out
    assert "split_seed: 3" in printed and "holdout: 0.25" in printed


def test_a_recorded_split_value_that_is_not_a_number_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """It became an override, which Hydra resolves: an edited meta.json could make robustai
    read the user's environment variables (${oc.env:...})."""
    monkeypatch.setenv("ROBUSTAI_TEST_VARIABLE", "TOKVAL_1234567")
    run = _split_checkpoint(tmp_path, {"split_seed": "${oc.env:ROBUSTAI_TEST_VARIABLE}"})
    monkeypatch.chdir(tmp_path)
    line = evaluate_fails([f"checkpoint={run}"], capsys)
    assert "meta.json's split.split_seed is not a number" in line
    assert "TOKVAL" not in line


def _idx(path: Path, header: bytes, payload: bytes) -> Path:
    path.write_bytes(header + payload)
    return path


def test_idx_files_other_than_the_runs_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """IDX files can hold any data set under MNIST's names: meta.json records their content,
    and evaluate on other files (0.171 instead of 0.895, silently) is refused; the same content
    gzipped is the same data."""
    import gzip

    from robustai.cli.pipeline import idx_files

    g = torch.Generator().manual_seed(0)
    pixels = bytes(torch.randint(0, 256, (40 * 64,), generator=g, dtype=torch.uint8).tolist())
    labels = bytes([i % 10 for i in range(40)])
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    theirs.mkdir()
    img_header = bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in (40, 8, 8))
    lab_header = bytes([0, 0, 8, 1]) + (40).to_bytes(4, "big")
    images = _idx(ours / "images", img_header, pixels)
    lab = _idx(ours / "labels", lab_header, labels)
    extra = {"data": "idx", "split": {"split_seed": 0, "holdout": 0.2}}
    run = save_small_cnn(tmp_path / "ckpt", extra={**extra, "data_files": idx_files(images, lab)})
    _idx(theirs / "images", img_header, pixels)
    _idx(theirs / "labels", lab_header, bytes([(i + 1) % 10 for i in range(40)]))
    monkeypatch.chdir(tmp_path)
    base = [f"checkpoint={run}", "evaluator=quick", "evaluator.sanity.enabled=false",
            "evaluator.curve.enabled=false", "logger=none"]  # fmt: skip
    line = evaluate_fails(
        [*base, f"data.images={theirs / 'images'}", f"data.labels={theirs / 'labels'}"], capsys
    )
    assert f"data.labels={theirs / 'labels'} holds other content than the file" in line
    assert str(lab) in line
    (theirs / "labels.gz").write_bytes(gzip.compress(lab_header + labels))
    main(["evaluate", *base, f"data.images={images}", f"data.labels={theirs / 'labels.gz'}",
          f"hydra.run.dir={tmp_path / 'e'}"])  # fmt: skip
    assert (tmp_path / "e" / "report.json").exists()


def _idx_pair(folder: Path, labels: bytes, gz: bool = False) -> tuple[Path, Path]:
    """The files data=idx reads by default in ``folder``: 40 random 8x8 images, ``labels``."""
    import gzip

    g = torch.Generator().manual_seed(0)
    pixels = bytes(torch.randint(0, 256, (40 * 64,), generator=g, dtype=torch.uint8).tolist())
    folder.mkdir(parents=True, exist_ok=True)
    img = bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in (40, 8, 8)) + pixels
    lab = bytes([0, 0, 8, 1]) + (40).to_bytes(4, "big") + labels
    suffix, pack = (".gz", gzip.compress) if gz else ("", bytes)
    return (
        _idx(folder / f"t10k-images-idx3-ubyte{suffix}", b"", pack(img)),
        _idx(folder / f"t10k-labels-idx1-ubyte{suffix}", b"", pack(lab)),
    )


def test_idx_files_given_as_null_are_those_in_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """data.images=null reads root's files: the run trained and evaluated, then failed to save
    ("IDX file not found: None"), losing its work; and evaluate with null compared nothing, so
    other files (here: other labels) were evaluated on without a word."""
    ours = _idx_pair(tmp_path / "ours", bytes([i % 10 for i in range(40)]))
    _idx_pair(tmp_path / "theirs", bytes([(i + 1) % 10 for i in range(40)]))
    nulls = ["data.images=null", "data.labels=null"]
    quick = ["evaluator=quick", "evaluator.sanity.enabled=false", "evaluator.curve.enabled=false",
             "logger=none"]  # fmt: skip
    run = tmp_path / "run"
    done = robustai(
        "train", "data=idx", f"data.root={tmp_path / 'ours'}", *nulls, *quick,
        "trainer.epochs=1", "trainer.watchdog.enabled=false", f"hydra.run.dir={run}",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    files = json.loads((run / "meta.json").read_text())["data_files"]
    assert (files["images"]["path"], files["labels"]["path"]) == (str(ours[0]), str(ours[1]))
    line = evaluate_fails(
        [f"checkpoint={run}", f"data.root={tmp_path / 'theirs'}", *nulls, *quick], capsys
    )
    assert "data.labels=" in line and "holds other content than the file" in line


def test_a_sweep_over_runs_on_the_same_idx_content_is_not_refused(tmp_path: Path) -> None:
    """Runs that read the same content by other paths (gzipped and not, or a path with ..)
    were refused as "trained on different data or splits"."""
    from robustai.cli.pipeline import idx_files

    labels = bytes([i % 10 for i in range(40)])
    plain, gz = _idx_pair(tmp_path / "plain", labels), _idx_pair(tmp_path / "gz", labels, True)
    extra = {"data": "idx", "split": {"split_seed": 0, "holdout": 0.2}}
    a = save_small_cnn(tmp_path / "a", extra={**extra, "data_files": idx_files(*plain)})
    b = save_small_cnn(tmp_path / "b", extra={**extra, "data_files": idx_files(*gz)})
    args = data_from_checkpoint([f"checkpoint={a},{b}"])
    assert f"data.images='{plain[0]}'" in args  # the first run's files, the same content
    other = _idx_pair(tmp_path / "other", bytes([(i + 1) % 10 for i in range(40)]))
    c = save_small_cnn(tmp_path / "c", extra={**extra, "data_files": idx_files(*other)})
    with pytest.raises(ConfigError, match="trained on different data or splits"):
        data_from_checkpoint([f"checkpoint={a},{c}"])


def test_an_idx_run_is_evaluated_on_the_files_it_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without data.root, evaluate read the group's default folder (data/mnist under the
    working folder: "IDX file not found") although meta.json names the run's files."""
    from robustai.cli.pipeline import idx_files

    g = torch.Generator().manual_seed(0)
    pixels = bytes(torch.randint(0, 256, (40 * 64,), generator=g, dtype=torch.uint8).tolist())
    header = bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in (40, 8, 8))
    (tmp_path / "mine").mkdir()
    images = _idx(tmp_path / "mine" / "images", header, pixels)
    labels = _idx(
        tmp_path / "mine" / "labels",
        bytes([0, 0, 8, 1]) + (40).to_bytes(4, "big"),
        bytes([i % 10 for i in range(40)]),
    )
    extra = {"data": "idx", "split": {"split_seed": 0, "holdout": 0.2}}
    run = save_small_cnn(tmp_path / "ck", extra={**extra, "data_files": idx_files(images, labels)})
    args = data_from_checkpoint([f"checkpoint={run}"])
    assert f"data.images='{images}'" in args and f"data.labels='{labels}'" in args
    # a data path given on the command line is the user's choice
    assert not any("data.images" in a for a in data_from_checkpoint([f"checkpoint={run}",
                                                                     "data.root=x"]))  # fmt: skip
    monkeypatch.chdir(tmp_path)
    quick = ["evaluator=quick", "evaluator.sanity.enabled=false", "evaluator.curve.enabled=false"]
    out = f"hydra.run.dir={tmp_path / 'e'}"
    main(["evaluate", f"checkpoint={run}", *quick, "logger=none", out])
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    assert report["samples"] == 10  # the run's eval split: 0.2 of 4 images per class, rounded up


def test_meta_json_names_the_idx_file_read_not_a_missing_gz_name(tmp_path: Path) -> None:
    """data.images names MNIST's .gz files; where only the gunzipped ones are there, the run
    reads those, and meta.json (and evaluate's messages, which quote it) must name them."""
    from robustai.cli.pipeline import idx_files

    header = bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in (4, 2, 2))
    images = _idx(tmp_path / "t10k-images-idx3-ubyte", header, bytes(range(16)))
    labels = _idx(tmp_path / "t10k-labels-idx1-ubyte", bytes([0, 0, 8, 1, 0, 0, 0, 4]), bytes(4))
    files = idx_files(f"{images}.gz", f"{labels}.gz")
    assert (files["images"]["path"], files["labels"]["path"]) == (str(images), str(labels))


def test_mnist_whose_test_images_the_model_was_trained_on_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model trained with data=idx on part of MNIST's test images (the mnist_idx_fgsm_rs
    recipe) and evaluated with data=mnist got a warning only, and a report on mostly its own
    training images. Trained on other files (MNIST's training images), it may be."""
    from robustai.cli.pipeline import idx_files

    header = bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in (4, 2, 2))
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    test_images = _idx(raw / "t10k-images-idx3-ubyte", header, bytes(range(16)))
    labels = _idx(tmp_path / "labels", bytes([0, 0, 8, 1]) + (4).to_bytes(4, "big"), bytes(4))
    other = _idx(tmp_path / "train-images", header, bytes(range(1, 17)))
    monkeypatch.chdir(tmp_path)
    args = ["data=mnist", f"data.root={tmp_path / 'data'}", f"hydra.run.dir={tmp_path / 'e'}"]
    extra = {"data": "idx", "split": {"split_seed": 0, "holdout": 0.2}}
    files = idx_files(test_images, labels)
    run = save_small_cnn(tmp_path / "a", extra={**extra, "data_files": files})
    line = evaluate_fails([f"checkpoint={run}", *args], capsys)
    assert f"data=mnist: its test images ({test_images}) are the file the model was" in line
    run = save_small_cnn(tmp_path / "b", extra={**extra, "data_files": idx_files(other, labels)})
    from robustai.cli.evaluate import check_evaluate_config

    preflight(config_dir(), "evaluate", [f"checkpoint={run}", *args], check_evaluate_config)


@pytest.mark.parametrize(
    "record",
    [
        {"method": "dpsgd"},
        {"method": "laplace", "where": "input"},
        {"method": "gaussian_noise"},
        {"method": "Laplace", "where": "output", "sensitivity": 1.0, "epsilon": 1.0},
    ],
)
def test_a_damaged_privacy_record_is_refused_before_the_evaluation(
    checkpoint: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    record: dict,
) -> None:
    """The report's privacy statement read it only after the whole evaluation: a KeyError
    traceback, exit 1, and no report."""
    meta = json.loads((checkpoint / "meta.json").read_text())
    (checkpoint / "meta.json").write_text(json.dumps({**meta, "privacy": record}))
    monkeypatch.chdir(tmp_path)
    line = evaluate_fails([f"checkpoint={checkpoint}", f"hydra.run.dir={tmp_path / 'e'}"], capsys)
    assert "meta.json's privacy record is incomplete or damaged" in line
    assert not (tmp_path / "e").exists()


def test_a_query_mechanism_is_announced_once(checkpoint: Path, tmp_path: Path) -> None:
    """The pre-flight loaded the model with its mechanism too, so the warning that the noise
    protects queries, not the training data, came twice."""
    from robustai.privacy.plans import MechanismPrivacy

    plan = MechanismPrivacy("laplace", where="output", sensitivity=1.0, epsilon=64.0)
    meta = json.loads((checkpoint / "meta.json").read_text())
    (checkpoint / "meta.json").write_text(json.dumps({**meta, "privacy": plan.describe()}))
    args = [f"checkpoint={checkpoint}", f"hydra.run.dir={tmp_path / 'e'}", "evaluator=quick"]
    args += ["evaluator.attacks=[]", "evaluator.sanity.enabled=false"]
    args += ["evaluator.curve.enabled=false", "logger.tensorboard=false"]
    done = robustai("evaluate", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    logged = done.stdout + done.stderr
    assert logged.count("protects each query's output, not the training data") == 1


def test_a_meta_json_nested_too_deeply_is_refused(checkpoint: Path) -> None:
    """json's parser runs out of stack: a RecursionError traceback, exit 1."""
    from robustai.models import load_model

    (checkpoint / "meta.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(CheckpointError, match="nested too deeply"):
        load_model(checkpoint)


def test_every_form_of_the_checkpoint_path_gets_its_data_and_split(tmp_path: Path) -> None:
    """Only a bare checkpoint=<path> got the run's data set and split: quoted, escaped (a
    space) or ++checkpoint= fell back to digits with split_seed 0."""
    run = save_small_cnn(
        tmp_path / "my runs" / "ck",
        extra={"data": "synthetic", "split": {"split_seed": 3, "holdout": 0.3}},
    )
    for given in (
        f"checkpoint='{run}'",
        "checkpoint=" + str(run).replace(" ", "\\ "),
        f"++checkpoint='{run}'",
        f"checkpoint='{run}','{run}'",  # a sweep over quoted paths
    ):
        args = data_from_checkpoint([given, "--cfg", "job"])
        assert args[:4] == [given, "data=synthetic", "data.split_seed=3", "data.holdout=0.3"], given


def test_an_evaluation_reports_the_models_dp_accounting_as_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """report.json had the privacy sentence only, so `robustai summarize` of an evaluate sweep
    over DP-SGD checkpoints showed no epsilon, though metrics.json of the same runs does."""
    from robustai.cli.summarize import summarize

    dp = {
        "method": "dpsgd", "epsilon": 1.89, "delta": 1e-5, "noise_multiplier": 1.1,
        "max_grad_norm": 1.0, "accountant": "prv", "sample_rate": 0.04, "steps": 50,
        "num_samples": 1438,
    }  # fmt: skip
    run = save_small_cnn(tmp_path / "ck", extra={"data": "digits", "privacy": dp})
    monkeypatch.chdir(tmp_path)
    sweep = tmp_path / "sweep"
    main(["evaluate", "-m", f"checkpoint={run}", "evaluator=quick", "evaluator.samples=16",
          "evaluator.sanity.enabled=false", "evaluator.curve.enabled=false", "logger=none",
          f"hydra.sweep.dir={sweep}"])  # fmt: skip
    report = json.loads((sweep / "0" / "report.json").read_text())
    assert report["privacy"]["epsilon"] == 1.89 and "query_privacy" not in report
    (member,) = summarize(sweep).members
    assert member.flat["privacy/epsilon"] == 1.89


class _Killed(BaseException):
    """What SIGTERM raises in this test when robustai installs no handler of its own."""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_evaluation_is_one_line_and_leaves_no_report(
    signum: int,
    checkpoint: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Ctrl-C or a scheduler's SIGTERM while the attacks run: status 128 + signal, one line
    saying the evaluation did not finish, no report that could be read as its result, and the
    caller's SIGTERM handler back in place."""
    import robustai.cli.evaluate as evaluate

    def interrupted(*args, **kwargs):  # type: ignore[no-untyped-def]
        signal.raise_signal(signum)

    def killed(signum, frame):  # type: ignore[no-untyped-def]
        raise _Killed  # stands in for the default action, which would end pytest itself

    monkeypatch.setattr(evaluate, "run_evaluation", interrupted)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "e"
    previous = signal.signal(signal.SIGTERM, killed)
    try:
        with pytest.raises(SystemExit) as stopped:
            try:
                main(["evaluate", f"checkpoint={checkpoint}", "logger=none",
                      f"hydra.run.dir={out}"])  # fmt: skip
            except _Killed:
                pytest.fail("SIGTERM during the evaluation was not handled")
        assert signal.getsignal(signal.SIGTERM) is killed
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert stopped.value.code == 128 + signum
    assert one_line(capsys.readouterr().err) == (
        f"robustai evaluate: error: interrupted: the evaluation in {out} did not finish;"
        " run the command again"
    )
    assert not (out / "report.json").exists() and not (out / "report.md").exists()


def test_an_evaluation_without_attacks_logs_no_nan_worst_case(
    checkpoint: Path, tmp_path: Path
) -> None:
    """With evaluator.attacks=[] no attack tested a sample, so the worst case is NaN (report:
    "n/a"): TensorBoard got a NaN point, which a training run's log leaves out."""
    out = tmp_path / "e"
    args = [f"checkpoint={checkpoint}", f"hydra.run.dir={out}", "evaluator.attacks=[]"]
    args += ["evaluator.sanity.enabled=false", "evaluator.curve.enabled=false"]
    done = robustai("evaluate", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    acc = EventAccumulator(str(out), size_guidance={"scalars": 0})
    acc.Reload()
    scalars = acc.Tags()["scalars"]
    assert "eval/clean_acc" in scalars
    assert not [t for t in scalars if t.startswith("eval/worst_case_acc")]


def test_an_evaluation_lands_in_its_models_experiment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dashboard grants are per experiment (the first folder under experiments/): in one shared
    ``evaluate`` experiment, a viewer granted only that saw every model's evaluation (reports,
    adversarial images, privacy statements)."""
    monkeypatch.setenv("ROBUSTAI_EXPERIMENTS_DIR", "exp")
    extra = {"data": "digits", "threat_model": {"norm": "linf", "eps": 0.2}}
    run = save_small_cnn(tmp_path / "exp" / "secret_b" / "2026-01-01" / "00-00-00", extra=extra)
    proc = robustai(
        "evaluate", "checkpoint=exp/secret_b/2026-01-01/00-00-00", "evaluator=quick",
        "evaluator.attacks=[{name:fgsm}]", "evaluator.samples=20",
        "evaluator.sanity.enabled=false", "evaluator.curve.enabled=false", "threads=1",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (report,) = (tmp_path / "exp").rglob("report.md")
    assert report.relative_to(tmp_path / "exp").parts[:2] == ("secret_b", "evaluate")
    acc = EventAccumulator(str(report.parent), size_guidance={"scalars": 0})
    acc.Reload()
    worst = json.loads(report.with_name("report.json").read_text())["worst_case_acc"]["0.2"]
    # as a training run logs it: the first eps's worst case under one name (a sweep's column)
    assert acc.Scalars("eval/worst_case_acc")[0].value == pytest.approx(worst)
    run_name = report.parent.relative_to(tmp_path / "exp").as_posix()  # TensorBoard's run name
    assert experiment_of(run_name) == "secret_b"  # what the dashboard checks grants against
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == ["secret_b"]
    assert run.is_dir()
    # with a flag after the overrides (argparse took the added name= for an unknown argument)
    shown = robustai(
        "evaluate", "checkpoint=exp/secret_b/2026-01-01/00-00-00", "--cfg", "job", cwd=tmp_path
    )
    assert shown.returncode == 0, shown.stderr[-3000:]
    assert "name: secret_b/evaluate" in shown.stdout


@pytest.mark.parametrize(
    ("given", "name"),
    [
        (["checkpoint=exp/secret_b/d/t"], "secret_b/evaluate"),
        (["checkpoint=exp/secret_b/d/t/weights.safetensors"], "secret_b/evaluate"),
        (["checkpoint=./exp/../exp/secret_b/d/t"], "secret_b/evaluate"),
        (["checkpoint=exp/multirun/d/t/0"], "multirun/evaluate"),  # where the member's grant is
        (["paths.experiments_dir=runs", "checkpoint=runs/mine/d/t"], "mine/evaluate"),
        (["checkpoint=elsewhere/d/t"], None),  # outside experiments/: the default, evaluate
        (["checkpoint=exp/secret_b"], None),  # not a run of the experiment: refused later
        (["checkpoint=exp/secret_b/d/t", "name=mine"], None),  # the user's choice stands
        (["checkpoint=exp/secret_b/d/t", "hydra.run.dir=out"], None),
        (["-m", "checkpoint=exp/a/d/t,exp/b/d/t"], None),  # a sweep lands under multirun
        (["checkpoint=exp/a b/d/t"], None),  # a name Hydra would need quoted
    ],
)
def test_the_name_of_an_evaluation_follows_its_checkpoint(
    given: list[str], name: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from robustai.cli.evaluate import name_from_checkpoint

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ROBUSTAI_EXPERIMENTS_DIR", "exp")
    got = name_from_checkpoint([*given, "--cfg", "job"])
    assert got[-2:] == ["--cfg", "job"]  # a trailing flag stays last (argparse reads it)
    assert [a for a in got if a not in given][:-2] == ([f"name={name}"] if name else [])


def test_a_dp_run_records_its_idx_files_by_path_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """meta.json, which travels with the weights, held a sha256 of the training files beside
    "the weights ... are differentially private": a function of every training image, with
    which whoever knew all of them but one could confirm a guess at that one."""
    ours = _idx_pair(tmp_path / "ours", bytes([i % 10 for i in range(40)]))
    _idx_pair(tmp_path / "theirs", bytes([(i + 1) % 10 for i in range(40)]))
    quick = ["evaluator=quick", "evaluator.sanity.enabled=false", "evaluator.curve.enabled=false",
             "logger=none", "threads=1"]  # fmt: skip
    run = tmp_path / "run"
    done = robustai(
        "train", "data=idx", f"data.root={tmp_path / 'ours'}", "privacy=input_laplace",
        "attack=none", *quick[:-1], "trainer.epochs=1", "trainer.watchdog.enabled=false",
        f"hydra.run.dir={run}", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((run / "metrics.json").read_text())["privacy"]["epsilon"] > 0
    meta = json.loads((run / "meta.json").read_text())
    assert meta["data_files"] == {
        "images": {"path": str(ours[0])},
        "labels": {"path": str(ours[1])},
    }
    # its own files (meta.json's paths): evaluated without a word about them
    same = robustai("evaluate", f"checkpoint={run}", *quick, f"hydra.run.dir={tmp_path / 'e1'}",
                    cwd=tmp_path)  # fmt: skip
    assert same.returncode == 0, same.stderr[-2000:]
    assert "cannot be checked" not in caplog.text
    # other files: evaluated, with a warning (from the pre-flight) that their content could not
    # be compared
    other = robustai(
        "evaluate", f"checkpoint={run}", f"data.root={tmp_path / 'theirs'}", *quick,
        f"hydra.run.dir={tmp_path / 'e2'}", cwd=tmp_path,
    )  # fmt: skip
    assert other.returncode == 0, other.stderr[-2000:]
    assert "meta.json records it by path alone" in caplog.text
    assert "whether this file holds the same images cannot be checked" in caplog.text
