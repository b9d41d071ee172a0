"""Resumable training checkpoints without pickle.

A checkpoint is a pair of files in ``<run>/checkpoints/``: ``<tag>.safetensors`` holds every tensor
(weights, optimizer buffers, RNG states, ...) and ``<tag>.json`` everything else plus the sha256 of
the tensor file. Both are written atomically (temporary file, fsync, rename) and the JSON last,
so a checkpoint is complete exactly when its JSON exists and its hash matches. A process killed at
any moment leaves the previous checkpoint intact.

Any object with ``state_dict()`` / ``load_state_dict()`` whose state is made of tensors, numpy
arrays, numbers, strings, lists, tuples and dicts can be checkpointed (model, optimizer, LR
scheduler, loader, watchdog, accountant, ...).

A component whose state stays the same for the whole run (``checkpoint_once = True``, e.g. the
one private release of the training images, as large as the data set) is written once, to
``shared-<name>-<sha256 prefix>.safetensors`` beside the checkpoints, and each checkpoint names
that file and its sha256 instead of holding another copy. A shared file goes when no kept
checkpoint names it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from robustai.argcheck import is_integer
from robustai.distributed import unwrapped_state
from robustai.errors import CheckpointError
from robustai.fileio import atomic_write, sha256_file
from robustai.security.signing import (
    SIGNATURE_FIELD,
    check_signed,
    sign_payload,
    signing_key_from_env,
)

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: may name shared files; format 1 (without them) is read as well
READABLE_FORMATS = (1, 2)
CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^epoch-(\d{4,})(?:-step-(\d{6,}))?$")
_SHARED = re.compile(r"^shared-[A-Za-z0-9_]+-[0-9a-f]{16}\.safetensors$")


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path  # the JSON file
    epoch: int  # epochs completed
    step: int  # batches done in the next, incomplete epoch (0 at an epoch boundary)


# ---------------------------------------------------------------- flattening (no pickle)


def _flatten(obj: Any, prefix: str, tensors: dict[str, Tensor]) -> Any:
    """JSON-able structure with every tensor moved into ``tensors`` under a unique key."""
    if isinstance(obj, Tensor):
        key = f"t{len(tensors)}:{prefix}"
        tensors[key] = obj.detach().to("cpu").contiguous()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        key = f"t{len(tensors)}:{prefix}"
        tensors[key] = torch.from_numpy(np.ascontiguousarray(obj))
        return {"__ndarray__": key}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Mapping):
        if all(isinstance(k, str) for k in obj):
            return {"__dict__": {k: _flatten(v, f"{prefix}.{k}", tensors) for k, v in obj.items()}}
        return {
            "__items__": [
                [_flatten(k, prefix, tensors), _flatten(v, f"{prefix}.{k}", tensors)]
                for k, v in obj.items()
            ]
        }
    if isinstance(obj, tuple):
        return {"__tuple__": [_flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot checkpoint a value of type {type(obj).__name__} at {prefix}")


def _unflatten(obj: Any, tensors: Mapping[str, Tensor], where: Path) -> Any:
    if isinstance(obj, list):
        return [_unflatten(v, tensors, where) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if len(obj) != 1:
        raise CheckpointError(
            f"{where} does not follow the checkpoint schema (bad node {list(obj)})"
        )
    ((tag, value),) = obj.items()
    if tag in ("__tensor__", "__ndarray__"):
        if not isinstance(value, str) or value not in tensors:
            raise CheckpointError(
                f"{where} refers to tensor {value!r}, missing from its tensor file"
            )
        return tensors[value] if tag == "__tensor__" else tensors[value].numpy()
    if tag == "__dict__" and isinstance(value, dict):
        return {k: _unflatten(v, tensors, where) for k, v in value.items()}
    if tag == "__items__" and isinstance(value, list):
        if not all(isinstance(kv, list) and len(kv) == 2 for kv in value):
            raise CheckpointError(f"{where} does not follow the checkpoint schema (bad __items__)")
        try:
            return {_unflatten(k, tensors, where): _unflatten(v, tensors, where) for k, v in value}
        except TypeError as e:  # a key that cannot be a dict key (a list, a tensor)
            raise CheckpointError(
                f"{where} does not follow the checkpoint schema (bad __items__ key: {e})"
            ) from e
    if tag == "__tuple__" and isinstance(value, list):
        return tuple(_unflatten(v, tensors, where) for v in value)
    raise CheckpointError(f"{where} does not follow the checkpoint schema (unknown node {tag!r})")


# ---------------------------------------------------------------- RNG state


class RNGState:
    """python, numpy and torch (CPU and CUDA) generators as one checkpointable object.

    Under DDP every rank draws its own random numbers (e.g. attack random starts), and rank 0
    alone writes checkpoints. :meth:`gather`, called by every rank at the same point, hands rank
    0 the other ranks' states; its checkpoint then holds them under ``peers`` (rank 1 first), and
    on resume each rank restores its own, so a resumed run draws what the uninterrupted one
    would have. ``restored_own`` says whether it could (False for a checkpoint written by a
    single process, or by another number of ranks).
    """

    def __init__(self, rank: int = 0, world_size: int = 1) -> None:
        self.rank = rank
        self.world_size = world_size
        self.peers: list[dict[str, Any]] | None = None
        self.restored_own = False

    def gather(self) -> None:
        """Collective (every rank, same point): rank 0 keeps ranks 1..N-1's states as they are
        now. A no-op in a single process."""
        if self.world_size <= 1:
            return
        states: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(states, _generator_state())
        self.peers = states[1:] if self.rank == 0 else None

    def state_dict(self) -> dict[str, Any]:
        state = _generator_state()
        if self.peers is not None:
            state["peers"] = self.peers
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        own: Mapping[str, Any] = state
        self.restored_own = self.rank == 0
        if self.rank > 0:
            peers = state.get("peers")
            if not isinstance(peers, list) or len(peers) != self.world_size - 1:
                return  # not this rank's state: the caller seeds this rank afresh
            own, self.restored_own = peers[self.rank - 1], True
        version, values, gauss = own["python"]
        random.setstate((version, tuple(values), gauss))
        name, keys, pos, has_gauss, cached = own["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(own["torch"])
        if "cuda" in own and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(list(own["cuda"]))


class RankLocalState:
    """A component whose state differs per rank under DDP, such as free training's perturbation
    (one row per batch position of each rank's own shard). As for :class:`RNGState`,
    :meth:`gather` hands rank 0 the other ranks' states, rank 0's checkpoint holds them under
    ``peers``, and on resume each rank loads its own. A rank the checkpoint holds no state for
    (written by one process, or by another number of ranks) keeps the component as built, and
    ``restored_own`` says so."""

    def __init__(self, inner: Any, rank: int = 0, world_size: int = 1) -> None:
        self.inner = inner
        self.rank = rank
        self.world_size = world_size
        self.peers: list[Any] | None = None
        self.restored_own = False

    def gather(self) -> None:
        """Collective (every rank, same point); a no-op in a single process."""
        if self.world_size <= 1:
            return
        states: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(states, _on_cpu(self.inner.state_dict()))
        self.peers = states[1:] if self.rank == 0 else None

    def state_dict(self) -> dict[str, Any]:
        state = dict(self.inner.state_dict())
        if self.peers is not None:
            state["peers"] = self.peers
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        own = {k: v for k, v in state.items() if k != "peers"}
        if self.rank > 0:
            peers = state.get("peers")
            if not isinstance(peers, list) or len(peers) != self.world_size - 1:
                self.restored_own = False
                return
            own = peers[self.rank - 1]
        self.inner.load_state_dict(own)
        self.restored_own = True


def _on_cpu(obj: Any) -> Any:
    """``obj`` with every tensor copied to the CPU (a CUDA tensor sent to rank 0 would be
    rebuilt on the sender's device)."""
    if isinstance(obj, Tensor):
        return obj.detach().cpu()
    if isinstance(obj, Mapping):
        return {k: _on_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_on_cpu(v) for v in obj)
    return obj


def _generator_state() -> dict[str, Any]:
    """This process's python, numpy and torch generator states."""
    py = random.getstate()
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [
            np_state[0],
            np_state[1],
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


# ---------------------------------------------------------------- files


def checkpoint_tag(epoch: int, step: int = 0) -> str:
    return f"epoch-{epoch:04d}" + (f"-step-{step:06d}" if step else "")


#: (folder, component name) -> (what its tensors were when written, flattened state, shared
#: file, sha256): a state that has not changed since (same storage, no in-place write) is
#: neither copied off the device nor hashed again
_written_once: dict[tuple[str, str], tuple[tuple[Any, ...], Any, str, str]] = {}


def _fingerprint(state: Any) -> tuple[Any, ...]:
    """Identity of a state's tensors: their storage and autograd version counters (bumped by
    every in-place write), so an unchanged state is recognised without reading it."""
    found: list[Any] = []

    def walk(obj: Any, path: str) -> None:
        if isinstance(obj, Tensor):
            shape, kind = tuple(obj.shape), (str(obj.dtype), str(obj.device))
            found.append((path, obj.data_ptr(), obj._version, shape, kind))
        elif isinstance(obj, Mapping):
            for k, v in obj.items():
                walk(v, f"{path}.{k}")
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                walk(v, f"{path}.{i}")
        else:
            found.append((path, repr(obj)))

    walk(state, "")
    return tuple(found)


def _write_shared(folder: Path, name: str, state: Any) -> tuple[Any, dict[str, str]]:
    """Flatten ``state`` into its own shared file (written only if its content is new); returns
    the flattened structure and ``{"file", "sha256"}``."""
    key = (str(folder.resolve()), name)
    fingerprint = _fingerprint(state)
    cached = _written_once.get(key)
    if cached is not None and cached[0] == fingerprint and (folder / cached[2]).is_file():
        return cached[1], {"file": cached[2], "sha256": cached[3]}
    tensors: dict[str, Tensor] = {}
    flat = _flatten(state, name, tensors)
    staging = folder / f"shared-{name}.staging"
    meta = {"format": "robustai-ckpt-shared"}
    atomic_write(staging, lambda p: save_file(tensors, str(p), metadata=meta))
    sha = sha256_file(staging)
    final = folder / f"shared-{re.sub(r'[^A-Za-z0-9_]', '_', name)}-{sha[:16]}.safetensors"
    os.replace(staging, final)  # the same content under the same name if it was there already
    _written_once[key] = (fingerprint, flat, final.name, sha)
    return flat, {"file": final.name, "sha256": sha}


def _prune_shared(folder: Path) -> None:
    """Remove shared files that no checkpoint left in ``folder`` names."""
    named: set[str] = set()
    for ckpt in list_checkpoints(folder):
        try:
            shared = json.loads(ckpt.path.read_text()).get("shared") or {}
            named.update(str(v.get("file")) for v in shared.values() if isinstance(v, dict))
        except (OSError, ValueError, AttributeError):
            return  # an unreadable checkpoint: keep every shared file rather than guess
    for f in folder.glob("shared-*.safetensors"):
        if f.name not in named:
            f.unlink(missing_ok=True)


def save_checkpoint(
    folder: str | Path,
    components: Mapping[str, Any],
    *,
    epoch: int,
    step: int = 0,
    info: Mapping[str, Any] | None = None,
    keep: int = 2,
) -> Path:
    """Write every component's state; keep the newest ``keep`` checkpoints; return the JSON path.

    A folder holding a newer checkpoint than this one is refused, before anything is written:
    it belongs to another run (a notebook run again into the same folder), the pruning would
    delete the new checkpoint and keep the old run's, and a resume would continue that run."""
    check_keep(keep)
    folder = Path(folder)
    newer = [c for c in list_checkpoints(folder) if (c.epoch, c.step) > (epoch, step)]
    if newer:
        raise ValueError(
            f"{folder} holds {newer[0].path.name}, newer than this checkpoint"
            f" ({checkpoint_tag(epoch, step)}): another run's; save into an empty folder, or"
            " resume from it"
        )
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, Tensor] = {}
    state: dict[str, Any] = {}
    shared: dict[str, dict[str, str]] = {}
    for name, obj in components.items():
        if getattr(obj, "checkpoint_once", False):
            state[name], shared[name] = _write_shared(folder, name, obj.state_dict())
        else:
            state[name] = _flatten(obj.state_dict(), name, tensors)
    tag = checkpoint_tag(epoch, step)
    tensor_file = folder / f"{tag}.safetensors"
    meta = {"format": "robustai-ckpt"}
    atomic_write(tensor_file, lambda p: save_file(tensors, str(p), metadata=meta))
    payload = {
        "format_version": FORMAT_VERSION,
        "epoch": epoch,
        "step": step,
        "tensors_file": tensor_file.name,
        "tensors_sha256": sha256_file(tensor_file),
        "info": dict(info or {}),
        "state": state,
        "shared": shared,
    }
    key = signing_key_from_env()
    if key is not None:  # else whoever can write the folder could steer the resumed run
        payload[SIGNATURE_FIELD] = sign_payload(payload, key)
    json_file = folder / f"{tag}.json"
    atomic_write(json_file, lambda p: p.write_text(json.dumps(payload, allow_nan=True)))
    for old in list_checkpoints(folder)[keep:]:
        for f in (old.path, old.path.with_suffix(".safetensors")):
            f.unlink(missing_ok=True)
    _prune_orphans(folder)
    _prune_shared(folder)
    return json_file


def _prune_orphans(folder: Path) -> None:
    """Delete what a process killed mid-save left: a tensor file whose JSON was never written
    (no checkpoint, and never pruned with one: a model's size per kill) and the temporary files
    of unfinished writes. One process saves into a folder at a time (the run lock)."""
    named = {c.path.with_suffix(".safetensors").name for c in list_checkpoints(folder)}
    for f in folder.glob("epoch-*.safetensors"):
        if _NAME.match(f.stem) and f.name not in named:
            f.unlink(missing_ok=True)
    for f in folder.glob(".epoch-*.tmp"):
        f.unlink(missing_ok=True)


def check_keep(keep: object) -> None:
    """``keep`` (checkpoints kept) is a whole number >= 1: 0 deleted the one just written."""
    if not is_integer(keep) or keep < 1:  # type: ignore[operator]
        raise ValueError(f"keep must be an integer >= 1 (checkpoints kept); got {keep!r}")


def list_checkpoints(folder: str | Path) -> list[CheckpointInfo]:
    """Complete-looking checkpoints (their JSON exists), newest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for f in folder.glob("epoch-*.json"):
        m = _NAME.match(f.stem)
        if m:
            found.append(CheckpointInfo(f, int(m.group(1)), int(m.group(2) or 0)))
    return sorted(found, key=lambda c: (c.epoch, c.step), reverse=True)


def read_checkpoint(json_file: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Validate and read one checkpoint: (component states, info). Never unpickles anything."""
    json_file = Path(json_file)
    try:
        payload = json.loads(json_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(
            f"{json_file} is not a readable checkpoint (invalid JSON: {e})"
        ) from e
    required = {
        "format_version": int,
        "epoch": int,
        "step": int,
        "tensors_file": str,
        "tensors_sha256": str,
        "info": dict,
        "state": dict,
    }
    for key, kind in required.items():
        if not isinstance(payload, dict) or not isinstance(payload.get(key), kind):
            raise CheckpointError(f"{json_file} does not follow the checkpoint schema ({key!r})")
    if payload["format_version"] not in READABLE_FORMATS:
        raise CheckpointError(
            f"{json_file} has checkpoint format {payload['format_version']}; "
            f"this robustai reads formats {', '.join(map(str, READABLE_FORMATS))}"
        )
    # its JSON holds the sha256 of its tensor files: without a signature, whoever could write
    # the run folder could edit the training state, and the signed weights at the end vouch for it
    check_signed(
        json_file,
        payload,
        what="checkpoint",
        verb="resume",
        modified="the checkpoint was modified after it was saved",
    )
    name = payload["tensors_file"]
    if Path(name).name != name:
        raise CheckpointError(f"{json_file} names a tensor file outside its folder: {name!r}")
    tensor_file = json_file.parent / name
    # an earlier checkpoint beside it may be whole: say how to resume from that one
    earlier = (
        f"; to resume from the checkpoint before it, move {json_file.name} (and"
        f" {tensor_file.name}) out of {json_file.parent}"
    )
    if not tensor_file.is_file():
        raise CheckpointError(f"{tensor_file} is missing (named by {json_file.name}){earlier}")
    if sha256_file(tensor_file) != payload["tensors_sha256"]:
        raise CheckpointError(
            f"{tensor_file} does not match the sha256 in {json_file.name}: "
            f"truncated, corrupt or replaced{earlier}"
        )
    tensors = _load_tensors(tensor_file)
    shared = payload.get("shared") or {}
    if not isinstance(shared, dict):
        raise CheckpointError(f"{json_file} does not follow the checkpoint schema ('shared')")
    by_component = {name: _read_shared(json_file, name, ref) for name, ref in shared.items()}
    try:
        state = {
            k: _unflatten(v, by_component.get(k, tensors), json_file)
            for k, v in payload["state"].items()
        }
    except RecursionError:
        raise CheckpointError(
            f"{json_file} does not follow the checkpoint schema (nested too deeply)"
        ) from None
    info = dict(payload["info"], epoch=payload["epoch"], step=payload["step"])
    return state, info


def _load_tensors(tensor_file: Path) -> dict[str, Tensor]:
    try:
        return load_file(str(tensor_file))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{tensor_file} is not a readable safetensors file: {e}") from e


def _read_shared(json_file: Path, name: str, ref: Any) -> dict[str, Tensor]:
    """The tensors of shared file ``ref`` (``{"file", "sha256"}``) that ``json_file`` names."""
    if not (
        isinstance(ref, dict)
        and isinstance(ref.get("file"), str)
        and isinstance(ref.get("sha256"), str)
        and _SHARED.match(ref["file"])
    ):
        raise CheckpointError(
            f"{json_file} does not follow the checkpoint schema (shared {name!r})"
        )
    path = json_file.parent / ref["file"]
    if not path.is_file():
        raise CheckpointError(f"{path} is missing (named by {json_file.name})")
    if sha256_file(path) != ref["sha256"]:
        raise CheckpointError(
            f"{path} does not match the sha256 in {json_file.name}: truncated, corrupt or replaced"
        )
    return _load_tensors(path)


def load_checkpoint(components: Mapping[str, Any], state: Mapping[str, Any], source: Path) -> None:
    """Load each component's saved state; a component missing from the checkpoint is an error."""
    for name, obj in components.items():
        if name not in state:
            raise CheckpointError(
                f"{source} holds no state for {name!r}; it was written by a different kind of run"
            )
        try:
            saved = state[name]
            if isinstance(obj, torch.optim.lr_scheduler.LRScheduler):
                # torch's scheduler takes any keys and values into its __dict__ (an edited
                # checkpoint replaced its optimizer, or made total_steps a string): the saved
                # state must have the layout of this run's own
                fresh = obj.state_dict()
                _check_layout(fresh, saved, name, type(obj))
                _check_scheduler_position(fresh, saved, name)
                # private keys a newer torch added (``_is_initial``) keep this run's values
                saved = {**{k: v for k, v in fresh.items() if str(k).startswith("_")}, **saved}
            elif isinstance(obj, torch.nn.Module):
                saved = _module_state(obj, saved)
            obj.load_state_dict(saved)
        except (KeyError, ValueError, RuntimeError, TypeError, IndexError, AttributeError) as e:
            raise CheckpointError(
                f"{source}: the saved {name} state does not fit this run: {_one_line(e)}"
            ) from e


def _one_line(e: Exception) -> str:
    """The first line of ``e``'s message, with the detail a heading ending in ':' announces
    (torch's ``Error(s) in loading state_dict for X:`` puts it on the next line)."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    if not lines:
        return type(e).__name__
    if lines[0].endswith(":") and len(lines) > 1:
        return f"{lines[0]} {lines[1]}"
    return lines[0]


def _module_state(model: torch.nn.Module, saved: Any) -> Mapping[str, Any]:
    """``saved`` keyed as ``model``'s own state dict: a checkpoint of an older version kept the
    keys under DDP's or Opacus' wrappers (``module.``, ``_module.``). A ValueError names the
    first keys that still differ."""
    if not isinstance(saved, Mapping):
        raise ValueError(f"it is {type(saved).__name__}, not a mapping of tensors")
    fresh = list(model.state_dict())
    fitted = unwrapped_state(saved, fresh)
    if fitted is not None:
        return fitted
    missing = [k for k in fresh if k not in saved]
    unexpected = [str(k) for k in saved if k not in set(fresh)]

    def first(keys: list[str]) -> str:
        more = f" (+{len(keys) - 3} more)" if len(keys) > 3 else ""
        return ", ".join(keys[:3]) + more

    found = "; ".join(
        f"{what} {first(keys)}"
        for what, keys in (("missing keys", missing), ("unexpected keys", unexpected))
        if keys
    )
    raise ValueError(
        f"{found}; it was written for another model: resume with the model settings the run "
        "was started with (model, model.params, privacy.fix_model), or start a new run without "
        "trainer.resume"
    )


def _check_layout(fresh: Any, saved: Any, where: str, owner: type | None = None) -> None:
    """``saved`` has ``fresh``'s public keys, list lengths and kinds of value (integers for
    integers, finite numbers for numbers, the same strings: they name the schedule's settings,
    which a resume keeps); a ValueError names the first difference. Other keys may hold plain values
    only (a scheduler saved by another version, e.g. OneCycleLR's ``use_beta1``), and none may
    replace the optimizer or shadow an attribute of ``owner``'s class (``step``)."""
    if isinstance(fresh, Mapping):
        if not isinstance(saved, Mapping):
            raise ValueError(f"{where} is {type(saved).__name__}, not a mapping")
        # a private key a newer torch added (``_is_initial``) keeps this run's (load_checkpoint)
        missing = sorted(k for k in map(str, set(fresh) - set(saved)) if not k.startswith("_"))
        if missing:
            raise ValueError(f"{where} lacks {', '.join(missing)}")
        for key in set(saved) - set(fresh):
            plain = saved[key] is None or isinstance(saved[key], bool | int | float | str)
            shadows = owner is not None and hasattr(owner, str(key))
            if key == "optimizer" or not plain or shadows or str(key).startswith("__"):
                raise ValueError(f"{where}.{key} is no setting of this run's")
        for key, value in fresh.items():
            if key in saved:
                _check_layout(value, saved[key], f"{where}.{key}")
    elif isinstance(fresh, list | tuple):
        if not isinstance(saved, list | tuple) or len(saved) != len(fresh):
            raise ValueError(f"{where} is not a list of {len(fresh)} values")
        for i, (a, b) in enumerate(zip(fresh, saved, strict=True)):
            _check_layout(a, b, f"{where}[{i}]")
    elif isinstance(fresh, bool) or fresh is None:
        if fresh is not None and not isinstance(saved, bool):
            raise ValueError(f"{where} is {type(saved).__name__}, not bool")
    elif isinstance(fresh, int):
        if not isinstance(saved, int) or isinstance(saved, bool):
            raise ValueError(f"{where} is {type(saved).__name__}, not int")
    elif isinstance(fresh, float):
        if not isinstance(saved, int | float) or isinstance(saved, bool):
            raise ValueError(f"{where} is {type(saved).__name__}, not float")
        if not math.isfinite(saved):
            raise ValueError(f"{where} is {saved}, not a finite number")
    elif isinstance(fresh, str):
        if saved != fresh:
            raise ValueError(f"{where} is {saved!r}, where this run's schedule has {fresh!r}")
    elif not isinstance(saved, type(fresh)):
        raise ValueError(f"{where} is {type(saved).__name__}, not {type(fresh).__name__}")


def _check_scheduler_position(
    fresh: Mapping[str, Any], saved: Mapping[str, Any], where: str
) -> None:
    """A schedule of ``total_steps`` steps (OneCycleLR) resumed past its end fails at its next
    step ("Tried to step N times"); its length is the run's, which a resume keeps."""
    total, last = saved.get("total_steps"), saved.get("last_epoch")
    if total != fresh.get("total_steps"):
        raise ValueError(
            f"{where}.total_steps is {total}, where this run's schedule has"
            f" {fresh['total_steps']} (epochs x steps per epoch: with another number of"
            " processes, a last batch too small to share among them is left out; resume with"
            " the run's number of processes, or train anew)"
        )
    if isinstance(total, int) and isinstance(last, int) and not -1 <= last <= total:
        raise ValueError(f"{where}.last_epoch {last} is no step of a {total}-step schedule")
