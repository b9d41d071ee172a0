"""Model files: ``weights.safetensors`` + ``meta.json``. Nothing is ever pickled or unpickled.

``meta.json`` holds what is needed to rebuild the model (registry name and keyword arguments,
input shape, classes, normalization) and the sha256 of the weights file, so a swapped or damaged
file is noticed before it is used. With ``ROBUSTAI_SIGNING_KEY`` set, ``meta.json`` also carries an
HMAC-SHA256 over itself (hence over the weights' sha256), checked on loading.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save_file
from torch import nn

from robustai.argcheck import check_flag
from robustai.errors import CheckpointError
from robustai.fileio import atomic_write, sha256_file
from robustai.models.normalize import Normalize
from robustai.models.registry import build_model
from robustai.security.signing import (
    SIGNATURE_FIELD,
    check_signed,
    sign_meta,
    signing_key_from_env,
)

log = logging.getLogger(__name__)

WEIGHTS = "weights.safetensors"
META = "meta.json"
FORMAT_VERSION = 1


def save_model(
    model: nn.Module,
    out_dir: str | Path,
    *,
    name: str,
    params: dict[str, Any],
    input_shape: tuple[int, ...],
    num_classes: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    extra: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Save ``model`` (built by :func:`build_model`) into ``out_dir``; returns the weights path.

    A folder that already holds a saved model is refused unless ``overwrite=True``: a run
    folder's metrics and report describe its own weights, which a save there would replace.

    A model changed by :func:`robustai.privacy.make_dp_compatible` (BatchNorm -> GroupNorm)
    needs ``extra={"privacy": {"model_fixed": names}}``, with the names that function returned,
    so that :func:`load_model` rebuilds it with the same fix."""
    from robustai import __version__

    meta = {
        "format_version": FORMAT_VERSION,
        "model": {"name": name, "params": params},
        "input_shape": list(input_shape),
        "num_classes": num_classes,
        "normalization": {"mean": list(mean), "std": list(std)},
        "robustai_version": __version__,
        "torch_version": torch.__version__,
        "weights_sha256": "",  # set below, once the weights are written
        **(extra or {}),
    }
    meta = _plain_json(meta)  # before anything is written: a failure leaves out_dir as it was
    _check_rebuildable(model, meta)
    key = signing_key_from_env()  # so is an unusable key: the weights there stay with their meta
    out = Path(out_dir)
    held = [n for n in (WEIGHTS, META) if (out / n).exists()]
    if held and not check_flag("overwrite", overwrite):
        raise FileExistsError(
            f"{out} already holds a saved model ({', '.join(held)}); save into another folder,"
            " or pass overwrite=True to replace it"
        )
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    weights = out / WEIGHTS
    atomic_write(weights, lambda p: save_file(state, str(p), metadata={"format": "pt"}))
    meta["weights_sha256"] = sha256_file(weights)
    if key is not None:  # HMAC over the weights' sha256 and all the metadata
        meta[SIGNATURE_FIELD] = sign_meta(meta, key)
    atomic_write(out / META, lambda p: p.write_text(json.dumps(meta, indent=2) + "\n"))
    return weights


def _plain_json(meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` as plain JSON values: NumPy and tensor values (``np.int64(10)``, a mean computed
    as a tensor) become numbers and lists; anything else JSON cannot hold is a one-line error."""

    def plain(value: object) -> object:
        if hasattr(value, "tolist"):  # NumPy scalars and arrays, torch tensors
            return value.tolist()
        raise TypeError(
            f"meta.json holds plain JSON values only; got a value of type {type(value).__name__}"
            f" ({value!r:.60})"
        )

    return json.loads(json.dumps(meta, default=plain))


def _rebuild(meta: dict[str, Any]) -> nn.Module:
    """The model ``meta.json`` describes, freshly initialised (on the current default device)."""
    spec = meta["model"]
    norm = meta["normalization"]
    model = build_model(
        spec["name"],
        input_shape=tuple(meta["input_shape"]),
        num_classes=int(meta["num_classes"]),
        mean=norm["mean"],
        std=norm["std"],
        **spec.get("params", {}),
    )
    if (meta.get("privacy") or {}).get("model_fixed"):  # trained with BatchNorm -> GroupNorm
        from robustai.privacy import make_dp_compatible

        model, _ = make_dp_compatible(model)
    return model


def _shape_mismatch(expected: dict[str, Any], got: dict[str, Any]) -> str | None:
    """What differs between two state dicts' tensor names and shapes (up to three of each)."""
    want = {k: tuple(v.shape) for k, v in expected.items()}
    have = {k: tuple(v.shape) for k, v in got.items()}
    if want == have:
        return None
    missing = sorted(set(want) - set(have))[:3]
    unexpected = sorted(set(have) - set(want))[:3]
    shapes = [
        f"{k} {list(have[k])} (expected {list(want[k])})"
        for k in sorted(set(want) & set(have))
        if want[k] != have[k]
    ][:3]
    return f"missing {missing}, unexpected {unexpected}, other shapes {shapes}"


def _dp_fixed_layers(meta: dict[str, Any], model: nn.Module) -> list[str] | None:
    """The layers :func:`robustai.privacy.make_dp_compatible` replaced, where ``model`` is the
    model ``meta`` describes after that fix but ``meta`` does not say so; else None. Only on
    the error path: it imports Opacus."""
    if (meta.get("privacy") or {}).get("model_fixed"):
        return None
    try:
        from robustai.privacy import make_dp_compatible

        with torch.device("meta"):
            fixed, names = make_dp_compatible(_rebuild(meta))
    except Exception:  # any failure here only loses the hint
        return None
    if names and _shape_mismatch(fixed.state_dict(), model.state_dict()) is None:
        return names
    return None


def _check_rebuildable(model: nn.Module, meta: dict[str, Any]) -> None:
    """Refuse to write an artifact that :func:`load_model` could not load: the registry name
    and params in ``meta`` must rebuild a model with ``model``'s tensor names and shapes (built
    on the meta device, so nothing is allocated)."""
    try:
        with torch.device("meta"):
            expected = _rebuild(meta).state_dict()
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(
            f"save_model writes models that build_model can rebuild ({e}); for an architecture"
            " of your own, save its state_dict with safetensors.torch.save_file"
        ) from e
    spec = meta["model"]
    mismatch = _shape_mismatch(expected, model.state_dict())
    if mismatch:
        fixed = _dp_fixed_layers(meta, model)
        fix = (
            "pass the name and params it was built with"
            if fixed is None
            else "it is that model after robustai.privacy.make_dp_compatible (BatchNorm ->"
            " GroupNorm), which meta.json must record: pass extra={'privacy': {'model_fixed':"
            f" names}}}} with the names it returned ({', '.join(fixed[:3])}"
            f"{', ...' if len(fixed) > 3 else ''})"
        )
        raise ValueError(
            f"the model does not match build_model({spec['name']!r}, params={spec['params']!r},"
            f" input_shape={tuple(meta['input_shape'])}, num_classes={meta['num_classes']}), so"
            f" load_model could not load it ({mismatch}); {fix}"
        )
    norm = meta["normalization"]
    differs = _normalization_mismatch(model, norm["mean"], norm["std"])
    if differs:
        raise ValueError(
            f"mean/std given to save_model are not the model's: {differs}; meta.json must "
            "describe the normalization the weights apply"
        )


def _normalization_mismatch(model: nn.Module, mean: Any, std: Any) -> str | None:
    """How ``model``'s Normalize layer differs from ``mean``/``std``, compared at the precision
    of the layer's buffers: float32 ones to about 1e-6; a float16 or bfloat16 model holds 0.1307
    as 0.13074 or 0.1309, which is the same mean to that precision."""
    layer = next((m for m in model.modules() if isinstance(m, Normalize)), None)
    if layer is None:
        return None
    for what, buffer, given in (("mean", layer.mean, mean), ("std", layer.std, std)):
        have = buffer.detach().flatten().cpu().double()
        want = torch.tensor([float(v) for v in given], dtype=torch.float64)
        # one unit in the last place of the buffer's dtype, relative (float16: 1e-3)
        rtol = max(1e-6, torch.finfo(buffer.dtype).eps) if buffer.is_floating_point() else 1e-6
        if have.shape != want.shape or not torch.allclose(have, want, rtol=rtol, atol=1e-7):
            return f"its Normalize layer has {what} {have.tolist()}, not {want.tolist()}"
    return None


def _unfinished_hint(folder: Path) -> str:
    """For a run folder that holds training checkpoints but no model yet: how to finish it."""
    from robustai.training.checkpoint import CHECKPOINT_DIR, list_checkpoints

    found = list_checkpoints(folder / CHECKPOINT_DIR)
    if not found:
        return ""
    return (
        f" (this run stopped before it saved its model, at {found[0].path.name}: finish it with"
        f" robustai train trainer.resume={folder})"
    )


def read_meta(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """Find ``weights.safetensors`` and ``meta.json`` from a run folder or either file's path."""
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    weights, meta_path = folder / WEIGHTS, folder / META
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}; give a run folder or its {WEIGHTS}")
    if not p.is_dir() and p.name not in (WEIGHTS, META):  # e.g. checkpoints/epoch-0003.json
        run = next((d for d in p.parents[:2] if (d / WEIGHTS).is_file()), None)
        raise CheckpointError(
            f"{p} is neither a run folder nor its {WEIGHTS} or {META}; give the run folder"
            + (f", e.g. {run}" if run is not None else "")
        )
    for f in (weights, meta_path):
        if not f.is_file():
            raise CheckpointError(
                f"{f} is missing; a checkpoint is a folder with {WEIGHTS} and {META}"
                + _unfinished_hint(folder)
            )
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{meta_path} is not valid JSON: {e}") from e
    except RecursionError as e:  # nesting deeper than the parser's stack
        raise CheckpointError(f"{meta_path} is not a meta.json: nested too deeply") from e
    if (
        not isinstance(meta, dict)
        or not {"model", "input_shape", "num_classes", "normalization"} <= meta.keys()
    ):
        raise CheckpointError(f"{meta_path} lacks model, input_shape, num_classes or normalization")
    version = meta.get("format_version", FORMAT_VERSION)  # a hand-written meta.json may lack it
    if not (isinstance(version, int) and not isinstance(version, bool) and version >= 1):
        raise CheckpointError(
            f"{meta_path}: format_version {json.dumps(version)} is no version robustai writes"
        )
    if version > FORMAT_VERSION:  # read as this version, its new fields would be ignored
        raise CheckpointError(
            f"{meta_path} has format_version {version}, newer than this robustai reads"
            f" ({FORMAT_VERSION}); upgrade robustai to load it"
        )
    classes = meta["num_classes"]
    if not (isinstance(classes, int) and not isinstance(classes, bool) and classes >= 1):
        # int() took 10.7 as 10 and "10" as 10
        raise CheckpointError(
            f"{meta_path}: num_classes must be a whole number >= 1, got {json.dumps(classes)}"
        )
    threat = meta.get("threat_model")
    if threat is not None and not (
        isinstance(threat, dict) and threat.get("norm", "linf") in ("linf", "l2")
    ):  # read by evaluate for its default eps and norm: a string failed there with a traceback
        raise CheckpointError(
            f"{meta_path}: threat_model must be null or {{\"norm\": \"linf\" | \"l2\","
            f" \"eps\": ...}}, got {json.dumps(threat)[:60]}; the file was edited or damaged"
        )
    return weights, meta


def check_signature(meta_path: Path, meta: dict[str, Any]) -> None:
    """With ``ROBUSTAI_SIGNING_KEY`` set, only an artifact signed with that key is accepted (its
    weights_sha256, checked before, ties the weights to the signature)."""
    check_signed(
        meta_path,
        meta,
        what="artifact",
        verb="load",
        modified="the weights or their metadata were modified after signing",
    )


def load_model(
    path: str | Path, map_location: str | torch.device = "cpu", *, query_mechanism: bool = True
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model from ``meta.json`` and load its weights after checking their sha256.

    ``query_mechanism``: a noise mechanism the run trained and evaluated inside its model
    (``privacy.where=features|output``; meta.json describes it, the weights file does not hold
    it) is put back, with fresh noise, so the model is the one the run reported on and the
    protection meta.json claims is in place. False gives the bare network."""
    weights, meta = read_meta(path)
    expected = meta.get("weights_sha256")
    if not (isinstance(expected, str) and re.fullmatch(r"[0-9a-f]{64}", expected)):
        # every model robustai saves has it: without it a swapped weights file would load
        raise CheckpointError(
            f"{weights.parent / META} has no valid weights_sha256 (robustai writes one with every"
            " model): edited, or not written by robustai; refusing to load unchecked weights"
        )
    # Read once: the bytes hashed (and so signed) are the bytes loaded; checked by path and
    # loaded by path again, a file swapped in between would load unchecked.
    try:
        data = weights.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read {weights}: {e.strerror}") from e
    if hashlib.sha256(data).hexdigest() != expected:
        raise CheckpointError(
            f"{weights} does not match the sha256 in its meta.json: modified or corrupt"
        )
    check_signature(weights.parent / META, meta)
    try:
        state = {k: v.to(map_location) for k, v in load_safetensors(data).items()}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{weights} is not a readable safetensors file: {e}") from e
    except RuntimeError as e:  # e.g. map_location="cuda" on a machine without one
        raise CheckpointError(
            f"cannot load {weights} onto {map_location}: {str(e).splitlines()[0]}"
        ) from e
    try:
        # Compare shapes on the meta device first: an edited meta.json asking for a huge model
        # fails here, before any of that memory is allocated and initialised.
        with torch.device("meta"):
            mismatch = _shape_mismatch(_rebuild(meta).state_dict(), state)
        if mismatch:
            raise ValueError(mismatch)
        complex_ = [k for k, v in state.items() if v.is_complex()]
        if complex_:  # load_state_dict would drop the imaginary part with a warning
            raise ValueError(f"tensor {complex_[0]} holds complex numbers")
        model = _rebuild(meta)
        floats = {v.dtype for v in state.values() if v.is_floating_point()}
        if len(floats) == 1:  # e.g. a float64 model: load_state_dict would cast it to float32
            model = model.to(floats.pop())
        model.load_state_dict(state)
        differs = _normalization_mismatch(
            model, meta["normalization"]["mean"], meta["normalization"]["std"]
        )
        if differs:
            raise ValueError(f"the weights' normalization differs from meta.json's: {differs}")
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise CheckpointError(
            f"{weights} does not fit the model described in its meta.json: {e}"
        ) from e
    model = model.to(map_location).eval()
    if query_mechanism:
        from robustai.privacy.plans import attach_query_mechanism

        try:
            attach_query_mechanism(model, meta.get("privacy"))
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(
                f"{weights.parent / META}: its privacy section does not describe a mechanism "
                f"robustai can rebuild ({type(e).__name__}: {e}); edited, or not written by "
                "robustai"
            ) from e
    return model, meta
