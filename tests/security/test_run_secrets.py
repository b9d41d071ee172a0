"""No secret reaches the run folder: overrides, env vars and the signing key are searched for in
every file a real `robustai train` writes (configs, logs, metrics, meta.json, event files)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # two real `robustai train` processes

TINY = [
    "data=synthetic",
    "data.num_samples=128",
    "trainer.epochs=1",
    "trainer.watchdog.samples=16",
    "logger.image_grid=2",
]
OVERRIDE_SECRET = "ovr-s3cret-Zq81xPp"  # given on the command line
ENV_SECRET = "env-s3cret-Lk27vNw"  # in the environment, named by the config
SIGNING_KEY = "sign-s3cret-Hh64mTd-0123456789"  # ROBUSTAI_SIGNING_KEY
TASK_SECRET = "task-s3cret-Yu55cRe"  # a task override under a secret-looking key
PG_SECRET = "pg-s3cret-Rb39sKt"  # libpq's PGPASSWORD: "password" inside one word
# Pairs inside values whose keys do not look secret: a quoted password with a space in a
# connection string, an api_key in a URL's query, a password in a JDBC URL's query.
CONN_SECRET, QUERY_SECRET, JDBC_SECRET = "conn s3cret-Qw12", "query-s3cret-Ab34", "jdbc-s3cret-Cd5"
# Unquoted with spaces in a connection string (its first word is a key of the trainer's saved
# state), and an Authorization header's token.
SPACED_SECRET, BEARER_SECRET = "correct horse-Gh7 staple", "bearer-s3cret-Ef6"


def train(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "robustai", "train", *args, *TINY],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore", **env},
    )


def files_holding(folder: Path, secrets: list[str]) -> dict[str, list[str]]:
    """Every file below ``folder`` (binary ones included) that contains one of ``secrets``."""
    hits: dict[str, list[str]] = {}
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found = [s for s in secrets if s.encode() in data]
            if found:
                hits[str(path.relative_to(folder))] = found
    return hits


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("secrets")
    proc = train(
        f"hydra.run.dir={tmp / 'run'}",
        f"+hydra.job.env_set.TRACKER_API_KEY={OVERRIDE_SECRET}",
        "+hydra.job.env_set.UPLOAD_TOKEN=${oc.env:TRACKER_TOKEN}",  # a config naming an env var
        f"+hydra.job.env_set.PGPASSWORD={PG_SECRET}",
        f"+hydra.job.env_set.DB_CONN=\"Server=x;User ID=sa;Password='{CONN_SECRET}';\"",
        f'+hydra.job.env_set.TRACKER_URL="https://api.example/v1?api_key={QUERY_SECRET}&x=1"',
        f'+hydra.job.env_set.DB_URL="jdbc:postgresql://h/db?user=u&password={JDBC_SECRET}"',
        f'+hydra.job.env_set.DB_CONN2="Server=x;Password={SPACED_SECRET};Uid=u"',
        f'+hydra.job.env_set.HEADERS="Authorization: Bearer {BEARER_SECRET}"',
        cwd=tmp,
        env={"TRACKER_TOKEN": ENV_SECRET, "ROBUSTAI_SIGNING_KEY": SIGNING_KEY},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "run"


def test_no_secret_in_any_file_of_the_run_folder(run_dir: Path) -> None:
    names = {p.name for p in run_dir.iterdir()}
    assert {".hydra", "train.log", "metrics.json", "meta.json", "weights.safetensors"} <= names
    assert any(n.startswith("events.out.tfevents") for n in names)
    secrets = [OVERRIDE_SECRET, ENV_SECRET, SIGNING_KEY, PG_SECRET]
    pairs = [CONN_SECRET, QUERY_SECRET, JDBC_SECRET, "horse-Gh7 staple", BEARER_SECRET]
    assert files_holding(run_dir, [*secrets, *pairs]) == {}


def test_the_scrub_left_every_json_file_loadable(run_dir: Path) -> None:
    """The first word of the spaced password was taken for the whole secret, and the check at
    the end of the job replaced it everywhere, a checkpoint's "correct" key too: the run could
    not be resumed."""
    checkpoints = list(run_dir.rglob("epoch-*.json"))
    assert checkpoints
    for path in run_dir.rglob("*.json"):
        json.loads(path.read_text())
    assert all("<redacted>" not in p.read_text() for p in checkpoints)


def test_hydra_files_record_the_overrides_redacted(run_dir: Path) -> None:
    hydra = (run_dir / ".hydra" / "hydra.yaml").read_text()
    assert "TRACKER_API_KEY: <redacted>" in hydra
    assert "+hydra.job.env_set.TRACKER_API_KEY=<redacted>" in hydra
    assert "UPLOAD_TOKEN: <redacted>" in hydra  # Hydra resolved the reference: hidden too
    assert "PGPASSWORD: <redacted>" in hydra
    # the callback's own settings are no secret (named redact_secrets, they were taken for one,
    # and ".hydra" was cut out of every log line and file)
    assert "_target_: robustai.cli.redaction.RedactSecrets" in hydra
    assert "output_subdir: .hydra" in hydra
    assert (run_dir / ".hydra" / "config.yaml").read_text().count("eps:") >= 1
    overrides = (run_dir / ".hydra" / "overrides.yaml").read_text()
    assert "trainer.epochs=1" in overrides


def test_the_signing_key_was_used(run_dir: Path) -> None:
    from robustai.security import verify_meta

    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["signature"]["algorithm"] == "hmac-sha256"
    assert verify_meta(meta, SIGNING_KEY.encode())  # signed with the key from the environment
    assert not verify_meta(meta, b"another-key-0123456789abcdefgh")


def test_secret_task_override_in_a_sweep_is_refused_without_its_value(
    tmp_path: Path,
) -> None:
    """A secret under a secret-looking key that no model takes, in a sweep: the sweep is refused
    before it starts, and the one line names the key, never the value."""
    proc = train(
        "-m",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        f"+model.params.api_token={TASK_SECRET}",
        cwd=tmp_path,
        env={"ROBUSTAI_SIGNING_KEY": SIGNING_KEY},
    )
    assert proc.returncode == 2
    assert "model.params.api_token: model=small_cnn has no such parameter" in proc.stderr
    assert TASK_SECRET not in proc.stdout + proc.stderr
    assert not (tmp_path / "sweep").exists()
    assert files_holding(tmp_path, [TASK_SECRET, SIGNING_KEY]) == {}


def test_a_sweep_member_and_the_sweep_record_a_secret_redacted(tmp_path: Path) -> None:
    """The same secret override in a real (one-member) sweep: neither the member's folder nor
    the sweep's own multirun.yaml holds it, and the member's .hydra/ records it redacted."""
    proc = train(
        "-m",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        f"+hydra.job.env_set.TRACKER_API_KEY={OVERRIDE_SECRET}",
        "trainer.seed=0",
        cwd=tmp_path,
        env={"ROBUSTAI_SIGNING_KEY": SIGNING_KEY},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = tmp_path / "sweep"
    assert (sweep / "multirun.yaml").is_file() and (sweep / "0" / "metrics.json").is_file()
    hydra = (sweep / "0" / ".hydra" / "hydra.yaml").read_text()
    assert "TRACKER_API_KEY: <redacted>" in hydra
    assert OVERRIDE_SECRET not in proc.stdout + proc.stderr
    assert files_holding(tmp_path, [OVERRIDE_SECRET, SIGNING_KEY]) == {}


@pytest.mark.parametrize(
    ("override", "ending"),
    [
        ("trainer.lr=${oc.env:TRACKER_TOKEN}", ""),
        ("attack=${oc.env:TRACKER_TOKEN}", ""),
        # an env-file or a mounted secret ends in a newline: the one line cut the value there
        ("trainer.lr=${oc.env:TRACKER_TOKEN}", "\n"),
        ("trainer.lr=${oc.env:TRACKER_TOKEN}", "\r\n"),
    ],
)
def test_a_refused_value_from_a_secret_variable_is_not_echoed(
    tmp_path: Path, override: str, ending: str
) -> None:
    """The one line names the value at fault; resolved from a secret-looking variable, that
    value is the secret (it was printed)."""
    proc = train(
        override, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path,
        env={"TRACKER_TOKEN": ENV_SECRET + ending},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("robustai train: error: ") and "<redacted>" in line, line
    assert ENV_SECRET not in proc.stdout + proc.stderr


def test_a_failed_members_status_holds_no_secret_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """status.json kept the error and its traceback as raised: a value resolved from a secret
    variable (here with the newline an env-file leaves) landed in the run folder."""
    from robustai.cli.sweep_status import record_failure

    monkeypatch.setenv("TRACKER_TOKEN", ENV_SECRET + "\n")
    try:
        raise ValueError(f"trainer.lr: Value '{ENV_SECRET}\n' could not be converted")
    except ValueError as e:
        record_failure(tmp_path, e)
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["error"] == "trainer.lr: Value '<redacted>' could not be converted"
    assert ENV_SECRET not in (tmp_path / "status.json").read_text()


def test_a_submitit_sweep_pickles_no_secret_value(tmp_path: Path) -> None:
    """submitit's launchers (local here; Slurm's take the same path) pickle themselves, the
    Hydra callbacks included, into the sweep's .submitit/ folder: the secret values the
    redaction callback had collected went into those files."""
    proc = train(
        "-m",
        "hydra/launcher=submitit_local",
        "hydra.launcher.cpus_per_task=1",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        "trainer.seed=0",
        cwd=tmp_path,
        env={"ROBUSTAI_SIGNING_KEY": SIGNING_KEY, "TRACKER_API_TOKEN": ENV_SECRET},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = tmp_path / "sweep"
    assert (sweep / "0" / "metrics.json").is_file()
    assert any((sweep / ".submitit").rglob("*.pkl"))  # what was searched
    assert files_holding(tmp_path, [ENV_SECRET, SIGNING_KEY]) == {}


def test_the_redaction_callback_pickles_without_its_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pickle

    from omegaconf import OmegaConf

    from robustai.cli.redaction import RedactSecrets

    monkeypatch.setenv("TRACKER_API_TOKEN", ENV_SECRET)
    callback = RedactSecrets()
    callback.on_multirun_start(OmegaConf.create({"trainer": {"seed": 0}}))
    assert ENV_SECRET in callback._values  # collected, for the scrubbing in this process
    copy = pickle.loads(pickle.dumps(callback))
    assert ENV_SECRET.encode() not in pickle.dumps(callback)
    assert copy._values == set() and copy.output_subdir == callback.output_subdir
    assert ENV_SECRET in callback._values  # pickling left the original as it was
