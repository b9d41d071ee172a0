"""Sweeps and searches are checked before Hydra starts: bad input is one line and exit 2."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from robustai.cli.common import config_dir
from robustai.cli.main import main
from robustai.cli.preflight import preflight
from robustai.cli.train import _check_sweep_folder
from robustai.config import to_train_config

CASES = [
    (["hparams_search=digits_optuna", "trainer.lr=interval(0,2)"], "trainer.lr=0.0: must be > 0"),
    (
        [
            "-m",
            "hydra/sweeper=optuna",
            "hydra.sweeper.direction=maximize",
            "attack.eps=interval(0.1,1.5)",
        ],
        "attack.eps=1.5: must be in [0, 1]",
    ),
    (["hparams_search=digits_optuna", "trainer.epochs=choice(0,3)"], "trainer.epochs=0: must be"),
    (["hparams_search=digits_optunaa"], "unknown option (did you mean digits_optuna?)"),
    (  # the reason was on the message's second line, cut off
        ["hydra/sweeper/sampler=random", "hparams_search=digits_optuna"],
        "Key 'n_startup_trials' not in 'SamplerConfig' (hydra.sweeper.sampler.n_startup_trials)",
    ),
    (  # the search needs no -m; "add -m to sweep" hid the typo
        ["hparams_search=digits_optuna", "trainer.epoch=1", "trainer.lr=interval(0.01,0.1)"],
        "trainer.epoch: no such key (did you mean trainer.epochs?)",
    ),
    (["hparams_search=digits_optuna", "hydra.sweeper.n_trials=0"], "n_trials=0: must be a whole"),
    (["-m", "hydra/launcher=jooblib", "attack.eps=0.1,0.2"], "(did you mean joblib?)"),
    (["optimized_metric=accuracy"], "optimized_metric=accuracy: not a metrics.json name"),
    (["optimized_metric=robust_acc/pgd7@0.1"], "valid: robust_acc/fgsm@0.1, robust_acc/pgd20@0.1"),
    (["optimized_metric=[clean_acc,3]"], "give a metric name or a list of them"),
    (["trainer.threads=0"], "trainer.threads=0: must be >= 1"),
    (["-m", "attack.eps=0.1,0.2", "--cfg", "job"], "--cfg prints one run's config: drop -m"),
    (
        ["hparams_search=digits_optuna", "hydra.sweeper.storage=sqlite:///no/such/dir/study.db"],
        "cannot keep the study in study.db: folder",
    ),
    (
        ["hparams_search=digits_optuna", "hydra.sweeper.storage=study.db"],
        "hydra.sweeper.storage=study.db: not a database URL SQLAlchemy knows",
    ),
    (  # two slashes: SQLAlchemy reads "study.db" as a host
        ["hparams_search=digits_optuna", "hydra.sweeper.storage=sqlite://study.db"],
        "an SQLite URL has no host or user; write sqlite:///<relative path>",
    ),
    (  # the Optuna sweeper minimizes unless told otherwise
        ["-m", "hydra/sweeper=optuna", "trainer.lr=tag(log,interval(0.01,0.3))"],
        "direction=minimize would pick the trial with the lowest worst_case_acc; "
        "add hydra.sweeper.direction=maximize",
    ),
    (
        ["hparams_search=digits_pareto", "hydra.sweeper.direction=[maximize,minimize]"],
        "add hydra.sweeper.direction=[maximize,maximize]",
    ),
    (
        ["hparams_search=digits_pareto", "hydra.sweeper.direction=maximize"],
        "optimized_metric has 2 objective(s) (clean_acc, worst_case_acc) but "
        "hydra.sweeper.direction has 1",
    ),
    (  # passed as MAXIMIZE to Optuna, whose refusal ended the search in a traceback
        ["hparams_search=digits_optuna", "hydra.sweeper.direction=MAXIMIZE"],
        "hydra.sweeper.direction=MAXIMIZE: not a direction; give minimize or maximize",
    ),
    (  # was told it "would pick the trial with the highest worst_case_acc"
        ["hparams_search=digits_optuna", "hydra.sweeper.direction=maximise"],
        "hydra.sweeper.direction=maximise: not a direction; give minimize or maximize",
    ),
    (  # found before member 0 trains, though only member 1 refuses the model
        ["-m", "model=preact_resnet18", "privacy=none,dpsgd"],
        "privacy=dpsgd: layer '1.layers.0.bn1' is BatchNorm2d (and 16 more)",
    ),
    (
        ["hparams_search=digits_optuna", "privacy=dpsgd", "optimized_metric=privacy/epsilon"],
        "direction=maximize would pick the trial with the highest privacy/epsilon",
    ),
    (  # submitit pickles the overrides into <sweep>/.submitit/, out of redaction's reach
        [
            "-m",
            "hydra/launcher=submitit_local",
            "+hydra.job.env_set.TRACKER_API_KEY=S3cr3tValueAAA111",
        ],
        "hydra.job.env_set.TRACKER_API_KEY: a secret on the command line would be stored in"
        " clear in the sweep folder's .submitit/ job files; export it before the sweep instead",
    ),
    (
        ["+hydra.job.env_set.TRACKER_API_KEY=${oc.env:ROBUSTAI_TEST_UNSET_VARIABLE}"],
        "hydra.job.env_set.TRACKER_API_KEY: environment variable ROBUSTAI_TEST_UNSET_VARIABLE"
        " is not set; export it before the run",
    ),
    (  # the message repeats the override without the secret's value
        ["-m", "+hydra.job.env_set.X_TOKEN=TokAAA111zz,TokBBB222zz"],
        "+hydra.job.env_set.X_TOKEN=<redacted>: Hydra's own settings take one value",
    ),
    (  # every trial would report NaN, and the first NaN ended Optuna's search in a traceback
        ["hparams_search=digits_optuna", "evaluator.attacks=[]"],
        "optimized_metric=worst_case_acc: evaluator.attacks is empty, so every trial reports NaN",
    ),
    (
        ["optimized_metric=privacy/epsilon"],
        "optimized_metric=privacy/epsilon: privacy=none gives no privacy guarantee",
    ),
    (
        ["privacy=input_laplace", "privacy.where=features", "optimized_metric=privacy/epsilon"],
        "privacy=laplace with where=features protects queries, not the training data",
    ),
    (
        ["privacy=dpsgd", "optimized_metric=privacy/eps"],
        "optimized_metric=privacy/eps: this run reports no such value; valid: privacy/epsilon,",
    ),
    (  # Optuna refused these only once the sweep had started, in a traceback
        ["hparams_search=digits_optuna", "attack.eps=interval(0.15,0.08)"],
        "'attack.eps=interval(0.15,0.08)': the low end 0.15 is above the high end 0.08",
    ),
    (
        ["hparams_search=digits_pareto", "attack.eps=tag(log,interval(0.0,0.2))"],
        "a log scale needs a low end above 0, got 0",
    ),
    (
        ["-m", "attack.eps=interval(0.1,0.2)"],
        "interval() is a search space, which Hydra's grid sweeper cannot run; add"
        " hydra/sweeper=optuna (or an hparams_search=...), or list values: attack.eps=0.1,0.2",
    ),
    (["-m", "trainer.epochs=range(1,0)"], "'trainer.epochs=range(1,0)' gives no values"),
    (  # member 1 rewrote member 0's .hydra/ record, then trained over its run or failed it
        ["-m", "trainer.seed=0,1", "hydra.sweep.subdir=same"],
        "hydra.sweep.subdir=same puts sweep members 0 (trainer.seed=0) and 1 (trainer.seed=1) in"
        " the same folder (same); make hydra.sweep.subdir distinct for each member, e.g. keep"
        " the default ${hydra.job.num}",
    ),
    (
        [
            "-m",
            "trainer.seed=0,1",
            "trainer.lr=0.1,0.2",
            "hydra.sweep.subdir=${hydra.job.override_dirname}",
            "hydra.job.config.override_dirname.exclude_keys=[trainer.seed]",
        ],
        "members 0 (trainer.seed=0) and 2 (trainer.seed=1) in the same folder (trainer.lr=0.1)",
    ),
    (  # a subdir that reads the config is composed per member
        ["-m", "trainer.seed=0,1", "hydra.sweep.subdir=e${trainer.epochs}"],
        "members 0 (trainer.seed=0) and 1 (trainer.seed=1) in the same folder (e10)",
    ),
    (  # two members with the same overrides: named by them, not as "no override"
        ["-m", "attack.eps=0.1,0.10", "trainer.seed=3", "hydra.sweep.subdir=${attack.eps}"],
        "puts sweep members 0 and 1 (both attack.eps=0.1) in the same folder (0.1): the sweep"
        " lists one value twice (0.1 and 0.10 are one value); list each value once",
    ),
    (  # a choice the members share: composed per member, it is the same for both
        ["-m", "trainer.seed=0,1", "hydra.sweep.subdir=${hydra.runtime.choices.attack}"],
        "members 0 (trainer.seed=0) and 1 (trainer.seed=1) in the same folder (fgsm_rs)",
    ),
    # launcher counts out of range: joblib and submitit failed with tracebacks (exit 1) after
    # the sweep folder was made
    (["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=0"], "hydra.launcher.n_jobs=0: the"),
    (
        ["-m", "hydra/launcher=submitit_local", "hydra.launcher.tasks_per_node=0"],
        "hydra.launcher.tasks_per_node=0: must be a whole number >= 1",
    ),
    (
        ["-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=0"],
        "hydra.launcher.timeout_min=0: must be a whole number >= 1",
    ),
    (
        ["-m", "hydra/launcher=submitit_local", "hydra.launcher.nodes=0"],
        "hydra.launcher.nodes=0: must",
    ),
    (  # a Slurm config copied to run locally
        ["-m", "hydra/launcher=submitit_local", "hydra.launcher.nodes=2", "trainer=ddp"],
        "hydra.launcher.nodes=2: submitit_local runs on this machine, one node",
    ),
    (  # (checked before srun is looked for)
        ["-m", "hydra/launcher=slurm_gpu", "hydra.launcher.mem_gb=0"],
        "hydra.launcher.mem_gb=0: must be a whole number >= 1 (or null: not set)",
    ),
    (  # Hydra's reason, on the second line of its message, was left out
        ["hparams_search=digits_optuna", "trainer.epochs=choice()"],
        "bad override: Error parsing override 'trainer.epochs=choice()': empty choice is not",
    ),
]


@pytest.mark.parametrize(("overrides", "message"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_sweep_input_exits_2_with_one_line(
    overrides: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["train", *overrides])
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert message in lines[0]
    assert not any(v in lines[0] for v in ("S3cr3tValueAAA111", "TokAAA111zz"))
    assert not (tmp_path / "experiments").exists()  # nothing started


OWN_FOLDERS = [
    ["trainer.seed=0,1", "hydra.sweep.subdir=${hydra.job.num}"],
    ["trainer.seed=0,1", "hydra.sweep.subdir=${hydra.job.override_dirname}"],
    ["trainer.seed=0,1", "hydra.sweep.subdir=s${trainer.seed}"],
    ["trainer.seed=0,1", "hydra.sweep.subdir=${hydra:job.num}"],
    # each member's own group choices (fgsm/, pgd/), not the defaults' (fgsm_rs/ for both)
    ["attack=fgsm,pgd", "hydra.sweep.subdir=${hydra.runtime.choices.attack}"],
    ["attack=fgsm,pgd", "hydra.sweep.subdir=a_${hydra:runtime.choices.attack}"],
    # named when each member starts, at different times: not known in advance, not refused
    ["trainer.seed=0,1", "hydra.sweep.subdir=${now:%H-%M}"],
    ["trainer.seed=0,1", "name=n${now:%H}", "hydra.sweep.subdir=${name}"],
]


@pytest.mark.parametrize("overrides", OWN_FOLDERS, ids=[" ".join(o) for o in OWN_FOLDERS])
def test_sweep_members_in_folders_of_their_own_pass(overrides: list[str], tmp_path: Path) -> None:
    sweep = ["-m", *overrides, f"hydra.sweep.dir={tmp_path}"]
    _check_sweep_folder(config_dir(), sweep)  # raises ConfigError for members sharing a folder


def test_a_typo_in_a_search_config_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "hparams_search").mkdir()
    (tmp_path / "hparams_search" / "typo.yaml").write_text(
        "# @package _global_\n"
        "defaults:\n  - override /hydra/sweeper: optuna\n"
        "hydra:\n  mode: MULTIRUN\n  sweeper:\n    direction: maximize\n    params:\n"
        "      trainer.lrr: interval(0.01, 0.1)\n"
    )
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["train", "hparams_search=typo", f"hydra.searchpath=[file://{tmp_path}]"])
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert "search space: trainer.lrr: no such key (did you mean trainer.lr?)" in lines[0]


@pytest.mark.parametrize("fixed", [[], ["trainer.epochs=1"]], ids=["searched", "fixed too"])
def test_a_search_space_hydra_cannot_parse_is_one_line_with_its_reason(
    fixed: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``trainer.epochs: choice()`` in a search config, with trainer.epochs also given on the
    command line, was skipped by the check and ended in Hydra's multi-line error, exit 1, and
    an empty sweep folder (the sweeper parses it all the same); Hydra's reason ("empty choice
    is not legal") was left out of the one line either way."""
    (tmp_path / "hparams_search").mkdir()
    (tmp_path / "hparams_search" / "empty.yaml").write_text(
        "# @package _global_\n"
        "defaults:\n  - override /hydra/sweeper: optuna\n"
        "hydra:\n  mode: MULTIRUN\n  sweeper:\n    direction: maximize\n    n_trials: 2\n"
        "    params:\n      trainer.lr: interval(0.01, 0.1)\n      trainer.epochs: choice()\n"
    )
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["train", "hparams_search=empty", f"hydra.searchpath=[file://{tmp_path}]", *fixed,
              f"hydra.sweep.dir={tmp_path / 'sweep'}"])  # fmt: skip
    assert exc.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.endswith(
        "hydra.sweeper.params.trainer.epochs: bad search space 'trainer.epochs=choice()': Error"
        " parsing override 'trainer.epochs=choice()': empty choice is not legal"
    )
    assert not (tmp_path / "sweep").exists()


def test_search_space_values_are_each_checked(tmp_path: Path) -> None:
    """Every value and interval end point of the search config is composed and validated."""
    seen: list[Any] = []

    def record(cfg: Any) -> None:
        seen.append(to_train_config(cfg))

    preflight(
        config_dir(),
        "train",
        ["hparams_search=digits_optuna", "attack.alpha=0.1", f"hydra.sweep.dir={tmp_path}"],
        record,
    )
    assert {c.trainer.lr for c in seen} >= {0.01, 0.3}
    assert {c.attack.eps for c in seen} >= {0.08, 0.15}
    assert {c.trainer.epochs for c in seen} >= {5, 10, 15}
    assert {c.attack.alpha for c in seen} == {0.1}  # the command line fixes it, as in Optuna
    assert all(c.optimized_metric == "worst_case_acc" for c in seen)
    assert len(seen) <= 4  # the base run plus one run per value of the longest choice


@pytest.mark.parametrize("search", ["digits_optuna", "digits_pareto", "mnist_optuna"])
def test_every_search_config_passes_preflight(search: str, tmp_path: Path) -> None:
    extra = ["experiment=mnist_idx_fgsm_rs"] if search.startswith("mnist") else []
    seen: list[Any] = []
    preflight(
        config_dir(),
        "train",
        [*extra, f"hparams_search={search}", f"hydra.sweep.dir={tmp_path}"],
        lambda cfg: seen.append(cfg),
    )
    assert len(seen) >= 2
    cfg = seen[0]
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper")
    assert str(cfg.hydra.mode).endswith("MULTIRUN")
    directions = cfg.hydra.sweeper.direction
    metric = cfg.optimized_metric
    n = 1 if isinstance(metric, str) else len(metric)
    assert (1 if isinstance(directions, str) else len(directions)) == n


def srun_on_path(monkeypatch: pytest.MonkeyPatch, present: bool) -> None:
    """Whether Slurm's srun is found, whatever this machine has."""
    real_which = shutil.which

    def which(cmd: str, *args: Any, **kwargs: Any) -> str | None:
        if cmd == "srun":
            return "/usr/bin/srun" if present else None
        return real_which(cmd, *args, **kwargs)

    monkeypatch.setattr(shutil, "which", which)


@pytest.mark.parametrize(
    ("launcher", "target"),
    [
        ("joblib", "JoblibLauncher"),
        ("submitit_local", "LocalLauncher"),
        ("submitit_slurm", "SlurmLauncher"),
        ("slurm_gpu", "SlurmLauncher"),
    ],
)
def test_launchers_compose_with_a_sweep(
    launcher: str, target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Members are checked as usual; the launcher's own fields (partition, GPUs) compose."""
    srun_on_path(monkeypatch, True)  # as on a Slurm cluster's login node
    seen: list[Any] = []
    preflight(
        config_dir(),
        "train",
        [
            "-m",
            f"hydra/launcher={launcher}",
            "attack.eps=0.05,0.1",
            f"hydra.sweep.dir={tmp_path}",
            *(["hydra.launcher.partition=p100"] if "slurm" in launcher else []),
        ],
        lambda cfg: seen.append(cfg),
    )
    assert [c.attack.eps for c in seen] == [0.05, 0.1]
    launch = seen[0].hydra.launcher
    assert launch._target_.endswith(target)
    if "slurm" in launcher:
        assert launch.partition == "p100"
    if launcher == "slurm_gpu":
        assert launch.gpus_per_node == 1 and launch.cpus_per_task == 8


@pytest.mark.parametrize(
    ("storage", "message", "shown"),
    [
        (
            "postgresql://alice:pw-9f8e7d@db.example/studies",
            "the postgresql driver is not installed",
            "alice:<redacted>@db.example",
        ),
        (  # a "/" in the password (SQLAlchemy takes everything up to the "@")
            "postgresql://alice:pw/9f8e7d@db.example/studies",
            "the postgresql driver is not installed",
            "alice:<redacted>@db.example",
        ),
        (  # SQLite has no host or user: it failed inside the sweeper, password and all
            "sqlite://alice:pw-9f8e7d@/studies.db",
            "an SQLite URL has no host or user",
            "alice:<redacted>@",
        ),
    ],
)
def test_a_bad_storage_is_one_line_without_the_password(
    storage: str,
    message: str,
    shown: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The driver is missing whether or not this machine has it: the test never skips.
    monkeypatch.setitem(sys.modules, "psycopg2", None)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["train", "hparams_search=digits_optuna", f"hydra.sweeper.storage={storage}"])
    assert exc.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert message in line
    assert shown in line and "9f8e7d" not in line
    assert not list(tmp_path.iterdir())  # no study file, no sweep folder


def test_a_stored_study_that_cannot_go_on_is_one_line_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A storage file that is no SQLite database, or a stored study with other objectives than
    the search (Optuna cannot change them): tracebacks once the sweep started, now exit 2."""
    import optuna

    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.db").write_text("hello\n")
    study_file = tmp_path / "study.db"
    optuna.create_study(
        study_name="digits", storage=f"sqlite:///{study_file}", direction="maximize"
    )
    before = study_file.read_bytes()
    capsys.readouterr()  # Optuna's own log line
    cases = [
        (
            ["hparams_search=digits_optuna", "hydra.sweeper.storage=sqlite:///notes.db"],
            "notes.db is not an SQLite database; name a new file",
        ),
        (
            [
                "hparams_search=digits_pareto",
                f"hydra.sweeper.storage=sqlite:///{study_file}",
                "hydra.sweeper.study_name=digits",
            ],
            "hydra.sweeper.study_name=digits: the study in study.db has direction=[maximize], this"
            " search [maximize,maximize] (Optuna cannot change them); give another study_name",
        ),
    ]
    for overrides, message in cases:
        with pytest.raises(SystemExit) as exc:
            main(["train", *overrides])
        assert exc.value.code == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert message in line
    assert study_file.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db", "study.db"]
    # The same objectives go on in that study: the check passes.
    preflight(
        config_dir(),
        "train",
        [
            "hparams_search=digits_optuna",
            f"hydra.sweeper.storage=sqlite:///{study_file}",
            "hydra.sweeper.study_name=digits",
            f"hydra.sweep.dir={tmp_path / 's'}",
        ],
        lambda cfg: None,
    )


def test_a_stored_study_with_another_search_space_is_one_line_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Optuna failed at the first trial it asked for ("Cannot set different distribution kind
    to the same parameter name"), in a 50-line traceback, and left that trial RUNNING in the
    study for good."""
    import optuna
    from optuna.distributions import CategoricalDistribution, UniformDistribution

    monkeypatch.chdir(tmp_path)
    study_file = tmp_path / "study.db"
    storage = f"sqlite:///{study_file}"
    study = optuna.create_study(study_name="digits", storage=storage, direction="maximize")
    trial = study.ask(
        {  # as digits_optuna searches them
            "attack.eps": UniformDistribution(0.08, 0.15),
            "trainer.epochs": CategoricalDistribution([5, 10, 15]),
        }
    )
    study.tell(trial, 0.5)
    before = study_file.read_bytes()
    capsys.readouterr()
    base = ["hparams_search=digits_optuna", f"hydra.sweeper.storage={storage}",
            "hydra.sweeper.study_name=digits", f"hydra.sweep.dir={tmp_path / 's'}"]  # fmt: skip
    for search, message in [
        ("attack.eps=choice(0.1,0.12)", "searched attack.eps over another space"),
        ("trainer.epochs=choice(1,2)", "searched trainer.epochs over another space"),
    ]:
        with pytest.raises(SystemExit) as exc:
            main(["train", *base, search])
        assert exc.value.code == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert f"hydra.sweeper.study_name=digits: the study in study.db {message}" in line
    assert study_file.read_bytes() == before
    assert not (tmp_path / "s").exists()
    preflight(config_dir(), "train", base, lambda cfg: None)  # its own search space goes on


@pytest.mark.parametrize("launcher", ["submitit_slurm", "slurm_gpu", "slurm_ddp"])
def test_a_slurm_launcher_off_a_cluster_is_one_line(
    launcher: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    srun_on_path(monkeypatch, False)
    ddp = ["trainer=ddp"] if launcher == "slurm_ddp" else []
    with pytest.raises(SystemExit) as exc:
        main(["train", "-m", f"hydra/launcher={launcher}", *ddp, "attack.eps=0.05,0.1"])
    assert exc.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"hydra/launcher={launcher} submits to Slurm, but this machine has no srun" in line
    assert not (tmp_path / "experiments").exists()


def test_a_nan_objective_is_no_value_to_rank(caplog: pytest.LogCaptureFixture) -> None:
    """NaN (a worst case no attack measured) reached Optuna, which then ended the whole search
    in a traceback; the member's objective is None instead, a failed trial to the sweeper."""
    from robustai.cli.train import _objective

    done = {"clean_acc": 0.9, "worst_case_acc": {"0.1": 0.5}}
    assert _objective(done, ["worst_case_acc"]) == 0.5
    assert _objective(done, ["clean_acc", "worst_case_acc"]) == [0.9, 0.5]
    undefined = {"clean_acc": 0.9, "worst_case_acc": {"0.1": float("nan")}}
    assert _objective(undefined, ["worst_case_acc"]) is None
    assert _objective(undefined, ["clean_acc", "worst_case_acc"]) is None
    assert "optimized_metric worst_case_acc: NaN in this run, so no objective" in caplog.text


def test_swept_hparams_read_an_override_hydra_resolved_into_unparsable_text() -> None:
    """``data.root=${paths.data_dir}/x`` with ROBUSTAI_DATA_DIR='~' reaches the run as
    ``data.root=~/x``, which Hydra's override grammar rejects: the run crashed after it started."""
    from omegaconf import OmegaConf

    from robustai.cli.train import _swept_hparams
    from robustai.config.schema import TrainConfig

    hc = OmegaConf.create(
        {"runtime": {"choices": {}}, "overrides": {"task": ["name=~/x", "trainer.lr=0.2"]}}
    )
    cfg = TrainConfig()
    cfg.name, cfg.trainer.lr = "~/x", 0.2
    assert _swept_hparams(hc, cfg) == {"name": "~/x", "trainer.lr": 0.2}


def test_swept_hparams_leave_out_where_and_how_a_run_goes() -> None:
    """A run resumed with trainer.resume=..., or given trainer.threads or paths, got HParams
    columns its uninterrupted twin lacked: those say where and how it ran, not what."""
    from omegaconf import OmegaConf

    from robustai.cli.train import _swept_hparams
    from robustai.config.schema import TrainConfig

    task = [
        "trainer.lr=0.2",
        "trainer.resume=/runs/a",
        "trainer.threads=1",
        "trainer.progress=false",
        "paths.experiments_dir=/runs",
        "logger.image_grid=0",
        "evaluator.eps=[0.2]",
    ]
    hc = OmegaConf.create({"runtime": {"choices": {}}, "overrides": {"task": task}})
    cfg = TrainConfig()
    cfg.trainer.lr, cfg.evaluator.eps = 0.2, [0.2]
    assert _swept_hparams(hc, cfg) == {"trainer.lr": 0.2, "evaluator.eps": "[0.2]"}
