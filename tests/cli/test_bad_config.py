"""Bad input ends before any work with one line naming the key and what is allowed, exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from inprocess import robustai

from robustai.cli.main import main

CASES = [
    # (overrides, text the one-line message must contain)
    (["trainer.epoch=3"], "trainer.epoch: no such key (did you mean trainer.epochs?)"),
    (["nme=x"], "nme: no such key (did you mean name?)"),
    # a section's setting given without its section
    (["epochs=3"], "epochs: no such key (did you mean trainer.epochs?)"),
    (["eps=0.2"], "eps: no such key (did you mean data.eps or attack.eps or evaluator.eps?)"),
    (["trainer.epochs=abc"], "trainer.epochs"),
    (["data.batch_size=1.5"], "data.batch_size"),
    (["attack.eps=1.5"], "attack.eps=1.5: must be in [0, 1]"),
    (["attack.eps=-0.1"], "attack.eps=-0.1: must be in [0, 1]"),
    (["attack=pgd", "attack.norm=l2", "attack.eps=-1"], "attack.eps=-1.0: must be in [0, 10000]"),
    # evaluator.eps follows attack.eps: an L2 run under the default (L-inf) suite would report
    # L-inf attacks at its L2 radius, whatever the radius; the message names the L2 suites
    *[
        (
            ["attack=pgd", "attack.norm=l2", f"attack.eps={eps}"],
            "attack.norm=l2, but every attack of evaluator.attacks is linf: the run would report"
            " robustness in another threat model than it trains for; choose evaluator=quick_l2",
        )
        for eps in ("0.5", "2")
    ],
    (
        ["evaluator=quick_l2"],
        "attack.norm=linf, but every attack of evaluator.attacks is l2",
    ),
    (  # evaluator.eps follows data.eps, an L-inf budget: PGD-20 L2 at radius 0.1 said 0.97
        ["attack=none", "evaluator=quick_l2"],
        "evaluator.eps follows data.eps, the data set's L-inf budget, which the suite's L2"
        " attacks would take as their radius",
    ),
    (  # standard training names no threat model: an L2 suite may not take an L2 radius above 1
        ["attack=none", "attack.eps=1", "evaluator.eps=[2]"],
        "evaluator.eps[0]=2.0: must be in [0, 1] for the L-inf attacks of evaluator.attacks; an "
        "L2 radius needs L2 attacks there, e.g. evaluator=quick_l2",
    ),
    (["data.augment=flip"], "data.augment=flip"),
    # a setting only another data set reads, added with "+": ignored, recorded as if applied
    (
        ["+data.images=/data/x-idx3-ubyte"],
        "data.images=/data/x-idx3-ubyte: data=digits does not read it (data=idx does)",
    ),
    (["+data.num_classes=4"], "data.num_classes=4: data=digits does not read it"),
    (["data=idx", "+data.download=true"], "data.download=true: data=idx does not read it"),
    (["attack.eps=1/0"], "attack.eps=1/0 divides by zero; write a fraction like 8/255"),
    (["evaluator.eps=[0.1,8/0]"], "evaluator.eps[1]=8/0 divides by zero"),
    (["attack.eps=-8/255"], "attack.eps=-0.0313"),  # a fraction too: its range is the error
    (
        ["evaluator.curve.eps=[0.1,abc]"],
        "evaluator.curve.eps[1]=abc: must be a number, e.g. evaluator.curve.eps=[0.1,8/255]",
    ),
    (["evaluator.eps=[0.1,2]"], "evaluator.eps[1]=2.0: must be in [0, 1]"),
    (["evaluator.eps=0.05"], "evaluator.eps=0.05: must be a list, e.g. evaluator.eps=[0.05]"),
    (["trainer.epochs=0"], "trainer.epochs=0: must be >= 1"),
    (["data.batch_size=0"], "data.batch_size=0: must be >= 1"),
    (["data.eval_batch_size=-4"], "data.eval_batch_size=-4: must be >= 1"),
    (["attack=fgsmm"], "attack=fgsmm: unknown option (did you mean fgsm?); valid: fgsm, fgsm_rs"),
    (["model=resnet"], "model=resnet: unknown option"),
    (["data=cifar"], "data=cifar: unknown option (did you mean cifar10?)"),
    (["model.name=vit"], "model.name=vit: unknown; valid: mlp, small_cnn, preact_resnet18"),
    (["data.name=imagenet"], "data.name=imagenet: unknown"),
    (["attack.name=cw"], "attack.name=cw: unknown; valid: none, fgsm, pgd"),
    # a key of another attack, or one the attack's config file does not list
    (
        ["attack.steps=5"],
        "attack.steps: attack 'fgsm' does not take steps (pgd, apgd, apgd_t take it); valid keys"
        " of attack: name, eps, alpha, random_start, norm, model_mode",
    ),
    # a misspelt config group or section (experiment is no key of the composed config)
    (["experimnt=x"], "experimnt: no such key (did you mean the config group experiment, e.g."),
    (["evalutor.sanity.enabeld=false"], "no such key (did you mean evaluator.sanity.enabled?)"),
    (["attack.eot_iter=2"], "attack.eot_iter: not set in attack=fgsm's config; add it with +"),
    # added with '+', a key of another attack: refused before any work, as a sweep member too
    (
        ["+attack.steps=5"],
        "attack.steps: attack 'fgsm' does not take steps; valid keys: name, eps, alpha, "
        "random_start, norm, model_mode",
    ),
    (["-m", "+attack.loss=ce,dlr"], "attack.loss: attack 'fgsm' does not take loss"),
    (
        ["evaluator.attacks=[{name:pgd,step:1}]"],
        "evaluator.attacks[0].step: no such key (did you mean evaluator.attacks[0].steps?); "
        "valid keys: name, alpha, steps,",  # eps comes from evaluator.eps
    ),
    (["evaluator.attacks=[{steps:5}]"], "evaluator.attacks[0]: give the attack's name, e.g."),
    # a value of the wrong type inside a list entry is named with its entry, not as a bare key
    (["evaluator.attacks.1.steps=abc"], "evaluator.attacks[1].steps=abc: must be a whole number"),
    (["+evaluator.attacks.1.eot_iter=4.5"], "evaluator.attacks[1].eot_iter=4.5: must be a whole"),
    (["+evaluator.attacks.0.random_start=x"], "evaluator.attacks[0].random_start=x: must be true"),
    # --cfg prints the config without a run, but only one that composes
    (["attack.bogus=1", "--cfg", "job"], "attack.bogus: no such key; valid keys of attack: "),
    (["attack=pgd", "attack.steps=0"], "attack.steps=0: must be >= 1"),
    (["attack=pgd", "attack.norm=l3"], "attack.norm=l3: unknown"),
    (["trainer.optimizer=adamw"], "trainer.optimizer=adamw: unknown (did you mean adam?)"),
    # recorded in .hydra/ and the checkpoint, never used
    (
        ["trainer.optimizer=adam", "trainer.momentum=0.5"],
        "trainer.momentum=0.5: SGD's setting, which trainer.optimizer=adam does not use",
    ),
    (
        ["trainer.optimizer=adam", "trainer.nesterov=true"],
        "trainer.nesterov=true: SGD's setting, which trainer.optimizer=adam does not use",
    ),
    (
        ["trainer.nesterov=true", "trainer.momentum=0"],
        "trainer.nesterov=true needs trainer.momentum > 0",
    ),
    # refused before any work (it failed once the data had loaded, naming an internal class)
    (
        ["privacy=dpsgd", "trainer.objective=free"],
        "trainer.objective=free is not supported with privacy=dpsgd",
    ),
    (["trainer.schedule=cosine"], "trainer.schedule=cosine: unknown"),
    (["trainer.lr=0"], "trainer.lr=0.0: must be > 0"),
    # infinity: the accountant searched forever (a hang), or no clipping trained into NaN, or
    # a "calibrated" noise multiplier of 10 for an epsilon of inf
    (["privacy=dpsgd", "privacy.noise_multiplier=inf"], "noise_multiplier=inf: must be a finite"),
    (["privacy=dpsgd", "privacy.max_grad_norm=inf"], "max_grad_norm=inf: must be a finite"),
    (
        ["privacy=dpsgd", "privacy.noise_multiplier=null", "privacy.target_epsilon=inf"],
        "privacy.target_epsilon=inf: must be a finite number",
    ),
    (["trainer.momentum=1.5"], "trainer.momentum=1.5: must be below 1"),
    (
        ["evaluator.sanity=false"],
        "evaluator.sanity=false: evaluator.sanity is a group of settings, not a value; set its "
        "keys (evaluator.sanity.enabled, ",
    ),
    (["trainer.watchdog=3"], "e.g. trainer.watchdog.enabled=false"),
    (["trainer.device=gpu"], "trainer.device=gpu"),
    # No such device here (no CUDA, or fewer than 100 GPUs): refused before the run folder.
    (["trainer.device=cuda:99"], "trainer.device=cuda:99: "),
    (["-m", "trainer.device=cpu,cuda:99"], "trainer.device=cuda:99: "),
    (["attack.eps=0.1,0.2"], "add -m to sweep"),
    (["-m", "attack.eps=0.1,2"], "attack.eps=2.0: must be in [0, 1]"),
    (["attack.eps=[1"], "bad override"),
    # searched Adam's learning rates and alpha for eps 0.3 on digits (SGD, eps 0.1)
    (["hparams_search=mnist_optuna"], "hparams_search=mnist_optuna tunes the MNIST recipe"),
    # refused after the data loaded, as "two attacks have the metric key fgsm@0.1"
    (["evaluator.eps=[0.1,1/10]"], "evaluator.eps[1]=0.1 repeats evaluator.eps[0]: list each"),
    # a ~ the shell did not expand (quoted, or zsh): Hydra's lexer error named no cause
    (["hydra.run.dir=~/runs/x"], "Hydra reads no value that starts with ~; give hydra.run.dir"),
    (["model.params.hidden=-3"], "model.params.hidden=-3: must be a whole number >= 1"),
    (["model.params.hidden=abc"], "model.params.hidden=abc: must be a whole number >= 1"),
    (
        ["+model.params.depth=3"],
        "model.params.depth: model=small_cnn has no such parameter; valid: hidden",
    ),
    (["model=mlp", "model.params.hidden=100"], "must be a list, e.g. model.params.hidden=[100]"),
    (["model=mlp", "model.params.hidden=[64,0]"], "model.params.hidden[1]=0: must be a whole"),
    (["model=preact_resnet18", "model.params.width=0"], "model.params.width=0: must be a whole"),
    (["-m", "model.params.hidden=10,-3"], "model.params.hidden=-3: must be a whole number >= 1"),
    (["trainer.epochs=null"], "trainer.epochs=null: must be set, e.g. trainer.epochs=10"),
    (["evaluator.eps=null"], "evaluator.eps=null: must be set, e.g. evaluator.eps=[0.1]"),
    (["evaluator.eps=[0.1,null]"], "evaluator.eps[1]=null: the list needs a value there"),
    (["trainer.watchdog=null"], "trainer.watchdog=null: must be set; leave it out to keep"),
    (["attack.eps=null"], "attack.eps is not set: give the attack's eps in [0, 1], e.g. 0.1"),
    (["attack=none", "attack.eps=null"], "attack.eps is not set: give the attack's eps in"),
    (["data.eps=null"], "data.eps=null: must be set, e.g. data.eps=0.1"),
    (["--badflag"], "--badflag: unknown option; give overrides as key=value (see --help)"),
    (["--multi", "attack.eps=0.1,0.2"], "--multi: unknown option (did you mean --multirun?)"),
    (["-x", "trainer.epochs=1"], "-x: unknown option"),
    # a known flag with a bad or missing value printed Hydra's whole usage text
    (["--cfg"], "argument --cfg/-c: expected one argument (see --help)"),
    (["--cfg", "bogus"], "argument --cfg/-c: invalid choice: 'bogus' (choose from 'job', 'hydra',"),
    (["--info=bogus"], "argument --info/-i: invalid choice: 'bogus'"),
    (["-p"], "argument --package/-p: expected one argument"),
    (["--multirun=3"], "argument --multirun/-m: ignored explicit argument '3'"),
    (["--config-name"], "argument --config-name/-cn: expected one argument"),
    (  # Hydra's words alone said what was wrong, not what to do
        ["--config-name", "nosuch"],
        "Cannot find primary config 'nosuch'. Check that it's in your config search path:"
        " --config-name names robustai's own (train, evaluate) and --config-path a folder"
        " holding it; to add options of your own, leave both out and give --config-dir",
    ),
    # attack=none took any attack's keys (recorded in .hydra/ as if applied)
    (["attack=none", "+attack.steps=5"], "attack.steps: attack 'none' does not take steps"),
    (["trainer.resume="], "trainer.resume is empty: give the run folder to continue"),
    (["hydra.run.dir="], "hydra.run.dir is empty: give the run folder, e.g. hydra.run.dir="),
    (["-m", "hydra.sweep.dir=", "attack.eps=0.1,0.2"], "hydra.sweep.dir is empty: give the sweep"),
    (["~data"], "name refers to data.name, which is not set: choose data=<option> (see --help)"),
    (["trainer.lr=${nowhere}"], "trainer.lr refers to nowhere, which is not set: set it"),
    (
        ["hparams_search=digits_optuna", "hydra.sweeper.params.attack.eps=interval(0.05,0.2)"],
        "hydra.sweeper.params.attack.eps=interval(0.05,0.2): Hydra's own settings take one "
        "value, not a sweep; write attack.eps=interval(0.05,0.2) to search it",
    ),
    (["-m", "hydra.job.name=a,b"], "hydra.job.name=a,b: Hydra's own settings take one value"),
    (["data=null"], "data=null: data is a config group: choose one of its options (valid: "),
    (["experiment=null"], "mnist_idx_fgsm_rs), or leave it out with ~experiment"),
    (["hydra/launcher=null"], "hydra/launcher=null: hydra/launcher is a config group"),
    (  # was an overflow traceback from torch after the training, its weights and metrics lost
        ["evaluator.seed=99999999999999999999"],
        "evaluator.seed=99999999999999999999: must be a whole number in [0, 2**62)",
    ),
    (["evaluator.seed=-1"], "evaluator.seed=-1: must be a whole number in [0, 2**62)"),
    (  # was a traceback when the job started
        ["hydra.job_logging.handlers.file.filename=${hydra.job.bogus}/x.log"],
        "filename=${hydra.job.bogus}/x.log: hydra.job.bogus is no value Hydra sets; use one",
    ),
    (  # read through the hydra: resolver: None/x.log, a traceback when the file opened
        ["hydra.job_logging.handlers.file.filename=${hydra:job.bogus}/x.log"],
        "filename=${hydra:job.bogus}/x.log: hydra.job.bogus is no value Hydra sets; use one",
    ),
    (
        ["hydra.job_logging.handlers.file.filename=${hydra.runtime.choices.atack}.log"],
        "hydra.runtime.choices.atack is no value Hydra sets",
    ),
]


@pytest.mark.parametrize(("overrides", "message"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_config_exits_2_with_one_line(
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
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("robustai train: error: ")
    assert message in lines[0]
    assert list(tmp_path.iterdir()) == []  # nothing was written: no run folder, no log


@pytest.mark.parametrize(
    ("override", "line"),
    [
        ("trainer.watchdog.max_drop=2", "trainer.watchdog.max_drop=2.0: must be in [0, 1]"),
        ("evaluator.sanity.tolerance=-1", "evaluator.sanity.tolerance=-1.0: must be in [0, 1)"),
        (
            "attack.eps=2",
            "attack.eps=2.0: must be in [0, 1] (inputs are in [0, 1]; e.g. 0.1 or 8/255)",
        ),
    ],
)
def test_only_eps_keys_get_the_eps_hint(
    override: str, line: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["train", override])
    assert capsys.readouterr().err.strip() == f"robustai train: error: {line}"


def test_bad_config_from_the_shell_has_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "robustai", "train", "attack.eps=2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "robustai train: error: attack.eps=2.0: must be in [0, 1] (inputs are in [0, 1]; "
        "e.g. 0.1 or 8/255)"
    )
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / "experiments").exists()


def test_missing_data_set_exits_2_naming_folder_and_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found only once the run starts (Hydra has made the run folder), still one line, exit 2."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "train",
                "data=mnist",
                f"data.root={tmp_path / 'nodata'}",
                f"hydra.run.dir={tmp_path / 'run'}",
            ]
        )
    assert exc.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert str(tmp_path / "nodata" / "MNIST") in line
    assert "data.download=true" in line
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_unknown_command_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fly"]) == 2
    assert "unknown command 'fly'; valid: train" in capsys.readouterr().err
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "usage: robustai" in out
    assert main([]) == 2  # a mistake: the usage goes to stderr, as an error would
    got = capsys.readouterr()
    assert got.out == "" and "usage: robustai" in got.err


@pytest.mark.parametrize(
    "command",
    [["--help"], ["train", "--help"], ["evaluate", "--help"], ["train", "--info", "config"]],
)
def test_a_reader_that_stops_early_ends_the_command_quietly(command: list[str]) -> None:
    """`robustai users token list | head`: the reader closes the pipe before all is written
    (here before anything is). The command ends like other Unix tools (status 128 + SIGPIPE),
    without a BrokenPipeError traceback on stderr (`train --help` printed one, exit 1)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "robustai", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # long before the interpreter has started and written the usage
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=120)
    # --info writes through logging, whose handler drops what it cannot write (it printed
    # "--- Logging error ---" and a traceback per record): nothing is left to fail at exit
    assert code == (0 if "--info" in command else 141)
    assert err == ""


def test_train_help_lists_groups_and_options(capsys: pytest.CaptureFixture[str]) -> None:
    proc = robustai("train", "--help", cwd=Path.cwd())
    assert proc.returncode == 0
    assert "== Config groups ==" in proc.stdout
    assert "attack: fgsm, fgsm_rs, none, pgd" in proc.stdout
    assert "model: mlp, preact_resnet18, small_cnn" in proc.stdout
    for group in ("data:", "evaluator:", "trainer:", "logger:", "experiment:"):
        assert group in proc.stdout


def test_a_finished_run_without_checkpoints_is_not_trained_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder with a run's weights but no checkpoint (trainer.checkpoint_every=0) has nothing
    to continue: training there would overwrite the weights and metrics."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text('{"clean_acc": 0.5}')
    (run / "weights.safetensors").write_bytes(b"weights")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["train", f"hydra.run.dir={run}"])
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "holds a finished run" in lines[0], lines
    assert sorted(p.name for p in run.iterdir()) == ["metrics.json", "weights.safetensors"]
    assert (run / "weights.safetensors").read_bytes() == b"weights"


def test_a_run_into_an_evaluations_folder_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Taken as an empty folder (no weights, no metrics.json): the run wrote its report.json,
    report.md and .hydra/ record over the evaluation's."""
    ev = tmp_path / "evaluate"
    ev.mkdir()
    (ev / "report.json").write_text('{"clean_acc": 0.5}')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["train", f"hydra.run.dir={ev}"])
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "holds a finished run or evaluation (report.json)" in lines[0]
    assert [p.name for p in ev.iterdir()] == ["report.json"]


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_a_run_into_a_sweeps_own_folder_is_refused(
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """hydra.run.dir=<a finished sweep's folder> wrote the run's weights and metrics beside the
    members' folders, and robustai summarize then listed it as a member "." (maybe the best)."""
    sweep = tmp_path / "sweep"
    (sweep / "0").mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    # Optuna writes no multirun.yaml: its results file when done, member folders before
    optuna, running = tmp_path / "optuna", tmp_path / "running"
    (optuna / "0").mkdir(parents=True)
    (optuna / "optimization_results.yaml").write_text("name: optuna\n")
    (running / "3" / ".hydra").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    for folder, sign in (
        (sweep, "multirun.yaml"),
        (optuna, "optimization_results.yaml"),
        (running, "3/.hydra/"),
    ):
        before = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
        args = [f"hydra.run.dir={folder}"] + (["checkpoint=run"] if command == "evaluate" else [])
        with pytest.raises(SystemExit) as exc:
            main([command, *args])
        assert exc.value.code == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1, lines
        assert f"hydra.run.dir={folder} is a sweep's folder (it holds {sign})" in lines[0]
        assert "give another hydra.run.dir" in lines[0]
        assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == before


@pytest.mark.parametrize("command", ["train", "evaluate"])
@pytest.mark.parametrize(
    "override",
    [
        "hydra.run.dir=runs/x${hydra.job.num}",
        "hydra.run.dir=runs/x${hydra.job.id}",
        "hydra.job_logging.handlers.file.filename=${hydra.runtime.output_dir}/${hydra:job.num}.log",
    ],
)
def test_a_single_run_named_with_a_sweep_only_value_is_refused(
    command: str,
    override: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Hydra sets hydra.job.num and hydra.job.id for sweep members only: a single run whose
    folder or log file read them failed at its start with an omegaconf traceback."""
    monkeypatch.chdir(tmp_path)
    args = [override] + (["checkpoint=run"] if command == "evaluate" else [])
    with pytest.raises(SystemExit) as exc:
        main([command, *args])
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert "is set for sweep members only (-m)" in lines[0]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "flags",
    [
        ["--config-name=train"],
        ["--config-name", "train"],
        ["--config-dir={configs}", "--config-name=train"],
        ["-cd", "{configs}", "-cn", "train"],
    ],
)
def test_config_flags_long_and_short(flags: list[str], tmp_path: Path) -> None:
    """The long forms were read as one flag ("co"): --config-name=train became a config
    folder named train."""
    configs = str(Path(__file__).resolve().parents[2] / "configs")
    proc = robustai("train", *(f.format(configs=configs) for f in flags), "--cfg", "job",
                    cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "optimized_metric: worst_case_acc" in proc.stdout


def test_overrides_may_come_before_and_after_flags(tmp_path: Path) -> None:
    """Hydra's parser takes the overrides in one run: `trainer.epochs=2 --cfg job attack.eps=0.2`
    (or `a=1 -m b=2,3`) ended in "unrecognized arguments" and Hydra's whole usage text."""
    proc = robustai("train", "trainer.epochs=2", "--cfg", "job", "attack.eps=0.2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "  epochs: 2\n" in proc.stdout and "  eps: 0.2\n" in proc.stdout


def test_config_dir_adds_a_folder_after_robustais_configs(tmp_path: Path) -> None:
    """Hydra's --config-dir adds a folder to search after the main configs (one's own
    experiment files); it was taken for the primary folder ("Cannot find primary config
    'train'"), and a full edited copy there was checked while Hydra ran the originals."""
    extra = tmp_path / "mine" / "experiment"
    extra.mkdir(parents=True)
    (extra / "tiny.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /data: synthetic\n"
        "trainer:\n  epochs: 1\n  watchdog:\n    samples: 16\n"
        "evaluator:\n  sanity:\n    enabled: false\n  curve:\n    enabled: false\n"
    )
    run = tmp_path / "run"
    proc = robustai(
        "train", "--config-dir", str(tmp_path / "mine"), "experiment=tiny",
        "data.num_samples=128", "logger=none", f"hydra.run.dir={run}", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 1
    proc = robustai("train", "-cd", str(tmp_path / "nowhere"), "--cfg", "job", cwd=tmp_path)
    assert proc.returncode == 2 and "-cd " in proc.stderr and "no such folder" in proc.stderr


def test_config_dir_with_a_trailing_flag_a_comma_or_bad_yaml(tmp_path: Path) -> None:
    """The folder became an override after the user's flags (argparse: "unrecognized
    arguments" after a trailing --cfg job or -m), was split at a comma, and a config file of
    one's own that is no YAML was a traceback."""
    mine = tmp_path / "co,mma"
    (mine / "experiment").mkdir(parents=True)
    (mine / "experiment" / "e7.yaml").write_text("# @package _global_\ntrainer:\n  epochs: 7\n")
    (mine / "experiment" / "bad.yaml").write_text("trainer:\n  epochs: 1: 2\n")

    def train(*args: str) -> subprocess.CompletedProcess[str]:
        return robustai("train", "--config-dir", str(mine), *args, cwd=tmp_path)

    proc = train("experiment=e7", "--cfg", "job")
    assert proc.returncode == 0, proc.stderr
    assert "epochs: 7" in proc.stdout
    proc = train("--info")  # the folder was taken for --info's optional value
    assert proc.returncode == 0, proc.stderr
    assert f"file://{mine}" in proc.stdout
    proc = train("experiment=bad")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "a config file is not valid YAML: mapping values are not allowed here" in proc.stderr
    assert "bad.yaml, line 2, column 12" in proc.stderr
    (mine / "mytrain.yaml").write_text("defaults:\n  - train\n  - _self_\n")
    proc = train("--config-name", "mytrain", "--cfg", "job")  # Hydra: "Cannot find primary"
    assert proc.returncode == 2 and "--config-name mytrain: mytrain.yaml is in the" in proc.stderr


def test_ctrl_c_during_the_checks_before_a_run_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C in the first seconds (the pre-flight checks compose and validate the config)
    ended in a 20-40 frame traceback; a run's own handling starts later."""
    import robustai.cli.train as train

    def ctrl_c(cfg):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "check_train_config", ctrl_c)
    monkeypatch.chdir(tmp_path)
    assert main(["train", "trainer.epochs=1"]) == 130
    assert capsys.readouterr().err == "robustai train: interrupted\n"
    assert list(tmp_path.iterdir()) == []


def test_resume_from_a_checkpoint_file_names_its_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """trainer.resume=<run>/checkpoints/epoch-0001.json was taken as the run folder to write in,
    and refused as "a file, not a folder; set hydra.run.dir=...", advice that started a new
    run. The folder holding it is what resumes."""
    checkpoint = tmp_path / "run" / "checkpoints" / "epoch-0001.json"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_text("{}")
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    for given, said in (
        (checkpoint, f"trainer.resume={checkpoint} is a file; give the run folder to continue"),
        # the checkpoints folder itself said "no checkpoint in .../checkpoints/checkpoints"
        (checkpoint.parent, f"trainer.resume={checkpoint.parent} is a run's checkpoints folder"),
    ):
        with pytest.raises(SystemExit) as exc:
            main(["train", f"trainer.resume={given}"])
        assert exc.value.code == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert said in line and f"(trainer.resume={run})" in line
        assert [p.name for p in (run / "checkpoints").iterdir()] == ["epoch-0001.json"]


def test_a_password_inside_a_refused_value_is_not_echoed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The one line names the value at fault: a ``password=...`` inside it (a URL's query, a
    path) reached the terminal and CI logs, where a URL's user:password did not."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["train", "trainer.resume='/nowhere/x?password=RESUMEPW123'"])
    assert exc.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "RESUMEPW123" not in line
    assert "trainer.resume=/nowhere/x?password=<redacted>: " in line


def test_a_single_run_that_fails_after_it_started_says_why_in_its_log(tmp_path: Path) -> None:
    """A check that needs the data (DP-SGD's delta below 1/N) stops the run after train.log has
    begun: the log ended at "objective: ...", without the reason a sweep member's log gives.
    The reason goes to the log file; the console keeps its one line on stderr."""
    run = tmp_path / "run"
    done = robustai(
        "train", "privacy=dpsgd", "model=mlp", "attack=none", "privacy.delta=0.5",
        "data=synthetic", "data.num_samples=256", "trainer.epochs=1", f"hydra.run.dir={run}",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "delta=0.5 must be in (0, 1/N)" in line
    last = (run / "train.log").read_text().strip().splitlines()[-1]
    assert "[ERROR] - run failed: privacy=dpsgd: delta=0.5 must be in (0, 1/N)" in last
    assert "run failed" not in done.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--package", "_global_", "--cfg", "job"],  # Hydra's name for the whole config
        ["train", "--hydra-help", "attack=pgd"],
        ["evaluate", "--hydra-help", "checkpoint=some/run"],  # was a traceback
        ["train", "--info", "attack=pgd"],  # an override after --info is no value of it
    ],
    ids=" ".join,
)
def test_valid_hydra_flags_with_overrides_work(args: list[str], tmp_path: Path) -> None:
    proc = robustai(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout
