"""Reader for IDX files (the format of the original MNIST distribution), plain or gzipped."""

from __future__ import annotations

import gzip
import hashlib
import logging
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from robustai.errors import DataError

log = logging.getLogger(__name__)

_GZIP_MAGIC = b"\x1f\x8b"
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def resolved_path(path: str | Path) -> Path:
    """The file :func:`read_idx` reads for ``path`` (see :func:`_resolve`)."""
    return _resolve(path)


def _is_file(path: Path) -> bool:
    """``path.is_file()``, with the errors it lets through (a folder this process may not enter,
    a name too long) as one line: they are the user's path, not a bug."""
    try:
        return path.is_file()
    except OSError as e:
        raise DataError(
            f"cannot read IDX file {path}: {e.strerror or e}; check the path and that its"
            " folders may be read"
        ) from e


def _resolve(path: str | Path) -> Path:
    """The file ``read_idx`` reads for ``path``: ``~`` expanded, and the other of the two names
    MNIST's files go by (gunzipped or not) when ``path`` itself is missing. Messages about the
    content name this file, not one that does not exist."""
    path = Path(path).expanduser()
    if not _is_file(path):
        other = path.with_suffix("") if path.suffix == ".gz" else Path(f"{path}.gz")
        if _is_file(other):
            log.info("IDX file %s not found; reading %s", path.name, other)
            return other
    return path


def _read_raw(path: Path) -> bytes:
    """The file's bytes, decompressed when it is gzipped (by its magic number, whatever its
    name)."""
    if not _is_file(path):
        raise DataError(
            f"IDX file not found: {path}; point data.root at the folder holding it, or"
            " data.images / data.labels at the files"
        )
    try:
        with path.open("rb") as f:
            opener = gzip.open if f.read(2) == _GZIP_MAGIC else open
        with opener(path, "rb") as f:
            return f.read()
    except EOFError as e:  # a gzip stream that ends early
        raise DataError(f"{path} is truncated or corrupt: {e}") from e
    except (OSError, zlib.error) as e:  # zlib.error: damaged deflate data inside a .gz
        raise DataError(f"cannot read IDX file {path}: {e}") from e


def read_idx(path: str | Path) -> Tensor:
    """Read one IDX file into a tensor, checking its header against its size."""
    path = _resolve(path)
    raw = _read_raw(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{path} is truncated or corrupt: header says {dims}, "
            f"payload has {len(raw) - header} bytes instead of {expected}"
        )
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return torch.from_numpy(arr.astype(arr.dtype.newbyteorder("="), copy=True))


def idx_sha256(path: str | Path) -> str:
    """sha256 of an IDX file's content, gzipped or not (both forms give the same): what names
    the data a model was trained on, wherever the file lies."""
    return hashlib.sha256(_read_raw(_resolve(path))).hexdigest()


def load_idx_images(images: str | Path, labels: str | Path) -> tuple[Tensor, Tensor]:
    """Images as float (N, C, H, W) in [0, 1] and labels as int64."""
    images, labels = _resolve(images), _resolve(labels)
    x, y = read_idx(images), read_idx(labels)
    dims = tuple(x.shape)
    if y.ndim == 0:
        raise DataError(f"{labels} holds a single value, not one label per image")
    if x.ndim == 3:
        x = x.unsqueeze(1)
    elif x.ndim != 4:
        raise DataError(f"{images}: expected 3 or 4 dimensions (N,H,W[,C]), found {tuple(x.shape)}")
    elif dims[3] > 4 and dims[1] <= 4:  # (N, 1, 28, 28) read as 28 channels of 1x28 pixels
        raise DataError(
            f"{images}: images of shape {dims[1:]} look channels-first; IDX images are"
            " (N, H, W) or (N, H, W, C): store them channels-last"
        )
    else:
        x = x.permute(0, 3, 1, 2)
    if len(x) and x.numel() == 0:
        raise DataError(f"{images}: its header says images of shape {dims[1:]}, with no pixels")
    if len(x) == 0:  # nothing to split, train on or count classes of
        raise DataError(
            f"{images} holds no images (its header says {dims}); point data.images"
            " at a file with at least one image"
        )
    if len(x) != len(y):
        raise DataError(f"{images} has {len(x)} images but {labels} has {len(y)} labels")
    if y.ndim > 1 and y[0].numel() != 1:
        raise DataError(f"{labels}: expected one label per image, found shape {tuple(y.shape)}")
    y = y.flatten()
    # finite and within int32 too: inf passed as whole, and became a negative int64 index
    if y.is_floating_point() and not bool(((y == y.round()) & (y.abs() < 2**31)).all()):
        raise DataError(f"{labels}: labels must be whole numbers (class indices 0, 1, ...)")
    if len(y) and y.min() < 0:
        raise DataError(
            f"{labels}: labels must be class indices 0, 1, ...; found {int(y.min())}"
        )
    # Bytes are pixel values 0..255; any other type must already hold values in [0, 1]
    # (inputs are in [0, 1] everywhere: the model normalizes, eps is in pixel units).
    scale = 255.0 if x.dtype == torch.uint8 else 1.0
    x = x.float() / scale
    if len(x) and not (bool(torch.isfinite(x).all()) and x.min() >= 0.0 and x.max() <= 1.0):
        lo, hi = float(x.nan_to_num().min()), float(x.nan_to_num().max())
        raise DataError(
            f"{images}: image values must be in [0, 1] (or unsigned bytes 0..255); found "
            f"values in [{lo:g}, {hi:g}]{'' if bool(torch.isfinite(x).all()) else ' and NaN/inf'}"
            "; rescale the file to [0, 1] or store it as unsigned bytes"
        )
    return x.contiguous(), y.long()
