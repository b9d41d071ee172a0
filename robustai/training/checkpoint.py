"""Resumable training checkpoints without pickle.

A checkpoint is a pair of files in ``<run>/checkpoints/``: ``<tag>.safetensors`` holds every tensor
(weights, optimizer buffers, RNG states, ...) and ``<tag>.json`` everything else plus the sha256 of
the tensor file. Both are written atomically (temporary file, fsync, rename) and the JSON last,
so a checkpoint is complete exactly when its JSON exists and its hash matches. A process killed at
any moment leaves the previous checkpoint intact.

Any object with ``state_dict()`` / ``load_state_dict()`` whose state is made of tensors, numpy
arrays, numbers, strings, lists, tuples and dicts can be checkpointed (model, optimizer, LR
scheduler, loader, watchdog, accountant, ...).
"""

from __future__ import annotations

import json
import logging
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

from robustai.errors import CheckpointError
from robustai.fileio import atomic_write, sha256_file

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^epoch-(\d{4,})(?:-step-(\d{6,}))?$")


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


def save_checkpoint(
    folder: str | Path,
    components: Mapping[str, Any],
    *,
    epoch: int,
    step: int = 0,
    info: Mapping[str, Any] | None = None,
    keep: int = 2,
) -> Path:
    """Write every component's state; keep the newest ``keep`` checkpoints; return the JSON path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, Tensor] = {}
    state = {name: _flatten(obj.state_dict(), name, tensors) for name, obj in components.items()}
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
    }
    json_file = folder / f"{tag}.json"
    atomic_write(json_file, lambda p: p.write_text(json.dumps(payload, allow_nan=True)))
    for old in list_checkpoints(folder)[keep:]:
        for f in (old.path, old.path.with_suffix(".safetensors")):
            f.unlink(missing_ok=True)
    return json_file


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
    if payload["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{json_file} has checkpoint format {payload['format_version']}; "
            f"this robustai reads format {FORMAT_VERSION}"
        )
    name = payload["tensors_file"]
    if Path(name).name != name:
        raise CheckpointError(f"{json_file} names a tensor file outside its folder: {name!r}")
    tensor_file = json_file.parent / name
    if not tensor_file.is_file():
        raise CheckpointError(f"{tensor_file} is missing (named by {json_file.name})")
    if sha256_file(tensor_file) != payload["tensors_sha256"]:
        raise CheckpointError(
            f"{tensor_file} does not match the sha256 in {json_file.name}: "
            "truncated, corrupt or replaced"
        )
    try:
        tensors = load_file(str(tensor_file))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{tensor_file} is not a readable safetensors file: {e}") from e
    try:
        state = {k: _unflatten(v, tensors, json_file) for k, v in payload["state"].items()}
    except RecursionError:
        raise CheckpointError(
            f"{json_file} does not follow the checkpoint schema (nested too deeply)"
        ) from None
    info = dict(payload["info"], epoch=payload["epoch"], step=payload["step"])
    return state, info


def load_checkpoint(components: Mapping[str, Any], state: Mapping[str, Any], source: Path) -> None:
    """Load each component's saved state; a component missing from the checkpoint is an error."""
    for name, obj in components.items():
        if name not in state:
            raise CheckpointError(
                f"{source} holds no state for {name!r}; it was written by a different kind of run"
            )
        try:
            obj.load_state_dict(state[name])
        except (KeyError, ValueError, RuntimeError, TypeError, IndexError) as e:
            raise CheckpointError(
                f"{source}: the saved {name} state does not fit this run: {str(e).splitlines()[0]}"
            ) from e
