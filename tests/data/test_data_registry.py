"""build_data: every data set's bundle, splits that depend on split_seed only, clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from robustai.data import DATASETS, DataBundle, build_data, data_names
from robustai.data.split import channel_stats
from robustai.errors import DataError, UserError

N_DIGITS = 1797


def check_bundle(b: DataBundle, shape: tuple[int, int, int], num_classes: int) -> None:
    for loader in (b.train, b.eval):
        assert loader.x.dtype == torch.float32 and loader.y.dtype == torch.int64
        assert tuple(loader.x.shape[1:]) == shape
        assert float(loader.x.min()) >= 0.0 and float(loader.x.max()) <= 1.0
        assert int(loader.y.min()) >= 0 and int(loader.y.max()) < num_classes
    assert b.input_shape == shape and b.num_classes == num_classes
    assert len(b.mean) == len(b.std) == shape[0]
    mean, std = channel_stats(b.train.x)  # normalization comes from the training part only
    assert b.mean == pytest.approx(mean) and b.std == pytest.approx(std)
    assert b.train.shuffle and not b.eval.shuffle


@pytest.fixture(scope="module")
def digits() -> DataBundle:
    return build_data("digits", batch_size=64, eval_batch_size=100)


def test_data_names_match_registry() -> None:
    assert data_names() == list(DATASETS)
    assert {"digits", "mnist", "fashion_mnist", "cifar10", "idx", "synthetic"} <= set(DATASETS)


# ------------------------------------------------------------------------------ digits
def test_digits_bundle(digits: DataBundle) -> None:
    check_bundle(digits, (1, 8, 8), 10)
    assert digits.name == "digits"
    n_tr, n_ev = digits.train.num_samples, digits.eval.num_samples
    assert n_tr + n_ev == N_DIGITS
    assert abs(n_ev - 0.2 * N_DIGITS) <= 10 / 2 + 1  # per-class rounding, at most ±0.5 per class
    assert set(digits.train.y.tolist()) == set(digits.eval.y.tolist()) == set(range(10))
    assert digits.train.batch_size == 64 and digits.eval.batch_size == 100


def test_digits_split_partitions_the_data_set(digits: DataBundle) -> None:
    """Train and eval together are exactly the 1797 digits (as a multiset of (image, label))."""
    from robustai.data.digits import load_digits_tensors

    x, y = load_digits_tensors()
    proj = torch.randn(64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def keys(xs: torch.Tensor, ys: torch.Tensor) -> list[float]:
        return sorted((xs.flatten(1).double() @ proj + 1000.0 * ys.double()).tolist())

    parts = keys(
        torch.cat([digits.train.x, digits.eval.x]), torch.cat([digits.train.y, digits.eval.y])
    )
    assert parts == keys(x, y)


def test_digits_split_depends_on_split_seed_only(digits: DataBundle) -> None:
    again = build_data("digits", batch_size=64, eval_batch_size=100)
    other_seed = build_data("digits", batch_size=64, eval_batch_size=100, seed=123)
    for b in (again, other_seed):  # same split whatever the training seed
        assert torch.equal(b.train.x, digits.train.x) and torch.equal(b.train.y, digits.train.y)
        assert torch.equal(b.eval.x, digits.eval.x) and torch.equal(b.eval.y, digits.eval.y)
        assert b.mean == digits.mean and b.std == digits.std
    # the training seed drives batch order, and it does so repeatably
    first = next(iter(build_data("digits", batch_size=64).train))[1]
    assert torch.equal(first, next(iter(build_data("digits", batch_size=64).train))[1])
    assert not torch.equal(
        first, next(iter(build_data("digits", batch_size=64, seed=123).train))[1]
    )
    # another split_seed gives another split
    other_split = build_data("digits", split_seed=1)
    assert not torch.equal(other_split.eval.x, digits.eval.x)


def test_digits_holdout_and_sizes() -> None:
    b = build_data("digits", holdout=0.5)
    assert abs(b.eval.num_samples - N_DIGITS / 2) <= 6
    small = build_data("digits", train_size=100, eval_size=30)
    assert small.train.num_samples == 100 and small.eval.num_samples == 30
    check_bundle(small, (1, 8, 8), 10)


@pytest.mark.parametrize("split_seed", range(4))
def test_a_small_subset_keeps_the_data_sets_classes(split_seed: int, tmp_path: Path) -> None:
    """A model's output count comes from the data set, not from the labels a subset happens to
    hold: six digits rarely include a 9, and a model with 9 outputs could not be evaluated on
    the full set (nor loaded beside one trained on it)."""
    small = build_data("digits", train_size=3, eval_size=3, split_seed=split_seed)
    assert small.num_classes == 10
    labels = np.repeat(np.arange(10), 3)  # an IDX file: its classes are those of the whole file
    images = np.random.default_rng(0).integers(0, 256, (30, 28, 28))
    (tmp_path / "x-idx3-ubyte").write_bytes(_idx_bytes(images))
    (tmp_path / "y-idx1-ubyte").write_bytes(_idx_bytes(labels))
    idx = build_data(
        "idx", images=tmp_path / "x-idx3-ubyte", labels=tmp_path / "y-idx1-ubyte",
        train_size=3, eval_size=3, split_seed=split_seed,
    )  # fmt: skip
    assert idx.num_classes == 10


# ------------------------------------------------------------------------------ synthetic
@pytest.mark.parametrize(("shape", "classes"), [((1, 8, 8), 10), ((3, 5, 7), 4), ((2, 4, 4), 2)])
def test_synthetic_bundle(shape: tuple[int, int, int], classes: int) -> None:
    b = build_data("synthetic", num_samples=300, input_shape=shape, num_classes=classes)
    check_bundle(b, shape, classes)
    assert b.train.num_samples + b.eval.num_samples == 300
    assert abs(b.eval.num_samples - 60) <= classes
    again = build_data("synthetic", num_samples=300, input_shape=shape, num_classes=classes, seed=9)
    assert torch.equal(again.train.x, b.train.x) and torch.equal(again.eval.y, b.eval.y)


def test_a_split_that_leaves_no_training_images_is_refused() -> None:
    # every class keeps one eval image first: two samples of four classes all go to eval
    with pytest.raises(DataError, match=r"no training images .* a larger data.num_samples"):
        build_data("synthetic", num_samples=2, num_classes=4)


def test_synthetic_num_classes_is_reported_even_if_unseen() -> None:
    b = build_data("synthetic", num_samples=40, num_classes=50)
    assert b.num_classes == 50


# ------------------------------------------------------------------------------ idx
def test_idx_real_mnist(mnist_idx_dir: Path) -> None:
    b = build_data(
        "idx",
        images=mnist_idx_dir / "t10k-images-idx3-ubyte.gz",
        labels=mnist_idx_dir / "t10k-labels-idx1-ubyte.gz",
        holdout=0.2,
    )
    check_bundle(b, (1, 28, 28), 10)
    assert b.train.num_samples == 8000 and b.eval.num_samples == 2000
    for loader in (b.train, b.eval):
        assert set(loader.y.unique().tolist()) == set(range(10))
    assert float(b.train.x.max()) == 1.0 and float(b.train.x.min()) == 0.0  # scaled by 255
    assert 0.1 < b.mean[0] < 0.15 and 0.28 < b.std[0] < 0.33  # MNIST's well-known statistics


def test_idx_reads_the_mnist_test_files_in_root_by_default(mnist_idx_dir: Path) -> None:
    """As ``data=idx data.root=...`` does on the command line."""
    b = build_data("idx", root=mnist_idx_dir)
    assert b.train.num_samples == 8000 and b.eval.num_samples == 2000


def test_idx_without_files_names_the_file_it_looked_for(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"not found: .*t10k-images-idx3-ubyte\.gz; point data"):
        build_data("idx", root=tmp_path)


def test_idx_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        build_data("idx", images=tmp_path / "x.gz", labels=tmp_path / "y.gz")


# ------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([0, 1, 2_000_000_000, 3] * 10, "labels 0 .. 2000000000 for 40 images"),
        ([0] * 40, "labels 0 .. 0 for 40 images"),
    ],
)
def test_idx_labels_that_are_no_class_indices_name_the_file(
    tmp_path: Path, labels: list[int], message: str
) -> None:
    """A damaged label made a 2-billion-class model ("cannot be built here ... use smaller
    model.params"); all zeros, "num_classes must be >= 2" from the model: the file is to blame."""
    from test_idx import write_idx

    images = write_idx(tmp_path / "x", np.zeros((40, 4, 4), dtype=np.uint8))
    y = write_idx(tmp_path / "y", np.array(labels, dtype=np.int64), code=0x0C)
    with pytest.raises(DataError, match=re.escape(f"{y}: {message}; labels must be class")):
        build_data("idx", images=images, labels=y)


@pytest.mark.parametrize(
    ("given", "error", "message"),
    [
        ({"train_size": "100"}, TypeError, "train_size must be a whole number (or None"),
        ({"eval_size": 1.5}, TypeError, "eval_size must be a whole number (or None"),
        ({"split_seed": 1.5}, TypeError, "split_seed must be a whole number; got 1.5"),
        ({"seed": "a"}, TypeError, "seed must be a whole number; got 'a'"),
        ({"num_samples": 2.5}, TypeError, "num_samples must be a whole number; got 2.5"),
        ({"num_classes": True}, TypeError, "num_classes must be a whole number; got True"),
        ({"noise": float("nan")}, ValueError, "noise must be a finite number >= 0; got nan"),
        ({"noise": -1}, ValueError, "noise must be a finite number >= 0; got -1"),
        ({"noise": "0.1"}, TypeError, "noise must be a number >= 0; got '0.1'"),
    ],
)
def test_arguments_of_the_wrong_kind_are_one_line(
    given: dict[str, object], error: type[Exception], message: str
) -> None:
    """Failed deep in slicing or seeding (a torch TypeError of several lines), or, for a NaN
    noise level, gave synthetic images that were all NaN."""
    with pytest.raises(error, match=re.escape(message)):
        build_data("synthetic", **{"num_samples": 64, **given})  # type: ignore[arg-type]


def test_no_training_images_says_every_class_needs_two(tmp_path: Path) -> None:
    """The advice was "a smaller data.holdout", which cannot help: a class's single image is
    held out for evaluation whatever the holdout."""
    with pytest.raises(DataError, match="every class has a single image") as info:
        build_data("synthetic", num_samples=3, num_classes=20)
    assert "holdout" not in str(info.value).split(";")[-1]


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(DataError) as info:
        build_data("imagenet")
    msg = str(info.value)
    assert "imagenet" in msg
    for name in DATASETS:
        assert name in msg
    assert isinstance(info.value, UserError)  # the CLI turns it into one line and exit status 2


@pytest.mark.parametrize(
    ("name", "folder"),
    [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST"), ("cifar10", "cifar-10-batches-py")],
)
def test_torchvision_set_missing_without_download(tmp_path: Path, name: str, folder: str) -> None:
    """The message names the folder torchvision looked in and how to fix it; nothing is fetched."""
    root = tmp_path / "empty"
    with pytest.raises(DataError) as info:
        build_data(name, root=root, download=False)
    msg = str(info.value)
    assert str(root / folder) in msg
    assert "data.download=true" in msg
    assert not root.exists() or not any(root.rglob("*"))


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_a_root_that_cannot_be_looked_at_is_one_line(tmp_path: Path, name: str) -> None:
    """A folder this process may not enter (here: a name too long, which root cannot bypass as it
    does permissions): CIFAR-10's damage check raised a traceback, and MNIST said "not found"."""
    root = tmp_path / ("a" * 300)
    with pytest.raises(DataError, match=r"^cannot read \w+ under .*File name too long") as info:
        build_data(name, root=root, download=False)
    assert "\n" not in str(info.value)


def test_a_failed_download_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torchvision's own download code, against mirrors that refuse the connection."""
    import torchvision.datasets as tvd

    dead = ["http://127.0.0.1:1/a/", "http://127.0.0.1:1/b/"]
    monkeypatch.setattr(tvd.MNIST, "mirrors", dead)
    with pytest.raises(DataError) as info:
        build_data("mnist", root=tmp_path, download=True)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"could not download MNIST into {tmp_path}: Error downloading ")
    assert "Connection refused" in msg and "data.root=<folder holding MNIST/>" in msg


def test_a_failed_cifar_download_is_a_download_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CIFAR-10's one URL raises urllib's URLError (an OSError), which read "cannot read
    CIFAR10 under ...", as if a file were at fault, and named no way around it."""
    import torchvision.datasets as tvd

    monkeypatch.setattr(tvd.CIFAR10, "url", "http://127.0.0.1:1/cifar-10-python.tar.gz")
    with pytest.raises(DataError) as info:
        build_data("cifar10", root=tmp_path, download=True)
    msg = str(info.value)
    assert msg.startswith(f"could not download CIFAR10 into {tmp_path}: ") and "\n" not in msg
    assert "Connection refused" in msg and "data.root=<folder holding" in msg


def test_a_stalled_download_gives_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that accepts the connection and never answers: torchvision's urlopen has no
    timeout, and the run waited forever."""
    import socket

    import torchvision.datasets as tvd

    from robustai.data import torchvision_sets

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)  # the kernel accepts; nobody ever reads or answers
    try:
        port = server.getsockname()[1]
        monkeypatch.setattr(tvd.CIFAR10, "url", f"http://127.0.0.1:{port}/cifar.tar.gz")
        monkeypatch.setattr(torchvision_sets, "DOWNLOAD_TIMEOUT_S", 1.0)
        with pytest.raises(DataError, match=r"could not download CIFAR10 .*no answer within 1 s"):
            build_data("cifar10", root=tmp_path, download=True)
    finally:
        server.close()
    assert socket.getdefaulttimeout() is None  # left as it was


def _idx_bytes(arr: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes, as in MNIST's distribution."""
    head = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return head + arr.astype(np.uint8).tobytes()


def _fake_mnist(root: Path, n_train: int = 12, n_labels: int | None = None) -> Path:
    """torchvision's on-disk MNIST layout (MNIST/raw, gunzipped) with a few random images."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("t10k", 6)):
        images = rng.integers(0, 256, (n, 28, 28))
        labels = rng.integers(0, 10, (n_labels if split == "train" and n_labels else n,))
        (raw / f"{split}-images-idx3-ubyte").write_bytes(_idx_bytes(images))
        (raw / f"{split}-labels-idx1-ubyte").write_bytes(_idx_bytes(labels))
    return raw


def test_mnist_read_from_torchvision_layout(tmp_path: Path) -> None:
    _fake_mnist(tmp_path)
    b = build_data("mnist", root=tmp_path)
    assert len(b.train.x) == 12 and len(b.eval.x) == 6
    check_bundle(b, (1, 28, 28), 10)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "label_count", "label_value"])
@pytest.mark.parametrize("download", [False, True])
def test_a_damaged_mnist_download_is_named_corrupt(
    tmp_path: Path, damage: str, download: bool
) -> None:
    """A half-written or damaged copy is neither 'not found' nor a failed download, nor a
    traceback (torchvision raises a bare AssertionError for some files): one line saying so."""
    raw = _fake_mnist(tmp_path, n_labels=7 if damage == "label_count" else None)
    images, labels = raw / "train-images-idx3-ubyte", raw / "train-labels-idx1-ubyte"
    if damage == "truncated":
        images.write_bytes(images.read_bytes()[:5000])
    elif damage == "garbage":
        labels.write_bytes(b"hello\n")
    elif damage == "label_value":  # a flipped byte: a class the model would have no output for
        labels.write_bytes(labels.read_bytes()[:-1] + bytes([12]))
    with pytest.raises(DataError) as info:
        build_data("mnist", root=tmp_path, download=download)
    msg = str(info.value)
    assert "\n" not in msg
    assert f"MNIST under {tmp_path / 'MNIST'} is truncated or corrupt" in msg
    assert "data.download=true" in msg


@pytest.mark.parametrize(("train_size", "eval_size", "split_seed"), [(20, 10, 0), (57, 33, 5)])
def test_train_and_eval_subsets_keep_every_class_and_stay_disjoint(
    train_size: int, eval_size: int, split_seed: int
) -> None:
    """A small subset holds each class in its share of the split (within one sample), so none
    is missing from training or from the accuracy; it stays seeded and disjoint."""
    full = build_data("digits", split_seed=split_seed)
    b = build_data("digits", split_seed=split_seed, train_size=train_size, eval_size=eval_size)
    for sub, whole, n in ((b.train, full.train, train_size), (b.eval, full.eval, eval_size)):
        assert len(sub.y) == n
        share = torch.bincount(whole.y, minlength=10).double() * n / len(whole.y)
        counts = torch.bincount(sub.y, minlength=10).double()
        assert bool(((counts - share).abs() < 1.0).all()), (counts.tolist(), share.tolist())
    train_rows = {tuple(r.flatten().tolist()) for r in b.train.x}
    assert not any(tuple(r.flatten().tolist()) in train_rows for r in full.eval.x)
    again = build_data("digits", split_seed=split_seed, train_size=train_size, eval_size=eval_size)
    assert torch.equal(again.train.x, b.train.x) and torch.equal(again.eval.x, b.eval.x)
    assert b.mean == pytest.approx(channel_stats(b.train.x)[0])


# ------------------------------------------------------------------------------ reported defects
def test_idx_without_images_names_the_file(tmp_path: Path) -> None:
    """``int(y.max())`` of 0 labels ended in "RuntimeError: max(): Expected reduction dim"."""
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(_idx_bytes(np.zeros((0, 28, 28))))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros((0,))))
    images = tmp_path / "t10k-images-idx3-ubyte"
    with pytest.raises(DataError, match=rf"^{re.escape(str(images))} holds no images"):
        build_data("idx", root=tmp_path)


def test_idx_root_with_tilde(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As ``data=idx 'data.root="~/mnist"'``: the torchvision sets expanded ``~``, IDX did not."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "mnist").mkdir()
    images = np.random.default_rng(0).integers(0, 256, (20, 28, 28))
    (tmp_path / "mnist" / "t10k-images-idx3-ubyte").write_bytes(_idx_bytes(images))
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(np.arange(20) % 2))
    b = build_data("idx", root="~/mnist")
    assert b.train.num_samples + b.eval.num_samples == 20 and b.num_classes == 2
    b = build_data(
        "idx", images="~/mnist/t10k-images-idx3-ubyte.gz", labels="~/mnist/t10k-labels-idx1-ubyte"
    )
    assert b.train.num_samples + b.eval.num_samples == 20


@pytest.mark.parametrize("holdout", ["0.2", None, True])
def test_holdout_of_the_wrong_type_is_one_line(holdout: object) -> None:
    """A string holdout failed inside the split with "'<' not supported between ..."."""
    with pytest.raises(TypeError, match=r"^holdout must be a number in \(0, 1\)") as info:
        build_data("digits", holdout=holdout)  # type: ignore[arg-type]
    assert repr(holdout) in str(info.value) and "\n" not in str(info.value)


CIFAR_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]


@pytest.mark.parametrize("damage", ["garbage", "missing_file"])
@pytest.mark.parametrize("download", [False, True])
def test_a_damaged_cifar10_copy_is_named_corrupt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str, download: bool
) -> None:
    """torchvision says "not found or corrupted" for both: a folder of damaged files was
    reported as not found (or, with download=true, fetched over). It names the folder to delete."""
    import torchvision.datasets as tvd

    monkeypatch.setattr(tvd.CIFAR10, "url", "http://127.0.0.1:1/cifar-10-python.tar.gz")
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in CIFAR_FILES:
        (folder / name).write_bytes(rng.bytes(1000))
    if damage == "missing_file":
        (folder / "data_batch_3").unlink()
    with pytest.raises(DataError) as info:
        build_data("cifar10", root=tmp_path, download=download)
    msg = str(info.value)
    assert "\n" not in msg and "not found" not in msg
    assert msg.startswith(f"CIFAR10 under {folder} is truncated or corrupt (")
    assert f"delete {folder} and fetch it again with data.download=true" in msg
    assert ("data_batch_3" if damage == "missing_file" else "data_batch_1") in msg


def test_an_empty_cifar10_folder_is_still_not_found(tmp_path: Path) -> None:
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(DataError, match=r"^CIFAR10 not found under .*data\.download=true"):
        build_data("cifar10", root=tmp_path, download=False)


def test_a_synthetic_set_larger_than_the_machine_is_refused_before_drawing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """1e9 images first drew 8 GB of labels (40 s here) and then failed in the allocator; a set
    whose images alone exceed the machine's memory is now refused before anything is drawn."""
    import robustai.data.registry as registry

    def drawn(*args: object) -> None:
        raise AssertionError("drew the data set before refusing it")

    monkeypatch.setattr(registry, "make_synthetic", drawn)
    monkeypatch.setattr(registry, "_physical_memory", lambda: 2**30)  # a 1 GiB machine
    with pytest.raises(DataError, match=r"need 1\.19 GiB, more than this machine can allocate"):
        build_data("synthetic", num_samples=5_000_000)


def test_classes_with_a_single_image_are_named_in_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """50 images of 100 classes: every single-image class went to eval, 5 train / 45 eval,
    without a word; the model never saw most classes it was evaluated on."""
    import logging

    with caplog.at_level(logging.WARNING, logger="robustai.data.registry"):
        b = build_data("synthetic", num_samples=50, num_classes=100)
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    counts = torch.bincount(torch.cat([b.train.y, b.eval.y]))
    alone, present = int((counts == 1).sum()), int((counts > 0).sum())
    assert alone > 30
    assert line.startswith(f"{alone} of {present} classes have a single image")
    assert f"({len(b.train.x)} train / {len(b.eval.x)} eval images)" in line
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="robustai.data.registry"):
        build_data("digits")
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_a_label_beyond_the_others_is_named_in_a_warning(
    mnist_idx_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One damaged byte in the real MNIST labels (7 -> 200) made a 201-class model without a
    word: classes 10 .. 199 have no image."""
    import gzip
    import logging

    raw = bytearray(gzip.decompress((mnist_idx_dir / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    assert raw[8] == 7  # the first label, after the 8-byte header
    raw[8] = 200
    labels = tmp_path / "labels-idx1-ubyte"
    labels.write_bytes(bytes(raw))
    images = mnist_idx_dir / "t10k-images-idx3-ubyte.gz"
    with caplog.at_level(logging.WARNING, logger="robustai.data.registry"):
        b = build_data("idx", images=images, labels=labels)
    assert b.num_classes == 201
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"{labels}: labels run 0 .. 200 but 190 of those classes have no image" in warnings[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="robustai.data.registry"):
        intact = build_data("idx", root=mnist_idx_dir)
    assert intact.num_classes == 10
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_a_subset_size_beyond_the_split_is_named_in_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """data.train_size=5000 on digits trained on its 1438 training images without a word."""
    import logging

    with caplog.at_level(logging.WARNING, logger="robustai.data.registry"):
        b = build_data("digits", train_size=5000, eval_size=10_000)
    n_tr, n_ev = len(b.train.x), len(b.eval.x)
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"train_size=5000 but the training split holds {n_tr} images; using all {n_tr}",
        f"eval_size=10000 but the eval split holds {n_ev} images; using all {n_ev}",
    ]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="robustai.data.registry"):
        build_data("digits", train_size=n_tr, eval_size=100)  # all of them, or fewer: no warning
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
