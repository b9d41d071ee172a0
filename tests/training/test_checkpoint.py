"""Checkpoints: exact round trips without pickle, atomic files, refusal of damaged ones."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from robustai.data import TensorLoader
from robustai.errors import CheckpointError
from robustai.training import (
    RNGState,
    list_checkpoints,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)


def _parts(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=20)
    x = torch.rand(20, 4, generator=torch.Generator().manual_seed(7))  # the same data set always
    loader = TensorLoader(x, torch.arange(20) % 3, 4, shuffle=True, seed=seed)
    return model, opt, sched, loader


def _train(model, opt, sched, it, steps: int) -> None:
    for _ in range(steps):
        x, y = next(it)
        loss = nn.functional.cross_entropy(model(x + 0.01 * torch.randn_like(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()


def test_round_trip_resumes_exactly(tmp_path: Path) -> None:
    """Save after 2 steps, restore into fresh objects: the next 3 steps are bit-identical."""
    model, opt, sched, loader = _parts()
    rng = RNGState()
    comps = {"model": model, "optimizer": opt, "scheduler": sched, "loader": loader, "rng": rng}
    random.random()
    np.random.rand()
    it = iter(loader)  # one pass of 5 batches, interrupted after 2
    _train(model, opt, sched, it, 2)
    path = save_checkpoint(tmp_path, comps, epoch=0, step=2, info={"note": "x"})
    _train(model, opt, sched, it, 3)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    py_next, np_next = random.random(), np.random.rand()

    model2, opt2, sched2, loader2 = _parts(seed=1)  # different init, different loader seed
    comps2 = {
        "model": model2,
        "optimizer": opt2,
        "scheduler": sched2,
        "loader": loader2,
        "rng": RNGState(),
    }
    state, info = read_checkpoint(path)
    assert info == {"note": "x", "epoch": 0, "step": 2}
    load_checkpoint(comps2, state, path)
    _train(model2, opt2, sched2, iter(loader2), 3)  # the replayed pass skips the first 2
    for k, v in model2.state_dict().items():
        assert torch.equal(v, expected[k]), k
    assert random.random() == py_next and np.random.rand() == np_next


def test_each_rank_resumes_its_own_random_state(tmp_path: Path) -> None:
    """Under DDP rank 0 writes the checkpoint with the other ranks' gathered states; a rank
    restores its own, and one the checkpoint has no state for says so instead of guessing."""
    torch.manual_seed(123)
    rank1_state = RNGState().state_dict()  # what rank 1's gather would hand over
    rank1_next = torch.rand(3)
    torch.manual_seed(7)
    rank0 = RNGState(rank=0, world_size=2)
    rank0.peers = [rank1_state]
    path = save_checkpoint(tmp_path, {"rng": rank0}, epoch=1)
    rank0_next = torch.rand(3)
    state, _ = read_checkpoint(path)

    torch.manual_seed(99)
    rank1 = RNGState(rank=1, world_size=2)
    load_checkpoint({"rng": rank1}, state, path)
    assert rank1.restored_own and torch.equal(torch.rand(3), rank1_next)

    torch.manual_seed(99)
    again = RNGState(rank=0, world_size=2)
    load_checkpoint({"rng": again}, state, path)
    assert again.restored_own and torch.equal(torch.rand(3), rank0_next)

    torch.manual_seed(99)
    expected = torch.rand(3)
    torch.manual_seed(99)
    other_size = RNGState(rank=1, world_size=3)  # written by 2 ranks, resumed by 3
    load_checkpoint({"rng": other_size}, state, path)
    assert not other_size.restored_own and torch.equal(torch.rand(3), expected)  # untouched


def test_no_pickle_on_disk_and_no_temporary_files_left(tmp_path: Path) -> None:
    model, opt, _, _ = _parts()
    save_checkpoint(tmp_path, {"model": model, "optimizer": opt}, epoch=1)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["epoch-0001.json", "epoch-0001.safetensors"]
    assert b"\x80" not in (tmp_path / "epoch-0001.json").read_bytes()[:2]  # not a pickle header


def test_keeps_only_the_newest(tmp_path: Path) -> None:
    model = nn.Linear(2, 2)
    for epoch in range(1, 5):
        save_checkpoint(tmp_path, {"model": model}, epoch=epoch, keep=2)
    save_checkpoint(tmp_path, {"model": model}, epoch=4, step=3, keep=2)
    assert [(c.epoch, c.step) for c in list_checkpoints(tmp_path)] == [(4, 3), (4, 0)]
    assert len(list(tmp_path.iterdir())) == 4


def test_what_a_kill_mid_save_left_is_pruned(tmp_path: Path) -> None:
    """A run killed between a checkpoint's tensor file and its JSON left the tensor file (a
    model's size) for good: pruning looked at the JSON files alone."""
    model = nn.Linear(2, 2)
    save_checkpoint(tmp_path, {"model": model}, epoch=1)
    step = save_checkpoint(tmp_path, {"model": model}, epoch=1, step=5)
    step.unlink()  # the JSON never written
    (tmp_path / ".epoch-0002.json.abc123.tmp").write_text("{")  # a write cut short
    kept = [tmp_path / "epoch-0001.json", tmp_path / "epoch-0001.safetensors"]
    assert set(tmp_path.iterdir()) == {*kept, step.with_suffix(".safetensors"),
                                        tmp_path / ".epoch-0002.json.abc123.tmp"}  # fmt: skip
    save_checkpoint(tmp_path, {"model": model}, epoch=2)  # the resumed run's next one
    assert set(tmp_path.iterdir()) == {*kept, tmp_path / "epoch-0002.json",
                                        tmp_path / "epoch-0002.safetensors"}  # fmt: skip


@pytest.mark.parametrize("keep", [0, -1, 1.5, "2"])
def test_keep_below_one_is_refused_before_anything_is_written(tmp_path: Path, keep) -> None:
    """keep=0 (read as "keep all") deleted every checkpoint, the one just written too, and
    returned its path as if it were saved."""
    from robustai.training import CheckpointCallback

    with pytest.raises(ValueError, match="keep must be an integer >= 1"):
        save_checkpoint(tmp_path / "ck", {"model": nn.Linear(2, 2)}, epoch=1, keep=keep)
    with pytest.raises(ValueError, match="keep must be an integer >= 1"):
        CheckpointCallback(tmp_path / "ck", {"model": nn.Linear(2, 2)}, keep=keep)
    assert not (tmp_path / "ck").exists()


def test_a_folder_with_a_newer_checkpoint_is_refused(tmp_path: Path) -> None:
    """Another run's epochs 2 and 3 were kept and the new epoch 1 deleted at once: a resume
    then continued the old run."""
    model = nn.Linear(2, 2)
    for epoch in (2, 3):
        save_checkpoint(tmp_path, {"model": model}, epoch=epoch)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ValueError, match=r"holds epoch-0003\.json, newer than this checkpoint"):
        save_checkpoint(tmp_path, {"model": model}, epoch=1)
    with pytest.raises(ValueError, match="newer than this checkpoint"):
        save_checkpoint(tmp_path, {"model": model}, epoch=2, step=5)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    save_checkpoint(tmp_path, {"model": model}, epoch=3)  # the same one again: a re-save
    save_checkpoint(tmp_path, {"model": model}, epoch=3, step=1)
    assert [(c.epoch, c.step) for c in list_checkpoints(tmp_path)] == [(3, 1), (3, 0)]


class _Release:
    """A component whose large state does not change during a run (as an input release)."""

    checkpoint_once = True

    def __init__(self, n: int = 1000) -> None:
        self.x = torch.rand(n, 8)

    def state_dict(self) -> dict:
        return {"released": self.x}

    def load_state_dict(self, state: dict) -> None:
        self.x = state["released"]


def test_a_state_that_never_changes_is_written_once_and_shared(tmp_path: Path) -> None:
    release, model = _Release(), nn.Linear(2, 2)
    paths = [save_checkpoint(tmp_path, {"model": model, "privacy": release}, epoch=1, keep=2)]
    (first,) = tmp_path.glob("shared-privacy-*.safetensors")
    written = first.stat()
    paths += [
        save_checkpoint(tmp_path, {"model": model, "privacy": release}, epoch=e, keep=2)
        for e in (2, 3)
    ]
    shared = sorted(tmp_path.glob("shared-privacy-*.safetensors"))
    assert shared == [first]  # one copy for every checkpoint, not one each
    # and written once: the state did not change, so the file was not replaced
    assert (first.stat().st_ino, first.stat().st_mtime_ns) == (written.st_ino, written.st_mtime_ns)
    for path in paths[1:]:  # the kept ones
        assert path.with_suffix(".safetensors").stat().st_size < shared[0].stat().st_size / 10
        state, _ = read_checkpoint(path)
        restored = _Release(1)
        load_checkpoint({"privacy": restored}, {"privacy": state["privacy"]}, path)
        assert torch.equal(restored.x, release.x)
        assert torch.equal(state["model"]["weight"], model.weight)
    # a change (an in-place write) makes a new file; the old one goes with the last checkpoint
    # that named it
    release.x[0, 0] += 1
    for e in (4, 5):
        save_checkpoint(tmp_path, {"model": model, "privacy": release}, epoch=e, keep=2)
    (now,) = tmp_path.glob("shared-privacy-*.safetensors")
    assert now != shared[0]
    state, _ = read_checkpoint(tmp_path / "epoch-0005.json")
    assert torch.equal(state["privacy"]["released"], release.x)


@pytest.mark.parametrize("damage", ["missing", "flip"])
def test_a_damaged_shared_file_is_refused_naming_it(tmp_path: Path, damage: str) -> None:
    path = save_checkpoint(tmp_path, {"privacy": _Release(10)}, epoch=1)
    (shared,) = tmp_path.glob("shared-*.safetensors")
    if damage == "missing":
        shared.unlink()
    else:
        data = shared.read_bytes()
        shared.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(CheckpointError, match=rf"{shared.name}.*(missing|sha256)"):
        read_checkpoint(path)


def test_a_shared_file_outside_the_folder_is_refused(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, {"privacy": _Release(10)}, epoch=1)
    payload = json.loads(path.read_text())
    payload["shared"]["privacy"]["file"] = "../shared-privacy-0123456789abcdef.safetensors"
    path.write_text(json.dumps(payload))
    with pytest.raises(CheckpointError, match="schema"):
        read_checkpoint(path)


@pytest.mark.parametrize("damage", ["truncate", "flip", "replace"])
def test_damaged_tensor_file_is_refused_naming_it(tmp_path: Path, damage: str) -> None:
    model = nn.Linear(3, 3)
    path = save_checkpoint(tmp_path, {"model": model}, epoch=1)
    tensors = path.with_suffix(".safetensors")
    data = tensors.read_bytes()
    if damage == "truncate":
        tensors.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        tensors.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    else:
        save_checkpoint(tmp_path / "other", {"model": nn.Linear(3, 3)}, epoch=1)
        tensors.write_bytes((tmp_path / "other" / tensors.name).read_bytes())
    with pytest.raises(CheckpointError, match=r"epoch-0001\.safetensors.*sha256") as err:
        read_checkpoint(path)
    # and how to go on from a whole checkpoint beside it
    assert f"to resume from the checkpoint before it, move {path.name} (and" in str(err.value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("state"), "schema"),
        (lambda d: d.update(epoch="three"), "schema"),
        (lambda d: d.update(format_version=99), "format 99"),
        (lambda d: d.update(tensors_file="../../etc/passwd"), "outside its folder"),
        (lambda d: d["state"].update(model={"__pickle__": "x"}), "schema"),
        (lambda d: d["state"].update(model={"__tensor__": "nope"}), "missing from its tensor file"),
        (lambda d: d["state"].update(model={"__tensor__": ["t0"]}), "missing from its tensor file"),
        (lambda d: d["state"].update(model={"__items__": [[1]]}), "schema"),
        (lambda d: d["state"].update(model={"__items__": [[[1], 2]]}), "schema"),
    ],
)
def test_metadata_failing_its_schema_is_refused(tmp_path: Path, edit, message: str) -> None:
    path = save_checkpoint(tmp_path, {"model": nn.Linear(2, 2)}, epoch=1)
    payload = json.loads(path.read_text())
    edit(payload)
    path.write_text(json.dumps(payload))
    with pytest.raises(CheckpointError, match=message) as exc:
        read_checkpoint(path)
    assert "epoch-0001" in str(exc.value)


def test_state_nested_too_deeply_is_refused(tmp_path: Path) -> None:
    """Whether the JSON reader or the unflattening runs out of stack first, it is refused."""
    path = save_checkpoint(tmp_path, {"model": nn.Linear(2, 2)}, epoch=1)
    text = path.read_text()
    deep = '{"__tuple__": [' * 600 + "1" + "]}" * 600
    head, _, _ = text.partition('"state": ')
    path.write_text(head + '"state": {"model": ' + deep + "}}")
    with pytest.raises(CheckpointError, match=r"epoch-0001\.json"):
        read_checkpoint(path)


@pytest.mark.parametrize("text", ["cut", "[" * 100_000 + "]" * 100_000])
def test_invalid_json_is_refused(tmp_path: Path, text: str) -> None:
    path = save_checkpoint(tmp_path, {"model": nn.Linear(2, 2)}, epoch=1)
    path.write_text(path.read_text()[:20] if text == "cut" else text)
    with pytest.raises(CheckpointError, match=r"epoch-0001\.json is not a readable checkpoint"):
        read_checkpoint(path)


def test_state_of_another_model_does_not_load(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, {"model": nn.Linear(2, 2)}, epoch=1)
    state, _ = read_checkpoint(path)
    with pytest.raises(CheckpointError, match="saved model state does not fit"):
        load_checkpoint({"model": nn.Linear(5, 2)}, state, path)
    with pytest.raises(CheckpointError, match="no state for 'optimizer'"):
        load_checkpoint(
            {"optimizer": torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=1)}, state, path
        )

    with pytest.raises(CheckpointError, match=r"size mismatch for weight: copying a param"):
        load_checkpoint({"model": nn.Linear(5, 2)}, state, path)  # the detail, not a heading


class _Wrapper(nn.Module):
    """Holds a model as DDP (``module``) or Opacus' GradSampleModule (``_module``) do."""

    def __init__(self, name: str, inner: nn.Module) -> None:
        super().__init__()
        self.add_module(name, inner)


@pytest.mark.parametrize("prefixes", [["_module"], ["_module", "module"], ["module"]])
def test_a_model_saved_inside_training_wrappers_loads_into_the_plain_model(
    tmp_path: Path, prefixes: list[str]
) -> None:
    """Older checkpoints saved a DP-SGD model inside Opacus' wrapper (``_module.``), and under
    DDP inside DPDDP too (``_module.module.``): they resume, with one process or several."""
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    wrapped: nn.Module = plain
    for name in reversed(prefixes):
        wrapped = _Wrapper(name, wrapped)
    assert next(iter(wrapped.state_dict())).startswith(".".join(prefixes) + ".")
    path = save_checkpoint(tmp_path, {"model": wrapped}, epoch=1)
    fresh = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    load_checkpoint({"model": fresh}, read_checkpoint(path)[0], path)
    for k, v in plain.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k


def test_a_model_state_with_other_keys_names_them_in_one_line(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, {"model": nn.Sequential(nn.Linear(2, 2))}, epoch=1)
    state, _ = read_checkpoint(path)
    other = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
    with pytest.raises(CheckpointError) as e:
        load_checkpoint({"model": other}, state, path)
    message = str(e.value)
    assert "\n" not in message
    assert "saved model state does not fit this run: missing keys 2.weight, 2.bias;" in message
    assert "resume with the model settings the run was started with" in message
    with pytest.raises(CheckpointError, match=r"unexpected keys 0\.weight, 0\.bias;"):
        load_checkpoint({"model": _Wrapper("net", nn.Linear(2, 2))}, state, path)


RANK_WORKER = """
import sys, warnings
import torch
import torch.distributed as dist
from safetensors.torch import save_file
from robustai.training import (
    FreeAdversarialObjective, RankLocalState, load_checkpoint, read_checkpoint, save_checkpoint,
)

warnings.simplefilter("ignore")
rank, store, folder = int(sys.argv[1]), sys.argv[2], sys.argv[3]
dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
objective = FreeAdversarialObjective(0.1, replays=2)
objective.load_state_dict({"delta": torch.full((3, 2), float(rank + 1))})  # this rank's own
state = RankLocalState(objective, rank, 2)
state.gather()  # every rank, as at an epoch end or an interruption
if rank == 0:
    save_checkpoint(folder, {"objective": state}, epoch=1)
dist.barrier()
fresh = RankLocalState(FreeAdversarialObjective(0.1, replays=2), rank, 2)
path = f"{folder}/epoch-0001.json"
load_checkpoint({"objective": fresh}, read_checkpoint(path)[0], path)
save_file({"delta": fresh.inner.state_dict()["delta"]}, f"{folder}/rank{rank}.safetensors")
dist.destroy_process_group()
"""


def test_each_rank_resumes_its_own_free_training_perturbation(
    tmp_path: Path, two_ranks: Callable[..., None]
) -> None:
    """Free training carries one perturbation per rank (for its own shard), and rank 0 alone
    writes checkpoints: each rank's must be gathered into it and restored to that rank (every
    rank loaded rank 0's, so a resumed DDP run ended with other weights). Two gloo processes."""
    from safetensors.torch import load_file

    script = tmp_path / "worker.py"
    script.write_text(RANK_WORKER)
    two_ranks(script, str(tmp_path / "store"), str(tmp_path))
    for rank in range(2):
        got = load_file(str(tmp_path / f"rank{rank}.safetensors"))["delta"]
        assert torch.equal(got, torch.full((3, 2), float(rank + 1))), rank


def test_a_rank_without_its_perturbation_in_the_checkpoint_starts_afresh(tmp_path: Path) -> None:
    """A checkpoint written by one process (or another number of ranks) holds no state for rank
    1: it keeps its perturbation as built (zero) and says so, instead of taking rank 0's."""
    from robustai.training import FreeAdversarialObjective, RankLocalState

    single = FreeAdversarialObjective(0.1, replays=2)
    single.load_state_dict({"delta": torch.ones(3, 2)})
    path = save_checkpoint(tmp_path, {"objective": RankLocalState(single)}, epoch=1)
    state, _ = read_checkpoint(path)
    rank1 = RankLocalState(FreeAdversarialObjective(0.1, replays=2), rank=1, world_size=2)
    load_checkpoint({"objective": rank1}, state, path)
    assert not rank1.restored_own and rank1.inner.state_dict()["delta"] is None
    rank0 = RankLocalState(FreeAdversarialObjective(0.1, replays=2), rank=0, world_size=2)
    load_checkpoint({"objective": rank0}, state, path)
    assert rank0.restored_own and torch.equal(rank0.inner.state_dict()["delta"], torch.ones(3, 2))


def test_a_restored_perturbation_follows_the_inputs_device() -> None:
    """A checkpoint's perturbation is read to the CPU; a run resumed on a GPU failed mixing
    devices at its first step. The meta device stands in for a GPU here: it refuses CPU
    operands just as CUDA does."""
    from robustai.training import FreeAdversarialObjective

    objective = FreeAdversarialObjective(0.1, replays=2)
    objective.load_state_dict({"delta": torch.full((4, 6), 0.05)})
    model = nn.Linear(6, 3).to("meta")
    x = torch.rand(4, 6, device="meta")
    y = torch.zeros(4, dtype=torch.long, device="meta")
    loss, _ = objective(model, x, y, 0.0)
    assert loss.device.type == "meta"
    assert objective.state_dict()["delta"].device.type == "meta"


def _edited(tmp_path: Path, comps: dict, edit) -> tuple[dict, Path]:
    """Saved, then ``edit`` applied to each component's fields in the JSON file."""
    path = save_checkpoint(tmp_path, comps, epoch=1)
    payload = json.loads(path.read_text())
    edit({name: node["__dict__"] for name, node in payload["state"].items()})
    path.write_text(json.dumps(payload))
    return read_checkpoint(path)[0], path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s["scheduler"].update(optimizer=1), "scheduler.optimizer is no setting"),
        (lambda s: s["scheduler"].update(total_steps="abc"), "total_steps is str, not int"),
        (lambda s: s["scheduler"].pop("base_lrs"), "scheduler lacks base_lrs"),
        # each of these was a traceback at the resumed run's first step, or (a phase's start
        # naming another setting) a run on another schedule, silently
        (lambda s: s["scheduler"].update(step=1), "scheduler.step is no setting"),
        (lambda s: s["scheduler"].update(total_steps=1.5), "total_steps is float, not int"),
        (lambda s: s["scheduler"].update(total_steps=10**6), "total_steps is 1000000, where"),
        (lambda s: s["scheduler"].update(last_epoch=100), "last_epoch 100 is no step of a 20-"),
        (lambda s: s["scheduler"].update(_anneal_func_type="nope"), "'nope', where this run"),
        (
            lambda s: s["scheduler"]["_schedule_phases"][0]["__dict__"].update(
                start_lr="max_momentum"
            ),
            r"_schedule_phases\[0\]\.start_lr is 'max_momentum'",
        ),
        (lambda s: s["scheduler"].update(base_lrs=[float("nan")]), "nan, not a finite number"),
        (lambda s: s["loader"].update(position=10**9), "position 1000000000 is outside a pass"),
        (lambda s: s["loader"].update(position=-1), "position -1 is outside a pass"),
    ],
)
def test_an_edited_checkpoint_state_is_refused(tmp_path: Path, edit, message: str) -> None:
    """The JSON half of a checkpoint is not hashed: torch's scheduler took any keys into its
    __dict__ (a traceback at the next step), and a loader position past the pass trained
    nothing in the resumed epoch, silently."""
    _, _, sched, loader = _parts()
    state, path = _edited(tmp_path, {"scheduler": sched, "loader": loader}, edit)
    _, _, sched2, loader2 = _parts()
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint({"scheduler": sched2, "loader": loader2}, state, path)


def test_a_schedule_saved_by_an_older_torch_resumes(tmp_path: Path) -> None:
    """torch 2.x added private scheduler keys (``_is_initial``): a checkpoint written without
    one was refused ("lacks _is_initial") after an upgrade; it keeps this run's value."""
    _, _, sched, _ = _parts()
    older = _edited(tmp_path, {"scheduler": sched}, lambda s: s["scheduler"].pop("_is_initial"))
    state, path = older
    _, _, sched2, _ = _parts()
    load_checkpoint({"scheduler": sched2}, state, path)
    assert sched2.last_epoch == sched.last_epoch


def test_an_edited_epoch_count_is_refused(tmp_path: Path) -> None:
    """A negative epoch trained extra epochs, then the scheduler ran out of steps (exit 1)."""
    from robustai.training import StandardObjective, Trainer

    def trainer() -> Trainer:
        model, opt, _, _ = _parts()
        return Trainer(model, StandardObjective(), opt, epochs=2, progress=False)

    def edit(s: dict) -> None:
        s["trainer"]["epoch"] = -5

    state, path = _edited(tmp_path, {"trainer": trainer()}, edit)
    with pytest.raises(CheckpointError, match=r"epoch -5 .* is no point of a run of 2 epochs"):
        load_checkpoint({"trainer": trainer()}, state, path)


def test_with_a_signing_key_checkpoints_are_signed_and_an_edited_one_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A checkpoint's only check was the sha256 in its own JSON: whoever could write the run
    folder edited a bias, put the new sha256 beside it, and the resumed run finished and signed
    its weights (ROBUSTAI_SIGNING_KEY set), vouching for the edited training."""
    import logging

    from safetensors.torch import load_file, save_file

    from robustai.fileio import sha256_file

    model = _parts()[0]
    monkeypatch.setenv("ROBUSTAI_SIGNING_KEY", "k" * 32)
    path = save_checkpoint(tmp_path / "signed", {"model": model}, epoch=1)
    assert json.loads(path.read_text())["signature"]["algorithm"] == "hmac-sha256"
    read_checkpoint(path)  # the key that signed it
    # the edit: a tensor changed, and its new sha256 put into the JSON beside it
    tensors = path.with_suffix(".safetensors")
    state = load_file(str(tensors))
    name = next(k for k in state if k.endswith("bias"))
    state[name] = state[name] + 5.0
    save_file(state, str(tensors), metadata={"format": "robustai-ckpt"})
    payload = json.loads(path.read_text())
    path.write_text(json.dumps({**payload, "tensors_sha256": sha256_file(tensors)}))
    with pytest.raises(CheckpointError, match=r"signature check failed: the checkpoint was"):
        read_checkpoint(path)
    # unsigned while a key is set: refused (dropping the signature is no way around it)
    unsigned = {k: v for k, v in payload.items() if k != "signature"}
    path.write_text(json.dumps({**unsigned, "tensors_sha256": sha256_file(tensors)}))
    with pytest.raises(CheckpointError, match=r"is not signed, but ROBUSTAI_SIGNING_KEY is set"):
        read_checkpoint(path)
    # another key: refused; no key: read, with a warning that nothing was checked
    good = save_checkpoint(tmp_path / "other", {"model": model}, epoch=1)
    monkeypatch.setenv("ROBUSTAI_SIGNING_KEY", "x" * 32)
    with pytest.raises(CheckpointError, match=r"ROBUSTAI_SIGNING_KEY is not the key that"):
        read_checkpoint(good)
    monkeypatch.delenv("ROBUSTAI_SIGNING_KEY")
    with caplog.at_level(logging.WARNING, logger="robustai.security.signing"):
        read_checkpoint(good)
    assert "is signed but ROBUSTAI_SIGNING_KEY is unset: signature not checked" in caplog.text
    assert "signature" not in json.loads(
        save_checkpoint(tmp_path / "plain", {"model": model}, epoch=1).read_text()
    )
