"""Sweeps end to end: a grid, an Optuna search, a failing member, the submitit launcher; then
`robustai summarize` and TensorBoard's HParams backend over the sweep folder.

The sweeps run in-process through ``robustai.cli.main.main`` (the same code path as the
command, without a second interpreter start-up); submitit starts its own processes anyway.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from inprocess import robustai as in_process
from omegaconf import OmegaConf

from robustai.cli.main import main
from robustai.cli.sweep_status import snapshot, tally

# One member trains in well under a second: 4 epochs on 192 synthetic 8x8 images, one thread.
TINY = [
    "data=synthetic",
    "data.num_samples=256",
    "trainer.epochs=4",
    "trainer.threads=1",
    "trainer.watchdog.samples=32",
    "logger.image_grid=0",
]


def robustai(*args: str) -> int:
    """Run the command in-process; its exit status."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["robustai", *args])
        try:
            return main(list(args))
        except SystemExit as e:
            return int(e.code or 0)


def members(sweep: Path) -> list[Path]:
    return sorted((p for p in sweep.iterdir() if (p / ".hydra").is_dir()), key=lambda p: p.name)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A 2x2 grid sweep (training eps x learning rate), summarized."""
    tmp = tmp_path_factory.mktemp("grid")
    sweep = tmp / "sweep"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)
        code = robustai(
            "train",
            "-m",
            *TINY,
            "attack.eps=0.05,0.1",
            "trainer.lr=0.05,0.2",
            f"hydra.sweep.dir={sweep}",
        )
        assert code == 0
        assert robustai("summarize", str(sweep)) == 0
    yield sweep


@pytest.mark.slow
def test_grid_sweep_writes_a_run_folder_per_member(grid: Path) -> None:
    runs = members(grid)
    assert [p.name for p in runs] == ["0", "1", "2", "3"]
    for run in runs:
        assert {"metrics.json", "weights.safetensors", "meta.json"} <= {
            p.name for p in run.iterdir()
        }
        assert not (run / "status.json").exists()
    overrides = {
        tuple(o for o in OmegaConf.load(run / ".hydra" / "overrides.yaml") if "=" in o)[-2:]
        for run in runs
    }
    assert overrides == {
        (f"attack.eps={e}", f"trainer.lr={lr}") for e in ("0.05", "0.1") for lr in ("0.05", "0.2")
    }


@pytest.mark.slow
def test_summary_rows_equal_each_members_metrics(grid: Path) -> None:
    rows = read_csv(grid / "summary.csv")
    assert len(rows) == 4
    objective = "objective (worst_case_acc)"
    values = [float(r[objective]) for r in rows]
    assert values == sorted(values, reverse=True)  # best first
    for row in rows:
        run = grid / row["member"]
        m = json.loads((run / "metrics.json").read_text())
        overrides = OmegaConf.load(run / ".hydra" / "overrides.yaml")
        assert f"attack.eps={row['attack.eps']}" in overrides
        assert f"trainer.lr={row['trainer.lr']}" in overrides
        assert float(row["clean_acc"]) == m["clean_acc"]
        for key, acc in m["robust_acc"].items():
            assert float(row[f"robust_acc/{key}"]) == acc
        for eps, acc in m["worst_case_acc"].items():
            assert float(row[f"worst_case_acc/{eps}"]) == acc
        assert float(row[objective]) == next(iter(m["worst_case_acc"].values()))
        assert float(row["seconds"]) == m["wall_seconds"]
        assert row["status"] == "ok"
    # Members differ (the table is not four copies of one run).
    assert len({r["clean_acc"] for r in rows}) > 1
    md = (grid / "summary.md").read_text()
    table = [ln for ln in md.splitlines() if ln.startswith("| ") and "---" not in ln]
    assert len(table) == 5  # header + 4 members
    assert "best member: " + rows[0]["member"] in md


@pytest.mark.slow
def test_pareto_plot_is_a_png(grid: Path) -> None:
    png = grid / "pareto.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    height, width, _ = matplotlib.image.imread(png).shape
    assert width > 300 and height > 200
    front = [r["member"] for r in read_csv(grid / "summary.csv") if r["pareto"] == "true"]
    assert front  # some member is always on the front


@pytest.mark.slow
def test_hparams_dashboard_lists_every_member(grid: Path) -> None:
    """TensorBoard's own HParams backend, reading the sweep folder as the dashboard would."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import (
        api_pb2,
        backend_context,
        get_experiment,
        list_session_groups,
    )

    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(grid))
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, str(grid))
    tb = backend_context.Context(
        base_plugin.TBContext(data_provider=provider, multiplexer=mux, logdir=str(grid))
    )
    ctx = context.RequestContext()
    experiment = get_experiment.Handler(
        ctx, tb, "", api_pb2.GetExperimentRequest(include_metrics=True)
    ).run()
    hparam_names = {h.name for h in experiment.hparam_infos}
    assert {"attack.eps", "trainer.lr", "data.name", "model.name", "trainer.epochs"} <= hparam_names
    metric_tags = {m.name.tag for m in experiment.metric_infos}
    assert {
        "eval/clean_acc",
        "eval/worst_case_acc/0.05",
        "eval/robust_acc/pgd20@0.1",
    } <= metric_tags

    request = api_pb2.ListSessionGroupsRequest(
        start_index=0,
        slice_size=100,
        allowed_statuses=[api_pb2.STATUS_SUCCESS],
        include_metrics=True,
    )
    groups = list_session_groups.Handler(ctx, tb, "", request).run().session_groups
    sessions = {s.name: g for g in groups for s in g.sessions}
    assert set(sessions) == {"0", "1", "2", "3"}
    for name, group in sessions.items():
        m = json.loads((grid / name / "metrics.json").read_text())
        overrides = dict(
            o.split("=", 1) for o in OmegaConf.load(grid / name / ".hydra" / "overrides.yaml")
        )
        hp = group.hparams
        assert hp["attack.eps"].number_value == pytest.approx(float(overrides["attack.eps"]))
        assert hp["trainer.lr"].number_value == pytest.approx(float(overrides["trainer.lr"]))
        # alpha is null in the config: the row shows the step FGSM-RS takes, 1.25 eps
        eps = float(overrides["attack.eps"])
        assert hp["attack.alpha"].number_value == pytest.approx(1.25 * eps)
        assert hp["data"].string_value == "synthetic"
        assert hp["trainer.epochs"].number_value == 4
        got = {v.name.tag: v.value for v in group.metric_values}
        assert got["eval/clean_acc"] == pytest.approx(m["clean_acc"])
        for key, acc in m["robust_acc"].items():
            assert got[f"eval/robust_acc/{key}"] == pytest.approx(acc)
        for eps, acc in m["worst_case_acc"].items():
            assert got[f"eval/worst_case_acc/{eps}"] == pytest.approx(acc)


@pytest.mark.slow
def test_optuna_search_reports_the_best_member(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    sweep = tmp_path / "search"
    code = robustai(
        "train",
        "hparams_search=digits_optuna",
        *TINY,
        "trainer.epochs=2",  # a fixed value takes trainer.epochs out of the search space
        "evaluator.sanity.enabled=false",  # the objective is worst_case_acc; no check read here
        "hydra.sweeper.n_trials=3",
        f"hydra.sweep.dir={sweep}",
    )
    assert code == 0
    runs = members(sweep)
    assert [p.name for p in runs] == ["0", "1", "2"]
    result = OmegaConf.to_container(OmegaConf.load(sweep / "optimization_results.yaml"))
    assert isinstance(result, dict)
    assert set(result["best_params"]) == {"trainer.lr", "attack.alpha", "attack.eps"}
    # Every trial returned its objective: the best value is the best member's metrics.json.
    worst = [
        next(iter(json.loads((p / "metrics.json").read_text())["worst_case_acc"].values()))
        for p in runs
    ]
    assert result["best_value"] == max(worst)

    capsys.readouterr()
    assert robustai("summarize", str(sweep)) == 0
    out = capsys.readouterr().out
    best = [
        p.name
        for p in runs
        if all(
            f"{k}={v}" in OmegaConf.load(p / ".hydra" / "overrides.yaml")
            for k, v in result["best_params"].items()
        )
    ]
    assert len(best) == 1
    assert f"Optuna best trial: member {best[0]} (" in out
    rows = read_csv(sweep / "summary.csv")
    assert float(rows[0]["objective (worst_case_acc)"]) == result["best_value"]
    assert "Optuna best trial: member" in (sweep / "summary.md").read_text()


@pytest.mark.slow
def test_an_optuna_study_in_a_sqlite_file_goes_on_in_the_next_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``hydra.sweeper.storage=sqlite:///...`` keeps the study in a real SQLite file: a second
    sweep with the same study name adds its trials to the first one's."""
    import optuna

    monkeypatch.chdir(tmp_path)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    search = [
        "train",
        "hparams_search=digits_optuna",
        *TINY,
        "trainer.epochs=4",
        "optimized_metric=clean_acc",
        "evaluator.sanity.enabled=false",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=tiny",
    ]
    assert robustai(*search, "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={tmp_path / 'a'}") == 0
    # A new sampler seed, or the seeded start-up trials would repeat the first sweep's.
    second = ["hydra.sweeper.n_trials=1", "hydra.sweeper.sampler.seed=1"]
    assert robustai(*search, *second, f"hydra.sweep.dir={tmp_path / 'b'}") == 0

    study = optuna.load_study(study_name="tiny", storage=storage)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    clean = [
        json.loads((p / "metrics.json").read_text())["clean_acc"]
        for p in members(tmp_path / "a") + members(tmp_path / "b")
    ]
    assert [t.value for t in study.trials] == clean
    # The second sweep reports the best of the whole study, trials of the first sweep included.
    result = OmegaConf.load(tmp_path / "b" / "optimization_results.yaml")
    assert result.best_value == max(clean)
    capsys.readouterr()
    assert robustai("summarize", str(tmp_path / "b")) == 0
    out = capsys.readouterr().out
    # The summary of the second sweep's folder names its member, or says the best is elsewhere.
    if clean[2] == max(clean):
        assert "Optuna best trial: member 0 (" in out
    else:
        assert "Optuna best trial: an earlier sweep's (no member matches)" in out


def test_failed_member_is_recorded_and_the_sweep_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A crash (not bad input) in the first member: recorded, the next member runs, exit 1."""
    import robustai.cli.pipeline as pipeline

    real = pipeline.make_optimizer

    def crash_at_lr_0_5(cfg, model):  # type: ignore[no-untyped-def]
        if cfg.trainer.lr == 0.5:
            raise RuntimeError("simulated crash")
        return real(cfg, model)

    monkeypatch.setattr(pipeline, "make_optimizer", crash_at_lr_0_5)
    monkeypatch.chdir(tmp_path)
    sweep = tmp_path / "sweep"
    capsys.readouterr()
    code = robustai(
        "train", "-m", *TINY, "trainer.epochs=1", "trainer.lr=0.5,0.05", f"hydra.sweep.dir={sweep}"
    )
    assert code == 1
    err_lines = [ln for ln in capsys.readouterr().err.splitlines() if "robustai train" in ln]
    assert len(err_lines) == 1
    assert "1 of 2 sweep members failed (0)" in err_lines[0]
    status = json.loads((sweep / "0" / "status.json").read_text())
    assert status["status"] == "failed"
    assert status["error_type"] == "RuntimeError" and status["error"] == "simulated crash"
    assert not (sweep / "0" / "metrics.json").exists()
    assert (sweep / "1" / "metrics.json").is_file()

    assert robustai("summarize", str(sweep)) == 0
    rows = read_csv(sweep / "summary.csv")
    assert [(r["member"], r["status"]) for r in rows] == [("1", "ok"), ("0", "failed")]
    assert rows[1]["error"] == "simulated crash" and rows[1]["clean_acc"] == ""


def test_failed_member_run_again_in_place_is_no_longer_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A member that crashed, then resumed or run again in its own folder and finished: its old
    status.json no longer marks it failed (it did, next to the new metrics.json)."""
    import robustai.cli.pipeline as pipeline

    real = pipeline.make_optimizer
    crash = [True]

    def crash_once(cfg, model):  # type: ignore[no-untyped-def]
        if crash.pop() if crash else False:
            raise RuntimeError("simulated crash")
        return real(cfg, model)

    monkeypatch.setattr(pipeline, "make_optimizer", crash_once)
    monkeypatch.chdir(tmp_path)
    sweep = tmp_path / "sweep"
    run = [*TINY, "trainer.epochs=1", "evaluator.sanity.enabled=false", "logger=none"]
    run.append("evaluator.curve.enabled=false")
    assert robustai("train", "-m", *run, "trainer.lr=0.05", f"hydra.sweep.dir={sweep}") == 1
    assert (sweep / "0" / "status.json").is_file()
    assert robustai("train", *run, "trainer.lr=0.05", f"hydra.run.dir={sweep / '0'}") == 0
    assert not (sweep / "0" / "status.json").exists()
    assert robustai("summarize", str(sweep), "--no-plot") == 0
    assert [(r["member"], r["status"]) for r in read_csv(sweep / "summary.csv")] == [("0", "ok")]


@pytest.mark.slow
def test_submitit_local_sweep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    sweep = tmp_path / "sweep"
    tiny = [a for a in TINY if not a.startswith("trainer.threads")]
    code = robustai(
        "train",
        "-m",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=5",
        "hydra.launcher.cpus_per_task=1",  # also sets each member's torch threads
        *tiny,
        "trainer.epochs=1",
        "attack.eps=0.05,0.1",
        f"hydra.sweep.dir={sweep}",
    )
    assert code == 0
    runs = members(sweep)
    assert [p.name for p in runs] == ["0", "1"]
    assert (sweep / ".submitit").is_dir()  # the members ran as submitit jobs
    for run, eps in zip(runs, ("0.05", "0.1"), strict=True):
        m = json.loads((run / "metrics.json").read_text())
        assert set(m["robust_acc"]) == {f"fgsm@{eps}", f"pgd20@{eps}"}
        assert 0.0 <= m["clean_acc"] <= 1.0 and not math.isnan(m["clean_acc"])
        assert "torch threads: 1 (hydra.launcher.cpus_per_task)" in (run / "train.log").read_text()


def test_a_single_run_keeps_its_threads_whatever_launcher_the_config_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A launcher's cpus_per_task sets the threads of the jobs it launches; a single run is
    launched by none (it took 8 threads from slurm_gpu on a 2-core machine)."""
    monkeypatch.chdir(tmp_path)
    tiny = [a for a in TINY if not a.startswith("trainer.threads")]
    run = tmp_path / "run"
    code = robustai(
        "train",
        "hydra/launcher=slurm_gpu",
        *tiny,
        "trainer.epochs=1",
        "evaluator.sanity.enabled=false",
        "evaluator.curve.enabled=false",
        f"hydra.run.dir={run}",
    )
    assert code == 0
    log = (run / "train.log").read_text()
    assert "run folder:" in log and "hydra.launcher.cpus_per_task" not in log


def test_an_interrupted_sweep_member_says_how_to_resume_the_sweep_or_it_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A member's overrides hold the sweep's (an Optuna search's hparams_search=...): pasted
    after ``trainer.resume`` they started a new sweep instead of finishing the member."""
    import robustai.cli.pipeline as pipeline

    def ctrl_c(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.chdir(tmp_path)
    sweep = tmp_path / "sweep"
    run = [*TINY, "trainer.epochs=1", "evaluator.sanity.enabled=false", "logger=none"]
    with monkeypatch.context() as mp:
        mp.setattr(pipeline, "run_evaluation", ctrl_c)
        code = robustai("train", "-m", *run, "trainer.seed=0,1", f"hydra.sweep.dir={sweep}")
    assert code == 130
    line = capsys.readouterr().err.strip().splitlines()[-1]
    member = sweep / "0"
    assert line == (
        "robustai train: error: interrupted; checkpoint epoch-0001.json is kept; resume the sweep"
        f" with the same command and hydra.sweep.dir={sweep}, or this member alone with: "
        f"robustai train trainer.resume={member} hydra.mode=RUN (and the overrides in "
        f"{member / '.hydra' / 'overrides.yaml'})"
    )
    # the member alone, as the line says: it finishes in its own folder
    overrides = OmegaConf.load(member / ".hydra" / "overrides.yaml")
    assert robustai("train", f"trainer.resume={member}", "hydra.mode=RUN", *overrides) == 0
    assert json.loads((member / "metrics.json").read_text())["seed"] == 0
    assert "resumed from" in (member / "train.log").read_text()
    assert not (sweep / "1").exists()


def test_an_interrupted_optuna_search_leaves_no_trial_running_in_its_study(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C in a trial ended the search before the sweeper told the study how its batch went:
    the trials stayed RUNNING in the database for good, even once the interrupted trial was
    resumed alone as its line says. Optuna's state for a trial that did not finish is FAIL."""
    import optuna

    import robustai.cli.pipeline as pipeline

    def ctrl_c(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.chdir(tmp_path)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    search = [
        "train",
        "hparams_search=digits_optuna",
        *TINY,
        "trainer.epochs=1",
        "evaluator.sanity.enabled=false",
        "logger=none",
        "optimized_metric=clean_acc",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=tiny",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_jobs=2",  # a batch of two: the second trial never starts
    ]
    with monkeypatch.context() as mp:
        mp.setattr(pipeline, "run_evaluation", ctrl_c)
        assert robustai(*search, f"hydra.sweep.dir={tmp_path / 'sweep'}") == 130
    assert "resume this trial with:" in capsys.readouterr().err
    study = optuna.load_study(study_name="tiny", storage=storage)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL] * 2
    # Optuna's own Study.ask again once the search is over
    assert optuna.study.Study.ask.__qualname__ == "Study.ask"


def test_a_sweep_into_a_folder_of_another_sweeps_runs_is_refused_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each member resumes the checkpoint in its folder: another config there would fail the
    member after Hydra had rewritten that run's .hydra/ record and marked it failed."""
    monkeypatch.chdir(tmp_path)
    sweep = tmp_path / "sweep"
    run = [*TINY, "trainer.epochs=1", "logger=none", "evaluator.sanity.enabled=false"]
    run += ["evaluator.curve.enabled=false", f"hydra.sweep.dir={sweep}"]
    assert robustai("train", "-m", *run, "attack.eps=0.05,0.1") == 0
    before = {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file()}

    capsys.readouterr()
    assert robustai("train", "-m", *run, "attack.eps=0.05,0.2") == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"hydra.sweep.dir={sweep} holds the runs of another sweep: member 1 " in line
    assert "attack.eps: 0.1 -> 0.2" in line
    # An Optuna search cannot know its trials in advance: any earlier run in its way is refused.
    assert robustai("train", *run, "hparams_search=digits_optuna", "hydra.sweeper.n_trials=1") == 2
    assert "holds the runs of an earlier sweep (member 0)" in capsys.readouterr().err
    # The same training evaluated otherwise would resume each finished member and replace its
    # metrics.json and report with the new evaluation's.
    assert robustai("train", "-m", *run, "attack.eps=0.05,0.1", "evaluator.eps=[0.3]") == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"hydra.sweep.dir={sweep} (member 0) holds a finished run evaluated with other" in line
    assert "evaluator.eps differ" in line and f"robustai evaluate checkpoint={sweep / '0'}" in line
    assert {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file()} == before

    # The same sweep again goes on in place: its members resume their finished runs.
    assert robustai("train", "-m", *run, "attack.eps=0.05,0.1") == 0
    assert all("resumed from" in (m / "train.log").read_text() for m in members(sweep))


def test_a_sweep_over_another_sweeps_failed_member_is_refused_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A member that failed before its first checkpoint has no checkpoint to compare configs
    with: another sweep was let in, replaced its failure record and .hydra/, and summarize
    then ranked members of two sweeps side by side. Its recorded overrides tell the sweeps
    apart; the same sweep may try the member again."""
    monkeypatch.chdir(tmp_path)
    sweep = tmp_path / "sweep"
    run = [*TINY, "trainer.epochs=1", "logger=none", "evaluator.sanity.enabled=false"]
    run += ["evaluator.curve.enabled=false", "model=mlp", "attack=none", "privacy=dpsgd"]
    run += [f"hydra.sweep.dir={sweep}"]
    assert robustai("train", "-m", *run, "privacy.delta=0.5,1e-5") == 1  # 0.5 >= 1/N: fails
    assert (sweep / "0" / "status.json").is_file()
    before = {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert robustai("train", "-m", *run, "privacy.delta=1e-4", "privacy.noise_multiplier=2") == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"hydra.sweep.dir={sweep} holds the runs of another sweep: member 0 (failed" in line
    search = [*TINY, "logger=none", "hparams_search=digits_optuna", "hydra.sweeper.n_trials=1"]
    assert robustai("train", *search, f"hydra.sweep.dir={sweep}") == 2
    assert "holds the runs of an earlier sweep (member 0)" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file()} == before
    # the same sweep again: member 0 is tried again (and fails again), member 1 resumes; so
    # does it with Hydra's own settings changed, or a default given in other words
    assert robustai("train", "-m", *run, "privacy.delta=0.5,1e-5") == 1
    assert "resumed from" in (sweep / "1" / "train.log").read_text()
    again = ["privacy.delta=0.5,1e-5", "hydra/job_logging=robustai", "data.eps=1/10"]
    assert robustai("train", "-m", *run, *again) == 1


def test_a_sweep_over_finished_runs_without_checkpoints_is_refused_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Members that kept no checkpoint (trainer.checkpoint_every=0) have nothing to resume: the
    same sweep again would train over their weights and metrics."""
    monkeypatch.chdir(tmp_path)
    sweep = tmp_path / "sweep"
    run = [*TINY, "trainer.epochs=1", "logger=none", "evaluator.sanity.enabled=false"]
    run += ["trainer.checkpoint_every=0", f"hydra.sweep.dir={sweep}"]
    assert robustai("train", "-m", *run, "attack.eps=0.05,0.1") == 0
    before = {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert robustai("train", "-m", *run, "attack.eps=0.05,0.1") == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "without a checkpoint (member 0: weights.safetensors" in line
    assert {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file()} == before


def test_a_sweep_into_an_evaluation_sweeps_folder_is_refused_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Members holding a robustai evaluate report (no weights, no metrics.json) were taken
    for empty folders: the training runs wrote their reports over the evaluation's."""
    monkeypatch.chdir(tmp_path)
    sweep = tmp_path / "evaluations"
    for member in ("0", "1"):
        (sweep / member).mkdir(parents=True)
        (sweep / member / "report.json").write_text('{"clean_acc": 0.5}')
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    before = {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file()}
    run = [*TINY, "trainer.epochs=1", "logger=none", f"hydra.sweep.dir={sweep}"]
    assert robustai("train", "-m", *run, "attack.eps=0.05,0.1") == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "holds a finished run or evaluation without a checkpoint (member 0: report.json)" in line
    assert {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file()} == before


def failed_search_line(cwd: Path, *overrides: str) -> str:
    """Run ``robustai train hparams_search=digits_optuna ...`` with its stderr apart
    (tests/inprocess.py), expect exit 1 without a traceback, and return its one line."""
    proc = in_process("train", "hparams_search=digits_optuna", *overrides, cwd=cwd)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("robustai train")]
    return line


def test_an_optuna_search_whose_every_trial_failed_says_so_in_one_line(tmp_path: Path) -> None:
    """With no completed trial the Optuna sweeper raises when it asks for the best one; that
    ended the sweep in Hydra's traceback instead of the failed members' line."""
    sweep = tmp_path / "search"
    line = failed_search_line(
        tmp_path,
        "data=idx",  # every trial fails when it loads the data: the files are not there
        f"data.root={tmp_path / 'no-such-folder'}",
        "trainer.epochs=1",
        "hydra.sweeper.n_trials=2",
        f"hydra.sweep.dir={sweep}",
    )
    assert "2 of 2 sweep members failed (0, 1) and the sweeper stopped" in line
    assert f"robustai summarize {sweep}" in line
    errors = [json.loads((m / "status.json").read_text())["error"] for m in members(sweep)]
    assert len(errors) == 2 and all("IDX file not found" in e for e in errors), errors


def test_an_optuna_search_whose_trials_report_no_objective_says_so_in_one_line(
    tmp_path: Path,
) -> None:
    """Members that finish but have no number for optimized_metric (DP-SGD's target_epsilon is
    null when the noise is given) are failed trials to Optuna, which then raised "No trials are
    completed yet" in a traceback: now one line naming the members, exit 1."""
    sweep = tmp_path / "search"
    run = [*TINY, "trainer.epochs=1", "logger=none", "evaluator.sanity.enabled=false"]
    run += ["evaluator.curve.enabled=false", "privacy=dpsgd"]
    line = failed_search_line(
        tmp_path,
        *run,
        "optimized_metric=privacy/target_epsilon",
        "hydra.sweeper.n_trials=1",
        f"hydra.sweep.dir={sweep}",
    )
    assert "1 of 1 sweep members reported no value (or NaN) for optimized_metric (0)" in line
    assert "the sweeper stopped (No trials are completed yet.)" in line
    assert (sweep / "0" / "metrics.json").is_file()  # the member itself finished


def test_runs_of_an_earlier_sweep_are_not_this_sweeps_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweep folder holding a failed run that this sweep does not run again (an earlier
    sweep's member, the bad value since dropped) exited 1, blaming that run."""
    monkeypatch.chdir(tmp_path)
    sweep = tmp_path / "sweep"
    old = sweep / "old_run"
    old.mkdir(parents=True)
    (old / "status.json").write_text('{"status": "failed", "error": "an earlier sweep"}')
    run = [*TINY, "trainer.epochs=1", "logger=none", "evaluator.sanity.enabled=false"]
    run += ["evaluator.curve.enabled=false", f"hydra.sweep.dir={sweep}"]
    assert robustai("train", "-m", *run, "attack=none") == 0
    assert (sweep / "0" / "metrics.json").is_file()
    # A run that this sweep writes to again (here: fails in again) is counted.
    before = snapshot(sweep)
    assert tally(sweep, before).members == 0
    (old / "status.json").write_text('{"status": "failed", "error": "this sweep, again"}')
    outcome = tally(sweep, before)
    assert (outcome.members, outcome.failed) == (1, ["old_run"])
    assert tally(sweep).failed == ["old_run"] and tally(sweep).members == 2
