"""The bad-input matrix: each row ends with one clear line and exit 2 (bad input) or 1 (run
failure), never a traceback, and never leaves a half-written file where a good one was."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from robustai.cli.main import main

TINY = [
    "trainer.epochs=1",
    "logger=none",
    "trainer.watchdog.samples=16",
]

# (id, overrides; {tmp} is the test's folder, expected exit status, text of the one line)
MATRIX = [
    (
        "wrong type",
        ["trainer.epochs=three"],
        2,
        "trainer.epochs=three: must be a whole number, e.g. trainer.epochs=",
    ),
    ("wrong type, float", ["attack.eps=high"], 2, "attack.eps=high: must be a number, e.g."),
    ("wrong type, bool", ["trainer.amp=maybe"], 2, "trainer.amp=maybe: must be true or false"),
    ("out of range", ["attack.eps=1.5"], 2, "attack.eps=1.5: must be in [0, 1]"),
    ("unknown name", ["model=vit"], 2, "model=vit: unknown option"),
    ("unknown key", ["trainer.lr_max=1"], 2, "trainer.lr_max: no such key"),
    (
        "a group added with + that the defaults have",  # Hydra's "Multiple values for ..."
        ["+attack=pgd"],
        2,
        "+attack=pgd: attack is already in the defaults; drop the +: attack=pgd",
    ),
    (
        "two attacks with one metrics key",  # was a traceback after training, outputs lost
        ["evaluator.attacks=[{{name:apgd,steps:5}},{{name:apgd,steps:10}}]"],  # format()
        2,
        "evaluator.attacks: two attacks have the metric key apgd_ce@0.1",
    ),
    (
        "an eps in an evaluator attack",  # was silently replaced by evaluator.eps
        ["evaluator.attacks=[{{name:fgsm,eps:0.3}}]"],
        2,
        "evaluator.attacks[0].eps: the evaluator runs each attack at every eps of evaluator.eps",
    ),
    (
        "an evaluator attack in train mode",  # chose its examples against dropout draws
        ["evaluator.attacks=[{{name:pgd,steps:2,model_mode:train}}]"],
        2,
        "evaluator.attacks[0].model_mode=train: robust accuracy is counted with the model in eval",
    ),
    (
        "a sanity tolerance of 1",
        ["evaluator.sanity.tolerance=1"],
        2,
        "evaluator.sanity.tolerance=1.0: must be in [0, 1)",
    ),
    (
        "a seed torch cannot take",
        ["trainer.seed=99999999999999999999"],
        2,
        "trainer.seed=99999999999999999999: must be a whole number in [0, 2**62)",
    ),
    ("NaN noise in synthetic data", ["data.noise=nan"], 2, "data.noise=nan: must be >= 0"),
    (
        "an eps ramp as long as the training",  # trained below attack.eps from start to end
        ["trainer.eps_warmup_epochs=1"],
        2,
        "trainer.eps_warmup_epochs=1.0: the eps ramp must end before training does",
    ),
    (
        "a model too large to build",  # was the allocator's traceback
        ["model=mlp", "model.params.hidden=[100000000000]"],
        2,
        "model=mlp with model.params={{'hidden': [100000000000]}} cannot be built here",
    ),
    (
        "a synthetic data set too large to build",  # was the allocator's traceback
        ["data=synthetic", "data.num_samples=1000000000"],
        2,
        "data=synthetic: 1000000000 images of shape (1, 8, 8) need 238 GiB, more than",
    ),
    (
        "infinite weight decay",  # trained into "the loss became NaN ... lower trainer.lr"
        ["trainer.weight_decay=inf"],
        2,
        "trainer.weight_decay=inf: must be a finite number",
    ),
    ("hydra's --version", ["--version"], 2, "--version: `robustai --version` prints robustai"),
    ("a --package not in the config", ["--cfg", "job", "-p", "nope"], 2, "--package nope: no such"),
    (
        "shell completion without a shell",  # was a traceback
        ["--shell-completion"],
        2,
        "--shell-completion needs install=SHELL, uninstall=SHELL or query=SHELL",
    ),
    (
        "missing data folder",
        ["data=mnist", "data.root={tmp}/nowhere"],
        2,
        "MNIST not found under {tmp}/nowhere/MNIST; set data.download=true",
    ),
    (
        "missing IDX files",
        ["data=idx", "data.root={tmp}/nowhere"],
        2,
        "IDX file not found: {tmp}/nowhere/t10k-images-idx3-ubyte.gz; point data.root at the"
        " folder holding it",
    ),
    (
        "model does not fit the data shape",
        ["data.input_shape=[1,2,2]"],
        2,
        "model=small_cnn does not fit data=synthetic of shape (1, 2, 2): small_cnn needs inputs "
        "of at least 4x4 pixels",
    ),
    (
        "loss becomes NaN",
        ["trainer.lr=1e30"],
        1,
        "the loss became NaN or infinite at epoch 1, step",
    ),
    (
        "unwritable output folder",
        ["hydra.run.dir=/proc/robustai-run"],
        2,
        "cannot write the run folder /proc/robustai-run",
    ),
    (
        "output folder under a file",
        ["hydra.run.dir={tmp}/a-file/run"],
        2,
        "{tmp}/a-file is a file, not a folder",
    ),
    (
        "code in a _target_",
        ["+hydra.callbacks.x._target_=os.system"],
        2,
        "hydra.callbacks.x._target_=os.system: not allowed",
    ),
    (
        "subprocess in a _target_",
        ["+hydra.callbacks.x._target_=subprocess.run"],
        2,
        "hydra.callbacks.x._target_=subprocess.run: not allowed",
    ),
    (
        "an unpickler reached through an allowed package",
        [
            "+hydra.callbacks.x._target_=optuna.samplers._tpe.sampler.np.load",
            "+hydra.callbacks.x.file={tmp}/evil.pt",
            "+hydra.callbacks.x.allow_pickle=true",
        ],
        2,
        "optuna.samplers._tpe.sampler.np is the module numpy, imported there",
    ),
    (
        "a function imported into an allowed package",
        ["+hydra.callbacks.x._target_=hydra._internal.core_plugins.basic_launcher.run_job"],
        2,
        "basic_launcher.run_job is defined in hydra.core.utils",
    ),
    (
        "robustai code other than its callbacks",  # it wrote any text to any path
        [
            "+hydra.callbacks.x._target_=robustai.fileio.write_text",
            "+hydra.callbacks.x.path={tmp}/pwned.txt",
            "+hydra.callbacks.x.text=x",
        ],
        2,
        "hydra.callbacks.x._target_=robustai.fileio.write_text: not allowed; a config may only",
    ),
    (
        "a _target_ made by an interpolation",  # a string until resolved, then instantiated
        ["+hydra.callbacks.x='${{oc.create:{{_target_:os.mkdir,_args_:[{tmp}/pwned]}}}}'"],
        2,
        "hydra.callbacks.x._target_=os.mkdir: not allowed",
    ),
    (
        "a function for the search space",  # the Optuna sweeper imports and calls it
        ["hparams_search=digits_optuna", "hydra.sweeper.custom_search_space=builtins.print"],
        2,
        "hydra.sweeper.custom_search_space=builtins.print: not allowed",
    ),
    (
        "code as a logging handler",  # logging.config.dictConfig calls the class it names
        ["+hydra.job_logging.handlers.x={{class:os.mkdir,path:{tmp}/pwned}}"],
        2,
        "hydra.job_logging.handlers.x.class=os.mkdir: not allowed; a logging config may name only",
    ),
    (
        "a module imported by a logging config",
        ["+hydra.job_logging.handlers.x={{class:logging.StreamHandler,stream:'ext://this'}}"],
        2,
        "hydra.job_logging.handlers.x.stream=ext://this: not allowed",
    ),
    (
        "CUDA graphs of a compiled model",
        ["trainer.compile=true", "evaluator.cuda_graphs=true"],
        2,
        "capturing a compiled model is not supported",
    ),
    ("no EOT passes", ["evaluator.eot_iter=0"], 2, "evaluator.eot_iter=0: must be >= 1"),
    (
        "an attack key its entry does not list",
        ["evaluator.attacks.1.eot_iter=4"],
        2,
        "evaluator.attacks.1.eot_iter: not set in this attack entry; add it with"
        " +evaluator.attacks.1.eot_iter=<value> (the entry sets name, steps, restarts)",
    ),
    (
        "EOT on a gradient-free attack",
        ["evaluator=standard", "+evaluator.attacks.2.eot_iter=4"],
        2,
        "evaluator.attacks[2].eot_iter: attack 'square' does not take eot_iter",
    ),
    (
        "a DLR training attack on two classes",
        [
            "data.num_classes=2",
            "attack=pgd",
            "attack.name=apgd",
            "~attack.random_start",
            "+attack.loss=dlr",
        ],
        2,
        "attack: apgd_dlr needs at least 3 classes; the data has 2 (use attack=pgd, or"
        " attack.loss=ce)",
    ),
    (
        "a targeted suite on three classes",
        ["data.num_classes=3", "evaluator=standard"],
        2,
        "evaluator.attacks[1]: apgd_t needs at least 4 classes; the data has 3 (use"
        " evaluator=quick, or an untargeted attack there)",
    ),
    (
        "a BatchNorm model and one image per step",
        ["model=preact_resnet18", "model.params.width=4", "data.batch_size=1"],
        2,
        "data.batch_size=1 gives 1 image per step, but model=preact_resnet18 has BatchNorm"
        " layers that see one value per channel for inputs of shape (1, 8, 8)",
    ),
    (
        "resume from nothing",
        ["trainer.resume={tmp}/nowhere"],
        2,
        "trainer.resume={tmp}/nowhere: no such run folder",
    ),
]


@pytest.mark.parametrize(
    ("overrides", "status", "message"), [m[1:] for m in MATRIX], ids=[m[0] for m in MATRIX]
)
def test_bad_input(
    tmp_path: Path,
    overrides: list[str],
    status: int,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # In this process: the command's own code is what is tested, and a CLI process would spend
    # most of its time importing torch. From a shell, one line and no traceback:
    # test_bad_config.py::test_bad_config_from_the_shell_has_no_traceback and the tests below.
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.chdir(tmp_path)
    args = [o.format(tmp=tmp_path) for o in overrides]
    if not any(a.startswith("data=") for a in args):
        args = ["data=synthetic", "data.num_samples=128", *args]
    if not any(a.startswith("hydra.run.dir=") for a in args):
        args.append(f"hydra.run.dir={tmp_path / 'run'}")
    with pytest.raises(SystemExit) as exc:
        main(["train", *TINY, *args])
    out, err = capsys.readouterr()
    assert exc.value.code == status, err[-2000:]
    assert "Traceback" not in err + out
    errors = [ln for ln in err.splitlines() if ln.startswith("robustai train: error: ")]
    assert len(errors) == 1, err[-2000:]
    assert message.format(tmp=tmp_path) in errors[0]
    run = tmp_path / "run"
    if "classes" in message:  # data-dependent, yet refused before any training
        assert "epoch 1/" not in (run / "train.log").read_text()
    # Nothing half-written: no weights or metrics from a failed run, no temporary files left.
    assert not (run / "weights.safetensors").exists()
    assert not (run / "metrics.json").exists()
    assert not list(tmp_path.rglob("*.tmp"))
    assert not list(tmp_path.glob("pwned*"))  # what a refused _target_ would have made


def test_a_pickle_named_by_a_target_is_never_loaded(tmp_path: Path) -> None:
    """Hydra walks ``optuna.samplers._tpe.sampler.np.load`` to numpy.load; the file it names
    must not be unpickled (this one would leave a marker file)."""
    import pickle

    marker = tmp_path / "unpickled"

    class Payload:
        def __reduce__(self) -> tuple:
            return (Path.touch, (marker,))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps(Payload()))
    proc = subprocess.run(
        [sys.executable, "-m", "robustai", "train", *TINY, "data=synthetic",
         "+hydra.callbacks.x._target_=optuna.samplers._tpe.sampler.np.load",
         f"+hydra.callbacks.x.file={tmp_path / 'evil.pt'}", "+hydra.callbacks.x.allow_pickle=true",
         f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2 and "not allowed" in proc.stderr, proc.stderr[-2000:]
    assert not marker.exists()


def test_a_short_signing_key_is_refused_before_any_folder(tmp_path: Path) -> None:
    """An unusable ROBUSTAI_SIGNING_KEY is an environment mistake like a bad override: one line,
    exit 2, and no run folder holding only a log (it used to fail after the folder was made)."""
    proc = subprocess.run(
        [sys.executable, "-m", "robustai", "train", "data=synthetic", "data.num_samples=128",
         *TINY, f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore", "ROBUSTAI_SIGNING_KEY": "short"},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("robustai train: ")]
    assert len(errors) == 1 and "ROBUSTAI_SIGNING_KEY is too short" in errors[0], proc.stderr
    assert "short" not in errors[0].split("too short", 1)[1]  # the key itself is not echoed
    assert not (tmp_path / "run").exists()
