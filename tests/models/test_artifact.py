"""Model files: weights.safetensors + meta.json, checked by sha256, never pickled."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from robustai.errors import CheckpointError, UserError
from robustai.models import build_model, load_model, model_names, read_meta, save_model
from robustai.models.artifact import META, WEIGHTS

INPUT_SHAPES: dict[str, tuple[int, int, int]] = {"preact_resnet18": (3, 32, 32)}
# small widths keep the files small; they also check that params survive the round trip
PARAMS: dict[str, dict[str, Any]] = {
    "mlp": {"hidden": [32, 16]},
    "small_cnn": {"hidden": 20},
    "preact_resnet18": {"width": 8},
}
NUM_CLASSES = 6


def shape_for(name: str) -> tuple[int, int, int]:
    return INPUT_SHAPES.get(name, (1, 8, 8))


def make_and_save(name: str, out: Path) -> tuple[nn.Module, dict[str, Any]]:
    torch.manual_seed(0)
    shape = shape_for(name)
    mean = tuple(0.2 + 0.1 * c for c in range(shape[0]))
    std = tuple(0.25 + 0.05 * c for c in range(shape[0]))
    params = PARAMS.get(name, {})
    model = build_model(name, shape, NUM_CLASSES, mean=mean, std=std, **params)
    model.train()
    model(torch.rand((4, *shape)))  # move BatchNorm running statistics off their defaults
    model.eval()
    spec = {
        "name": name,
        "params": params,
        "input_shape": shape,
        "num_classes": NUM_CLASSES,
        "mean": mean,
        "std": std,
    }
    save_model(model, out, **spec, extra={"note": "test"})
    return model, spec


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    """A small saved mlp, for the tests that break it."""
    out = tmp_path / "run"
    make_and_save("mlp", out)
    return out


def reset_sha(folder: Path) -> None:
    """meta.json's sha256 made to match the weights file as it is now (as an edit would)."""
    meta = json.loads((folder / META).read_text())
    meta["weights_sha256"] = hashlib.sha256((folder / WEIGHTS).read_bytes()).hexdigest()
    (folder / META).write_text(json.dumps(meta))


# ------------------------------------------------------------------------------ round trip
@pytest.mark.parametrize("name", model_names())
def test_round_trip(tmp_path: Path, name: str) -> None:
    out = tmp_path / "run"
    model, spec = make_and_save(name, out)
    loaded, meta = load_model(out)

    x = torch.rand((3, *spec["input_shape"]), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert not loaded.training
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k

    assert meta["model"] == {"name": name, "params": spec["params"]}
    assert meta["input_shape"] == list(spec["input_shape"])
    assert meta["num_classes"] == NUM_CLASSES
    assert meta["normalization"]["mean"] == pytest.approx(spec["mean"])
    assert meta["normalization"]["std"] == pytest.approx(spec["std"])
    assert meta["weights_sha256"] == hashlib.sha256((out / WEIGHTS).read_bytes()).hexdigest()
    assert meta["note"] == "test"
    assert {"format_version", "robustai_version", "torch_version"} <= meta.keys()
    # meta.json on disk says the same
    assert json.loads((out / META).read_text()) == meta

    # safetensors + JSON only: nothing pickled, no temporary files left behind
    assert sorted(p.name for p in out.rglob("*")) == sorted([WEIGHTS, META])


def save_mlp(model: nn.Module, out: Path, **changes: Any) -> None:
    """``save_model`` of an 8x8 mlp with hidden=[32, 16], with ``changes`` to its arguments."""
    args: dict[str, Any] = {
        "name": "mlp",
        "params": {"hidden": [32, 16]},
        "input_shape": (1, 8, 8),
        "num_classes": NUM_CLASSES,
        "mean": (0.0,),
        "std": (1.0,),
    }
    save_model(model, out, **{**args, **changes})


def test_a_float64_model_comes_back_in_float64(tmp_path: Path) -> None:
    """load_model built the registry's float32 model and load_state_dict cast the saved
    float64 weights into it: precision lost without notice."""
    model = build_model("mlp", (1, 8, 8), NUM_CLASSES, hidden=[32, 16]).double()
    save_mlp(model, tmp_path / "run")
    loaded, _ = load_model(tmp_path / "run")
    assert {p.dtype for p in loaded.parameters()} == {torch.float64}
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_half_precision_model_round_trips(tmp_path: Path, dtype: torch.dtype) -> None:
    """Its Normalize layer holds 0.1307 as 0.13074 (float16) or 0.1309 (bfloat16): save_model
    compared that with the given mean at float32 precision and refused every such model."""
    model = build_model("small_cnn", (1, 8, 8), NUM_CLASSES, (0.1307,), (0.3081,), hidden=20)
    model = model.to(dtype).eval()
    spec = {"name": "small_cnn", "params": {"hidden": 20}, "input_shape": (1, 8, 8)}
    save_model(
        model, tmp_path / "run", **spec, num_classes=NUM_CLASSES, mean=(0.1307,), std=(0.3081,)
    )
    loaded, meta = load_model(tmp_path / "run")
    assert meta["normalization"] == {"mean": [0.1307], "std": [0.3081]}
    assert {p.dtype for p in loaded.parameters()} == {dtype}
    x = torch.rand((3, 1, 8, 8)).to(dtype)
    assert torch.equal(loaded(x), model(x))
    # a mean that differs by more than the dtype's precision is still refused
    with pytest.raises(ValueError, match="not the model's: its Normalize layer has mean"):
        save_model(
            model, tmp_path / "bad", **spec, num_classes=NUM_CLASSES, mean=(0.14,), std=(0.3081,)
        )


def test_a_saved_model_is_replaced_only_when_asked(tmp_path: Path) -> None:
    """A save into a run folder replaced its weights and meta.json (the threat model, privacy
    and data sections gone) while its metrics and report still described the old model."""
    out = tmp_path / "run"
    make_and_save("mlp", out)
    first, first_meta = (out / WEIGHTS).read_bytes(), (out / META).read_bytes()
    model = build_model("mlp", (1, 8, 8), NUM_CLASSES, hidden=[32, 16])  # other random weights
    with pytest.raises(FileExistsError, match=r"already holds a saved model .*overwrite=True"):
        save_mlp(model, out)
    with pytest.raises(TypeError, match="overwrite must be True or False"):
        save_mlp(model, out, overwrite="yes")
    assert (out / WEIGHTS).read_bytes() == first and (out / META).read_bytes() == first_meta
    save_mlp(model, out, overwrite=True)
    assert (out / WEIGHTS).read_bytes() != first
    loaded, _ = load_model(out)
    x = torch.rand((2, 1, 8, 8))
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))
    assert sorted(p.name for p in out.iterdir()) == sorted([WEIGHTS, META])


def test_numpy_and_tensor_metadata_are_stored_as_plain_json(tmp_path: Path) -> None:
    """Values computed with NumPy or torch (a class count, the data's mean) are what a user
    passes; they are saved as numbers, and the model loads."""
    np = pytest.importorskip("numpy")
    model = build_model("mlp", (1, 8, 8), NUM_CLASSES, mean=(0.25,), std=(0.5,), hidden=[32, 16])
    save_mlp(
        model,
        tmp_path,
        params={"hidden": [np.int64(32), 16]},
        num_classes=np.int64(NUM_CLASSES),
        mean=tuple(torch.tensor([0.25])),
        std=np.array([0.5]),
    )
    meta = json.loads((tmp_path / META).read_text())
    assert (meta["num_classes"], meta["normalization"]) == (6, {"mean": [0.25], "std": [0.5]})
    assert meta["model"]["params"] == {"hidden": [32, 16]}
    load_model(tmp_path)


def test_metadata_json_cannot_hold_fails_before_anything_is_written(tmp_path: Path) -> None:
    """A value JSON cannot hold is refused in one line before the weights are written: a good
    artifact already in the folder stays as it was (new weights beside the old meta.json would
    fail its sha256)."""
    out = tmp_path / "run"
    make_and_save("mlp", out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    model = build_model("mlp", (1, 8, 8), NUM_CLASSES, hidden=[32, 16])
    with pytest.raises(TypeError, match=r"plain JSON values only; got a value of type object"):
        save_mlp(model, out, extra={"note": object()})
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    load_model(out)


@pytest.mark.parametrize("target", ["folder", WEIGHTS, META])
def test_read_meta_accepts_folder_or_file(saved: Path, target: str) -> None:
    path = saved if target == "folder" else saved / target
    weights, meta = read_meta(path)
    assert weights == saved / WEIGHTS
    assert meta == json.loads((saved / META).read_text())
    model, _ = load_model(path)
    assert model(torch.rand((1, 1, 8, 8))).shape == (1, NUM_CLASSES)


def test_a_query_mechanism_in_meta_json_is_put_back(tmp_path: Path) -> None:
    """A run with privacy.where=output evaluated its model with the mechanism in place; the
    weights alone are a model the run never reported on, without the protection claimed."""
    from robustai.privacy.plans import MechanismPrivacy

    model, spec = make_and_save("mlp", tmp_path / "run")
    plan = MechanismPrivacy("laplace", where="output", sensitivity=1.0, epsilon=1.0)
    meta = json.loads((tmp_path / "run" / META).read_text())
    meta["privacy"] = plan.describe()
    (tmp_path / "run" / META).write_text(json.dumps(meta))
    x = torch.rand((8, *spec["input_shape"]), generator=torch.Generator().manual_seed(1))
    loaded, _ = load_model(tmp_path / "run")
    with torch.no_grad():
        assert not torch.equal(loaded(x), loaded(x))  # fresh noise at every query
        bare, _ = load_model(tmp_path / "run", query_mechanism=False)
        assert torch.equal(bare(x), model(x))
    for edit in ({"method": "Laplace"}, {"sensitivity": None}):  # edited: one line, no KeyError
        edited = {**meta, "privacy": {**meta["privacy"], **edit}}
        if edit == {"sensitivity": None}:
            del edited["privacy"]["sensitivity"]
        (tmp_path / "run" / META).write_text(json.dumps(edited))
        # "Laplace" attached nothing, silently: the bare network, not what the run reported on
        with pytest.raises(CheckpointError, match="privacy section does not describe a mech"):
            load_model(tmp_path / "run")


def test_complex_weights_are_refused(tmp_path: Path) -> None:
    """load_state_dict dropped the imaginary part, with a warning only."""
    from safetensors.torch import load_file, save_file

    from robustai.fileio import sha256_file

    make_and_save("mlp", tmp_path / "run")
    state = load_file(str(tmp_path / "run" / WEIGHTS))
    name = next(iter(state))
    state[name] = state[name].to(torch.complex64)
    save_file(state, str(tmp_path / "run" / WEIGHTS))
    meta = json.loads((tmp_path / "run" / META).read_text())
    meta["weights_sha256"] = sha256_file(tmp_path / "run" / WEIGHTS)  # as an editor would
    (tmp_path / "run" / META).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=f"tensor {name} holds complex numbers"):
        load_model(tmp_path / "run")


# ------------------------------------------------------------------------------ broken files
def test_modified_weights_fail_sha256(saved: Path) -> None:
    data = bytearray((saved / WEIGHTS).read_bytes())
    data[-1] ^= 0x01  # one byte of one weight: still a valid safetensors file
    (saved / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_model(saved)


def test_missing_meta(saved: Path) -> None:
    (saved / META).unlink()
    with pytest.raises(CheckpointError, match=META):
        load_model(saved)


def test_missing_weights(saved: Path) -> None:
    (saved / WEIGHTS).unlink()
    with pytest.raises(CheckpointError, match=WEIGHTS):
        load_model(saved)


def test_a_run_stopped_before_its_model_says_how_to_finish_it(tmp_path: Path) -> None:
    """An interrupted run's folder (checkpoints, no model yet) got "weights.safetensors is
    missing; a checkpoint is a folder with ...", nothing about resuming it."""
    from robustai.training import save_checkpoint

    run = tmp_path / "run"
    save_checkpoint(run / "checkpoints", {"model": nn.Linear(2, 2)}, epoch=3)
    with pytest.raises(CheckpointError) as info:
        load_model(run)
    assert str(info.value) == (
        f"{run / WEIGHTS} is missing; a checkpoint is a folder with {WEIGHTS} and {META} (this"
        " run stopped before it saved its model, at epoch-0003.json: finish it with robustai"
        f" train trainer.resume={run})"
    )
    with pytest.raises(CheckpointError, match=r"is missing; a checkpoint is a folder with .*json$"):
        load_model(tmp_path)  # no checkpoints: no hint


@pytest.mark.parametrize(
    "content", [b"{not json", b"", b"\xff\xfe\x00{"], ids=["syntax", "empty", "bad-utf8"]
)
def test_invalid_json_meta(saved: Path, content: bytes) -> None:
    (saved / META).write_bytes(content)
    with pytest.raises(CheckpointError, match="JSON"):
        load_model(saved)


@pytest.mark.parametrize("meta", [[], {"model": {"name": "mlp"}}, "a string"])
def test_meta_without_required_fields(saved: Path, meta: Any) -> None:
    (saved / META).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="lacks"):
        load_model(saved)


@pytest.mark.parametrize(
    "keep", [4, 40, 0.5, -1], ids=["len-prefix", "header", "half", "last-byte"]
)
def test_truncated_weights_with_a_matching_sha(saved: Path, keep: float) -> None:
    """With meta.json's sha256 edited to match, a damaged file must still fail as a
    CheckpointError (the safetensors parser's own checks)."""
    data = (saved / WEIGHTS).read_bytes()
    cut = int(len(data) * keep) if isinstance(keep, float) else keep
    (saved / WEIGHTS).write_bytes(data[:cut])
    reset_sha(saved)
    with pytest.raises(CheckpointError, match="safetensors"):
        load_model(saved)


@pytest.mark.parametrize("sha", [None, "", "abc", 5])
def test_weights_without_a_valid_sha_are_refused(saved: Path, sha: object) -> None:
    """Without the sha256 robustai always writes, swapped weights would load unchecked."""
    meta = json.loads((saved / META).read_text())
    if sha is None:
        del meta["weights_sha256"]
    else:
        meta["weights_sha256"] = sha
    (saved / META).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="no valid weights_sha256"):
        load_model(saved)


@pytest.mark.parametrize(
    "change",
    [
        {"model": "mlp"},
        {"model": None},
        {"model": {"params": {}}},
        {"model": {"name": "mlp", "params": [1]}},
        {"model": {"name": "mlp", "params": {"no_such_arg": 1}}},
        {"normalization": [0.0]},
        {"normalization": {"mean": ["a"], "std": [1.0]}},
        {"normalization": {"mean": [0.0, 0.0], "std": [1.0, 1.0]}},
        {"normalization": {"mean": [0.0], "std": [0.0]}},
        {"input_shape": 5},
        {"input_shape": [1, 4, 4]},
        {"num_classes": "six"},
        {"privacy": 1},
        {"privacy": "dpsgd"},
        {"model": {"name": "mlp", "params": {}}, "privacy": ["model_fixed"]},
        # read by robustai evaluate for its eps and norm: "'str' object has no attribute 'get'"
        {"threat_model": "linf"},
        {"threat_model": [0.1]},
        {"threat_model": {"norm": "l1", "eps": 0.1}},
        # a newer format read as this one, or class counts int() truncated (10.7, "10")
        {"format_version": 99},
        {"format_version": "1"},
        {"num_classes": 6.7},
        {"num_classes": "6"},
    ],
    ids=lambda c: json.dumps(c),
)
def test_meta_with_wrong_values(saved: Path, change: dict[str, Any]) -> None:
    """Hand-edited or damaged meta.json: a CheckpointError, never a traceback."""
    meta = json.loads((saved / META).read_text())
    meta.update(change)
    (saved / META).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError):
        load_model(saved)


def test_meta_that_does_not_fit_the_weights(saved: Path) -> None:
    meta = json.loads((saved / META).read_text())
    meta["num_classes"] = NUM_CLASSES + 1
    (saved / META).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not fit"):
        load_model(saved)


def test_meta_asking_for_a_huge_model_fails_before_allocating_it(tmp_path: Path) -> None:
    """Without signing, meta.json is not covered by the weights' sha256: an edited one asking
    for a 5 GB model is refused from shapes alone (checked in a fresh process's peak memory)."""
    make_and_save("small_cnn", tmp_path / "run")
    meta = json.loads((tmp_path / "run" / META).read_text())
    meta["model"]["params"]["hidden"] = 10**7  # fc1 alone: 128 x 1e7 float32 = 5.1 GB
    (tmp_path / "run" / META).write_text(json.dumps(meta))
    script = (
        "import resource, sys\n"
        "from robustai.errors import CheckpointError\n"
        "from robustai.models import load_model\n"
        "try:\n"
        "    load_model(sys.argv[1])\n"
        "except CheckpointError as e:\n"
        "    print('refused:', e)\n"
        "print('peak_mb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "run")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "refused:" in proc.stdout, proc.stdout
    assert "classifier.0.weight [20, 128] (expected [10000000, 128])" in proc.stdout
    peak_mb = float(proc.stdout.split("peak_mb")[1])
    assert peak_mb < 2000, f"peak {peak_mb:.0f} MB: the model was allocated before the check"


def test_meta_naming_an_unknown_model(saved: Path) -> None:
    meta = json.loads((saved / META).read_text())
    meta["model"]["name"] = "not_a_model"
    (saved / META).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="not_a_model"):
        load_model(saved)


@pytest.mark.parametrize("sub", ["nope", f"nope/{WEIGHTS}"])
def test_path_that_does_not_exist(tmp_path: Path, sub: str) -> None:
    path = tmp_path / sub
    with pytest.raises(CheckpointError, match="not found") as info:
        load_model(path)
    assert isinstance(info.value, UserError)
    with pytest.raises(CheckpointError):
        read_meta(path)


def test_folder_without_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="missing"):
        load_model(tmp_path)


# ------------------------------------------------------------------ saving what cannot be loaded
def test_save_refuses_a_model_the_registry_cannot_rebuild(tmp_path: Path) -> None:
    """An architecture of one's own under a made-up name used to be written, then refused by
    load_model; it is refused when saving, with what to do instead, and nothing is written."""
    own = nn.Sequential(nn.Flatten(), nn.Linear(64, NUM_CLASSES))
    spec = {"input_shape": (1, 8, 8), "num_classes": NUM_CLASSES, "mean": (0.5,), "std": (0.25,)}
    with pytest.raises(ValueError, match=r"unknown model 'mynet'.*safetensors"):
        save_model(own, tmp_path / "own", name="mynet", params={}, **spec)
    with pytest.raises(ValueError, match=r"does not match build_model\('mlp'"):
        save_model(own, tmp_path / "own", name="mlp", params={}, **spec)
    small = build_model("small_cnn", (1, 8, 8), NUM_CLASSES, hidden=20)
    with pytest.raises(ValueError, match="other shapes"):  # params it was not built with
        save_model(small, tmp_path / "own", name="small_cnn", params={"hidden": 30}, **spec)
    assert not (tmp_path / "own").exists()


def test_dp_fixed_model_round_trip(tmp_path: Path) -> None:
    """A model whose BatchNorm DP-SGD replaced by GroupNorm saves and loads (meta says so)."""
    from robustai.privacy import make_dp_compatible

    torch.manual_seed(0)
    spec = {"input_shape": (3, 32, 32), "num_classes": 4, "mean": (0.5,) * 3, "std": (0.25,) * 3}
    built = build_model("preact_resnet18", width=8, **spec)
    model, replaced = make_dp_compatible(built)
    assert replaced
    # without the record, the refusal says what to pass (it said "the name and params")
    with pytest.raises(ValueError, match=r"make_dp_compatible .* extra=\{'privacy': \{'model_f"):
        save_model(model, tmp_path / "dp", name="preact_resnet18", params={"width": 8}, **spec)
    extra = {"privacy": {"model_fixed": replaced}}
    save_model(
        model, tmp_path / "dp", name="preact_resnet18", params={"width": 8}, **spec, extra=extra
    )
    loaded, _ = load_model(tmp_path / "dp")
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(loaded(x), model.eval()(x))


def test_model_files_get_the_umask_mode_not_private_temp_file_mode(tmp_path: Path) -> None:
    """Files written via a temporary file were 0600 whatever the umask: a teammate or the
    dashboard's user could not read a shared model."""
    import os
    import stat

    from robustai.models import build_model, save_model

    old = os.umask(0o022)
    try:
        m = build_model("mlp", (1, 4, 4), 3, hidden=(5,))
        save_model(m, tmp_path, name="mlp", params={"hidden": [5]}, input_shape=(1, 4, 4),
                   num_classes=3, mean=(0.0,), std=(1.0,))
    finally:
        os.umask(old)
    for f in ("weights.safetensors", "meta.json"):
        assert stat.S_IMODE((tmp_path / f).stat().st_mode) == 0o644


def test_meta_json_normalization_must_be_the_models(tmp_path: Path, saved: Path) -> None:
    """meta.json's mean/std describe the model; a mismatch saved or edited in was loaded
    without a word, and the model applied other statistics than its record says."""
    model, spec = make_and_save("mlp", tmp_path / "ok")
    with pytest.raises(ValueError, match="not the model's: its Normalize layer has mean"):
        save_model(model, tmp_path / "bad", **{**spec, "mean": (0.9,)})
    assert not (tmp_path / "bad").exists()
    meta = json.loads((saved / META).read_text())
    meta["normalization"]["std"] = [0.5]
    (saved / META).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"normalization differs from meta\.json's"):
        load_model(saved)


@pytest.mark.parametrize("std", [float("nan"), float("inf"), 0.0, -1.0])
def test_normalize_refuses_a_std_that_is_not_positive_and_finite(std: float) -> None:
    from robustai.models.normalize import Normalize

    with pytest.raises(ValueError, match="std must be positive and finite"):
        Normalize([0.5], [std])
