"""The data registry: one factory for every data set, returning a :class:`DataBundle`."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import torch
from torch import Tensor

from robustai.argcheck import is_integer, is_real
from robustai.data.augment import AUGMENTATIONS
from robustai.data.digits import load_digits_tensors
from robustai.data.idx import load_idx_images
from robustai.data.loader import DataBundle, TensorLoader
from robustai.data.split import channel_stats, stratified_split, take
from robustai.data.synthetic import make_synthetic
from robustai.data.torchvision_sets import load_torchvision
from robustai.errors import DataError

log = logging.getLogger(__name__)

DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "idx", "synthetic")

#: per data set, the ``data.*`` settings that decide which images land in the eval split (and,
#: for synthetic, the images themselves, their shape and classes); the sets with an official test
#: split have none
SPLIT_SETTINGS: dict[str, tuple[str, ...]] = {
    "digits": ("split_seed", "holdout"),
    "idx": ("split_seed", "holdout"),
    "synthetic": ("split_seed", "holdout", "num_samples", "noise", "input_shape", "num_classes"),
}


def _check_arguments(**given: object) -> None:
    """One line (TypeError / ValueError) for an argument of the wrong kind, before any data is
    read: "100" or 1.5 images failed deep inside slicing or seeding, and a NaN noise level made
    every synthetic image NaN without a word."""
    for key in ("seed", "split_seed"):
        if not is_integer(given[key]):
            raise TypeError(f"{key} must be a whole number; got {given[key]!r}")
    for key in ("train_size", "eval_size", "num_samples", "num_classes"):
        value = given[key]
        if value is not None and not is_integer(value):
            what = " (or None for all)" if key.endswith("_size") else ""
            raise TypeError(f"{key} must be a whole number{what}; got {value!r}")
    noise = given["noise"]
    if not is_real(noise):
        raise TypeError(f"noise must be a number >= 0; got {noise!r}")
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite number >= 0; got {noise!r}")


def _physical_memory() -> int | None:
    """This machine's RAM in bytes, where the OS says (POSIX sysconf), else None."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def data_names() -> list[str]:
    return list(DATASETS)


def idx_paths(
    root: str | Path, images: str | Path | None, labels: str | Path | None
) -> tuple[str | Path, str | Path]:
    """The image and label files ``data=idx`` reads: those given, or (None or empty) the MNIST
    test files in ``root``. What a run records and ``robustai evaluate`` compares are these."""
    return (
        images or Path(root) / "t10k-images-idx3-ubyte.gz",
        labels or Path(root) / "t10k-labels-idx1-ubyte.gz",
    )


def build_data(
    name: str,
    *,
    batch_size: int = 128,
    eval_batch_size: int = 512,
    seed: int = 0,
    split_seed: int = 0,
    holdout: float = 0.2,
    train_size: int | None = None,
    eval_size: int | None = None,
    root: str | Path = "data",
    download: bool = False,
    images: str | Path | None = None,
    labels: str | Path | None = None,
    num_samples: int = 1024,
    input_shape: tuple[int, int, int] = (1, 8, 8),
    num_classes: int = 10,
    noise: float = 0.3,
    augment: str = "none",
) -> DataBundle:
    """Build train and eval loaders for data set ``name``.

    ``augment`` names a per-image transform of the training batches (``crop_flip``: the
    standard CIFAR-10 random crop and flip; ``none``). ``images`` / ``labels`` (IDX files,
    plain or gzipped) default to the MNIST test files in ``root``. ``holdout`` and
    ``split_seed`` apply to sets without an official test split (digits, idx, synthetic): the
    same split_seed always gives the same split, whatever the
    training seed. ``seed`` only drives the order of training batches. The class count is the
    data set's (10 for the published sets, the largest label + 1 of a whole IDX file,
    ``num_classes`` for synthetic data), never that of the subset ``train_size``/``eval_size``
    take.
    """
    _check_arguments(
        seed=seed,
        split_seed=split_seed,
        train_size=train_size,
        eval_size=eval_size,
        num_samples=num_samples,
        num_classes=num_classes,
        noise=noise,
    )
    if augment not in AUGMENTATIONS:
        raise DataError(f"unknown augmentation '{augment}'; valid: {', '.join(AUGMENTATIONS)}")
    x_tr: Tensor
    if name == "digits":
        x, y = load_digits_tensors()
        x_tr, y_tr, x_ev, y_ev = _split(x, y, holdout, split_seed)
    elif name in ("mnist", "fashion_mnist", "cifar10"):
        x_tr, y_tr = load_torchvision(name, root, train=True, download=download)
        x_ev, y_ev = load_torchvision(name, root, train=False, download=download)
    elif name == "idx":  # by default the MNIST test files in root, as configs/data/idx.yaml
        files = idx_paths(root, images, labels)
        x, y = load_idx_images(*files)
        num_classes = int(y.max()) + 1  # of the whole file, not of the subset taken below
        if num_classes < 2 or num_classes > max(len(y), 1000):
            # else blamed on the model: no classes to tell apart, or a head too large to build
            raise DataError(
                f"{files[1]}: labels 0 .. {num_classes - 1} for {len(y)} images; labels must be"
                " class indices 0 .. C-1 of at least 2 classes (a damaged or wrong labels file?)"
            )
        missing = num_classes - int(torch.unique(y).numel())
        if missing:  # one damaged label byte turns a 10-class file into a 201-class model
            log.warning(
                "%s: labels run 0 .. %d but %d of those classes have no image; the model gets"
                " %d outputs (a damaged labels file, or classes numbered with gaps?)",
                files[1], num_classes - 1, missing, num_classes,
            )
        x_tr, y_tr, x_ev, y_ev = _split(x, y, holdout, split_seed)
    elif name == "synthetic":
        values = num_samples * math.prod(int(d) for d in input_shape)
        too_large = DataError(
            f"data=synthetic: {num_samples} images of shape {tuple(input_shape)} need"
            f" {values * 4 / 2**30:.3g} GiB, more than this machine can allocate; use a"
            " smaller data.num_samples or data.input_shape"
        )
        memory = _physical_memory()
        if memory is not None and values * 4 > memory:  # refused at once, not after drawing
            raise too_large  # the labels (8 bytes each: 8 GB for 1e9 images) and failing
        try:
            x, y = make_synthetic(num_samples, tuple(input_shape), num_classes, noise, split_seed)
        except (RuntimeError, MemoryError) as e:  # the allocator's multi-line error
            raise too_large from e
        x_tr, y_tr, x_ev, y_ev = _split(x, y, holdout, split_seed)
    else:
        raise DataError(f"unknown data set '{name}'; valid: {', '.join(DATASETS)}")

    x_tr, y_tr = _subset(x_tr, y_tr, train_size, split_seed, "train_size", "training")
    x_ev, y_ev = _subset(x_ev, y_ev, eval_size, split_seed, "eval_size", "eval")
    if len(x_tr) == 0:  # only when every class has a single image, which eval gets first
        more = "a larger data.num_samples" if name == "synthetic" else "more images"
        raise DataError(
            f"data {name}: no training images are left: every class has a single image, and"
            f" the split holds out at least one image of each class for evaluation; use {more}"
            " (at least 2 of each class)"
        )
    n_classes = _CLASSES.get(name, num_classes)  # a subset may lack a class; the model may not
    mean, std = channel_stats(x_tr)
    return DataBundle(
        name=name,
        train=TensorLoader(
            x_tr, y_tr, batch_size, shuffle=True, seed=seed, augment=AUGMENTATIONS[augment]
        ),
        eval=TensorLoader(x_ev, y_ev, eval_batch_size, shuffle=False),
        input_shape=tuple(x_tr.shape[1:]),  # type: ignore[arg-type]
        num_classes=n_classes,
        mean=mean,
        std=std,
    )


#: the published data sets' class counts; idx and synthetic data give theirs in ``build_data``
_CLASSES = {"digits": 10, "mnist": 10, "fashion_mnist": 10, "cifar10": 10}


def _subset(
    x: Tensor, y: Tensor, n: int | None, seed: int, key: str, split: str
) -> tuple[Tensor, Tensor]:
    """:func:`take`, saying so when ``n`` asks for more images than the split holds: a run
    asking for 5000 training images of digits trained on 1438 without a word."""
    if n is not None and n > len(x):
        log.warning(
            "%s=%d but the %s split holds %d images; using all %d", key, n, split, len(x), len(x)
        )
    return take(x, y, n, seed)


def _split(
    x: Tensor, y: Tensor, holdout: float, seed: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    tr, ev = stratified_split(y, holdout, seed)
    counts = torch.bincount(y)
    alone = int((counts == 1).sum())
    if alone and len(tr):  # with no training image at all, build_data refuses instead
        log.warning(
            "%d of %d classes have a single image, which the split holds out for evaluation:"
            " the model never trains on them (%d train / %d eval images); use more images",
            alone,
            int((counts > 0).sum()),
            len(tr),
            len(ev),
        )
    return x[tr], y[tr], x[ev], y[ev]
