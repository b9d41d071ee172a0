"""MNIST, Fashion-MNIST and CIFAR-10 through torchvision, held in memory as tensors."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from robustai.errors import DataError

log = logging.getLogger(__name__)

_CLASSES = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "cifar10": "CIFAR10"}


def load_torchvision(
    name: str, root: str | Path, train: bool, download: bool
) -> tuple[Tensor, Tensor]:
    """One split of a torchvision data set as float (N, C, H, W) in [0, 1] and int64 labels."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, _CLASSES[name])
    root = Path(root).expanduser()
    folder = getattr(cls, "base_folder", cls.__name__)  # CIFAR10 keeps cifar-10-batches-py/
    # Files already on disk are tried first, without download: a truncated or damaged copy is then
    # reported as such, not as a missing set or a failed download (torchvision raises the same
    # RuntimeError for all three, and a bare AssertionError for some damaged files).
    try:
        ds = cls(root=str(root), train=train, download=False)
    except RuntimeError as e:
        if "not found" not in str(e).lower():
            raise _corrupt(cls.__name__, root / folder, e) from e
        damage = _damaged_file(cls, root / folder)
        if damage is not None:  # CIFAR says "not found or corrupted" for both
            raise _corrupt(cls.__name__, root / folder, ValueError(damage)) from e
        if not download:
            unreadable = _unreadable(root / folder)
            if unreadable:  # torchvision's checks read "may not enter" as "not there"
                raise DataError(f"cannot read {cls.__name__} under {root}: {unreadable}") from e
            raise DataError(
                f"{cls.__name__} not found under {root / folder}; set data.download=true to "
                f"fetch it, or data.root=<folder holding {folder}/>"
            ) from e
        ds = _download(cls, root, train, folder)
    except (AssertionError, ValueError, EOFError) as e:
        raise _corrupt(cls.__name__, root / folder, e) from e
    except OSError as e:
        raise DataError(f"cannot read {cls.__name__} under {root}: {e}") from e
    data = ds.data if isinstance(ds.data, Tensor) else torch.from_numpy(ds.data)
    # (N, H, W) grayscale or (N, H, W, C) colour -> (N, C, H, W)
    x = data.unsqueeze(1) if data.ndim == 3 else data.permute(0, 3, 1, 2)
    y = torch.as_tensor(ds.targets, dtype=torch.int64)
    if len(x) != len(y):  # torchvision does not compare the image and label files
        raise _corrupt(
            cls.__name__, root / folder, ValueError(f"{len(x)} images but {len(y)} labels")
        )
    n_classes = len(ds.classes)
    if len(y) and not 0 <= int(y.min()) <= int(y.max()) < n_classes:
        bad = int(y.max()) if int(y.max()) >= n_classes else int(y.min())
        raise _corrupt(
            cls.__name__, root / folder, ValueError(f"label {bad} of {n_classes} classes")
        )
    log.info("loaded %s %s split: %d images", cls.__name__, "train" if train else "test", len(x))
    return (x.float() / 255.0).contiguous(), y


def test_images_file(name: str, root: str | Path) -> Path | None:
    """The IDX file of ``name``'s test images under ``root`` as torchvision keeps it (MNIST and
    Fashion-MNIST: ``<root>/<Class>/raw/t10k-images-idx3-ubyte``); None for other sets."""
    if name not in ("mnist", "fashion_mnist"):
        return None
    return Path(root).expanduser() / _CLASSES[name] / "raw" / "t10k-images-idx3-ubyte"


#: seconds a download may wait for the server before it counts as failed (torchvision's
#: urlopen has no timeout of its own: a stalled connection waited forever)
DOWNLOAD_TIMEOUT_S = 60.0


def _download(cls: type, root: Path, train: bool, folder: str) -> Any:
    """Fetch the set with torchvision; a failed download is one line naming the way around it."""
    import socket
    import urllib.error

    def failed(e: BaseException, reason: str) -> DataError:
        return DataError(
            f"could not download {cls.__name__} into {root}: {reason}; check the network, "
            f"or fetch it elsewhere and set data.root=<folder holding {folder}/>"
        )

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        return cls(root=str(root), train=train, download=True)
    except RuntimeError as e:
        # torchvision lists each mirror it tried, one line each: keep the gist
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()] or [repr(e)]
        raise failed(e, " ".join(dict.fromkeys([lines[0], lines[-1]]))) from e
    except (urllib.error.URLError, TimeoutError) as e:  # CIFAR-10 has one URL, and no wrapper
        reason = getattr(e, "reason", None) or e
        if isinstance(reason, TimeoutError | socket.timeout):
            reason = f"no answer within {DOWNLOAD_TIMEOUT_S:g} s"
        raise failed(e, str(reason)) from e
    except (AssertionError, ValueError, EOFError) as e:
        raise _corrupt(cls.__name__, root / folder, e) from e
    except OSError as e:
        raise DataError(f"cannot read {cls.__name__} under {root}: {e}") from e
    finally:
        socket.setdefaulttimeout(previous)


def _unreadable(folder: Path) -> str | None:
    """Why ``folder`` (or a folder above it) cannot be listed; None when it can, or is missing."""
    try:
        os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        return e.strerror or str(e)
    return None


def _damaged_file(cls: type, folder: Path) -> str | None:
    """What is wrong with a partial or damaged copy in ``folder``; None when none is there.

    CIFAR-10 raises one "not found or corrupted" RuntimeError whether its folder is missing or
    its files fail their MD5 check; the files it lists (``train_list``, ``test_list``, ``meta``)
    tell the two apart. Sets without such lists (MNIST) say "not found" only when files are
    missing, so None.
    """
    from torchvision.datasets.utils import check_integrity

    listed = [*getattr(cls, "train_list", []), *getattr(cls, "test_list", [])]
    meta = getattr(cls, "meta", None)
    if isinstance(meta, dict) and "filename" in meta:
        listed.append((meta["filename"], meta.get("md5")))
    try:  # a folder this process may not enter raises here
        found = {name for name, _ in listed if (folder / name).is_file()}
    except OSError as e:
        raise DataError(f"cannot read {cls.__name__} under {folder}: {e.strerror or e}") from e
    present = [(name, md5) for name, md5 in listed if name in found]
    if not present:
        return None
    missing = [name for name, _ in listed if name not in found]
    if missing:
        return f"{len(missing)} of its {len(listed)} files missing: {', '.join(missing)}"
    for name, md5 in present:
        if not check_integrity(str(folder / name), md5):
            return f"{name} fails its MD5 check"
    return None


def _corrupt(name: str, folder: Path, e: BaseException) -> DataError:
    """The files are there but cannot be read: most often a download that stopped half-way."""
    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return DataError(
        f"{name} under {folder} is truncated or corrupt ({reason}); delete {folder} and fetch it"
        " again with data.download=true"
    )
