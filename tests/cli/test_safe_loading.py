"""Nothing robustai reads from disk is ever unpickled: a booby-trapped file is refused, inertly."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import pytest

from robustai.cli.main import main
from robustai.errors import CheckpointError
from robustai.models import load_model
from robustai.training import read_checkpoint


class _Trap:
    """Unpickling this object creates a file (a stand-in for arbitrary code execution)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _trap_bytes(marker: Path) -> bytes:
    data = pickle.dumps(_Trap(marker))
    return data


def _trapped_checkpoint(run: Path, marker: Path) -> Path:
    """A checkpoint folder whose tensor file is the trap, with valid JSON and a matching hash."""
    folder = run / "checkpoints"
    folder.mkdir(parents=True)
    trap = _trap_bytes(marker)
    (folder / "epoch-0001.safetensors").write_bytes(trap)
    payload = {
        "format_version": 1, "epoch": 1, "step": 0, "tensors_file": "epoch-0001.safetensors",
        "tensors_sha256": hashlib.sha256(trap).hexdigest(), "info": {}, "state": {},
    }  # fmt: skip
    (folder / "epoch-0001.json").write_text(json.dumps(payload))
    return folder


def test_pickle_named_as_weights_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    run.mkdir()
    trap = _trap_bytes(marker)
    (run / "weights.safetensors").write_bytes(trap)
    meta = {
        "model": {"name": "small_cnn", "params": {}},
        "input_shape": [1, 8, 8],
        "num_classes": 10,
        "normalization": {"mean": [0.0], "std": [1.0]},
        "weights_sha256": hashlib.sha256(trap).hexdigest(),  # the hash even matches
    }
    (run / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(
        CheckpointError, match=r"weights\.safetensors is not a readable safetensors"
    ):
        load_model(run)
    assert not marker.exists()


def test_pickle_named_as_training_checkpoint_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    folder = _trapped_checkpoint(tmp_path / "run", marker)
    with pytest.raises(CheckpointError, match=r"epoch-0001\.safetensors is not a readable"):
        read_checkpoint(folder / "epoch-0001.json")
    assert not marker.exists()


def test_resuming_from_a_trapped_checkpoint_exits_2_and_runs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "pwned"
    _trapped_checkpoint(tmp_path / "run", marker)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["train", "data=synthetic", "logger=none", f"trainer.resume={tmp_path / 'run'}"])
    assert exc.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "epoch-0001.safetensors is not a readable safetensors file" in line
    assert not marker.exists()
    assert not (tmp_path / "run" / "weights.safetensors").exists()


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_hydras_rerun_of_a_pickled_config_is_refused_and_unpickles_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    """Hydra's --experimental-rerun unpickles the file it is given (the trap ran, then a
    traceback and exit 1)."""
    marker = tmp_path / "pwned"
    trap = tmp_path / "config.pickle"
    trap.write_bytes(_trap_bytes(marker))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main([command, "--experimental-rerun", str(trap)])
    assert exc.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--experimental-rerun: robustai never unpickles a file" in line
    assert not marker.exists()


def test_the_trap_really_works_when_unpickled(tmp_path: Path) -> None:
    """Guards the tests above: the payload is live, so its inertness there means something."""
    marker = tmp_path / "pwned"
    pickle.loads(_trap_bytes(marker))
    assert marker.exists()
