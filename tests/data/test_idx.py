"""read_idx / load_idx_images: IDX files written here, plain and gzipped, good and broken."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robustai.data.idx import load_idx_images, read_idx
from robustai.errors import DataError

# IDX type codes and the big-endian numpy dtype each stores
CODES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def idx_bytes(arr: np.ndarray, code: int = 0x08) -> bytes:
    header = bytes([0, 0, code, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + np.ascontiguousarray(arr, dtype=CODES[code]).tobytes()


def write_idx(path: Path, arr: np.ndarray, code: int = 0x08) -> Path:
    raw = idx_bytes(arr, code)
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def sample_images(n: int = 12, h: int = 5, w: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, h, w), dtype=np.uint8)
    labels = rng.integers(0, 10, size=(n,), dtype=np.uint8)
    return images, labels


# ------------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip_images_and_labels(tmp_path: Path, suffix: str) -> None:
    images, labels = sample_images()
    xi = read_idx(write_idx(tmp_path / f"images-idx3-ubyte{suffix}", images))
    yi = read_idx(write_idx(tmp_path / f"labels-idx1-ubyte{suffix}", labels))
    assert xi.dtype == yi.dtype == torch.uint8
    assert tuple(xi.shape) == images.shape and tuple(yi.shape) == labels.shape
    assert np.array_equal(xi.numpy(), images) and np.array_equal(yi.numpy(), labels)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    code=st.sampled_from(sorted(CODES)),
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=4),
    gz=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_round_trip_every_dtype(
    tmp_path: Path, code: int, shape: list[int], gz: bool, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    big_endian = np.dtype(CODES[code])
    if big_endian.kind == "f":
        arr = rng.standard_normal(shape).astype(big_endian)
    else:
        info = np.iinfo(big_endian)
        arr = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(big_endian)
    path = write_idx(tmp_path / ("a.idx.gz" if gz else "a.idx"), arr, code)
    out = read_idx(path)
    assert tuple(out.shape) == tuple(shape)
    # compare values, not bytes: the reader converts big-endian data to native order
    assert np.array_equal(out.numpy(), arr.astype(big_endian.newbyteorder("=")))


# ------------------------------------------------------------------------------ broken files
@pytest.mark.parametrize("cut", [1, 100, 400])
def test_truncated_plain_file(tmp_path: Path, cut: int) -> None:
    images, _ = sample_images()
    raw = idx_bytes(images)
    path = tmp_path / "images.idx"
    path.write_bytes(raw[:-cut])
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)


def test_header_cut_short(tmp_path: Path) -> None:
    path = tmp_path / "images.idx"
    path.write_bytes(idx_bytes(sample_images()[0])[:9])  # magic plus part of the dimensions
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)


def test_trailing_bytes_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "images.idx"
    path.write_bytes(idx_bytes(sample_images()[0]) + b"\x00\x00")
    with pytest.raises(DataError, match="corrupt"):
        read_idx(path)


def test_truncated_gzip_file(tmp_path: Path) -> None:
    compressed = gzip.compress(idx_bytes(sample_images()[0]))
    path = tmp_path / "images.idx.gz"
    path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)


def test_corrupt_gzip_file_is_a_data_error(tmp_path: Path) -> None:
    """Damaged deflate data raises zlib.error, CRC damage OSError: both must be DataError."""
    rng = np.random.default_rng(1)
    images = rng.integers(0, 4, size=(50, 7, 5), dtype=np.uint8)  # compressible: real deflate
    compressed = gzip.compress(idx_bytes(images))
    path = tmp_path / "images.idx.gz"
    for pos in range(10, len(compressed) - 8, 7):  # after the gzip header, before the trailer
        damaged = bytearray(compressed)
        damaged[pos] ^= 0xFF
        path.write_bytes(bytes(damaged))
        with pytest.raises(DataError, match=re.escape(str(path))):
            read_idx(path)


@pytest.mark.parametrize(
    "head",
    [b"\x01\x00\x08\x01", b"\x00\x01\x08\x01", b"\x00\x00\x07\x01", b"\x00\x00", b""],
    ids=["byte0", "byte1", "unknown-type", "short", "empty"],
)
def test_bad_magic(tmp_path: Path, head: bytes) -> None:
    path = tmp_path / "bad.idx"
    path.write_bytes(head + (b"\x00\x00\x00\x02\x01\x02" if len(head) == 4 else b""))
    with pytest.raises(DataError, match="magic"):
        read_idx(path)


def test_compression_is_read_from_the_content_not_the_name(tmp_path: Path) -> None:
    """Downloads get renamed: a gzipped file without .gz (e.g. after a browser dropped the
    suffix) and a plain one with it (after gunzip -k and a copy) both read."""
    images = sample_images()[0]
    gzipped = tmp_path / "images-idx3-ubyte"
    gzipped.write_bytes(gzip.compress(idx_bytes(images)))
    plain = tmp_path / "images-idx3-ubyte.gz"
    plain.write_bytes(idx_bytes(images))
    assert np.array_equal(read_idx(gzipped).numpy(), images)
    assert np.array_equal(read_idx(plain).numpy(), images)


def test_either_name_of_mnist_files_is_found(tmp_path: Path) -> None:
    """The config names t10k-images-idx3-ubyte.gz; a folder of gunzipped files has the name
    without .gz (torchvision's MNIST/raw holds both kinds). Either is read for the other."""
    images = sample_images()[0]
    write_idx(tmp_path / "plain-idx3-ubyte", images)
    write_idx(tmp_path / "packed-idx3-ubyte.gz", images)
    assert np.array_equal(read_idx(tmp_path / "plain-idx3-ubyte.gz").numpy(), images)
    assert np.array_equal(read_idx(tmp_path / "packed-idx3-ubyte").numpy(), images)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope-idx3-ubyte.gz"
    with pytest.raises(DataError, match="not found") as info:
        read_idx(path)
    assert str(path) in str(info.value)
    with pytest.raises(DataError, match="not found"):
        read_idx(tmp_path)  # a folder is not an IDX file


def test_a_path_that_cannot_be_looked_at_is_one_line(tmp_path: Path) -> None:
    """Path.is_file() raises for a name too long or a folder this process may not enter (a
    traceback from the CLI); an unreadable file already said so in one line."""
    path = tmp_path / ("a" * 300) / "t10k-images-idx3-ubyte"
    with pytest.raises(DataError, match=r"cannot read IDX file .*: File name too long") as info:
        read_idx(path)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------ load_idx_images
def test_load_idx_images_grayscale(tmp_path: Path) -> None:
    images, labels = sample_images()
    x, y = load_idx_images(
        write_idx(tmp_path / "x.gz", images), write_idx(tmp_path / "y.gz", labels)
    )
    assert x.shape == (12, 1, 5, 7) and x.dtype == torch.float32
    assert y.shape == (12,) and y.dtype == torch.int64
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert torch.equal(x[:, 0], torch.from_numpy(images).float() / 255.0)
    assert torch.equal(y, torch.from_numpy(labels).long())


def test_load_idx_images_channels_last_becomes_channels_first(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, size=(6, 4, 5, 3), dtype=np.uint8)  # (N, H, W, C)
    labels = np.arange(6, dtype=np.uint8)
    x, y = load_idx_images(write_idx(tmp_path / "x", images), write_idx(tmp_path / "y", labels))
    assert x.shape == (6, 3, 4, 5) and x.is_contiguous()
    for c in range(3):
        assert torch.equal(x[:, c], torch.from_numpy(images[..., c]).float() / 255.0)
    assert y.tolist() == list(range(6))


def test_load_idx_images_channels_first_is_refused(tmp_path: Path) -> None:
    """(N, 1, 28, 28), PyTorch's layout, was read as 28 channels of 1x28 pixels: an MLP trained
    on it without a word."""
    images = np.zeros((6, 1, 8, 8), dtype=np.uint8)
    labels = np.arange(6, dtype=np.uint8)
    with pytest.raises(DataError, match=r"shape \(1, 8, 8\) look channels-first"):
        load_idx_images(write_idx(tmp_path / "x", images), write_idx(tmp_path / "y", labels))


def test_load_idx_images_count_mismatch(tmp_path: Path) -> None:
    images, labels = sample_images()
    with pytest.raises(DataError, match="12 images but"):
        load_idx_images(write_idx(tmp_path / "x", images), write_idx(tmp_path / "y", labels[:-1]))


def test_load_idx_images_wrong_rank(tmp_path: Path) -> None:
    images, labels = sample_images()
    with pytest.raises(DataError, match="dimensions"):
        load_idx_images(
            write_idx(tmp_path / "x", images.reshape(12, -1)), write_idx(tmp_path / "y", labels)
        )


@pytest.mark.parametrize(
    ("code", "values"),
    [(0x0D, (0.0, 255.0)), (0x0B, (0, 255)), (0x09, (-1, 1)), (0x0E, (0.0, float("nan")))],
)
def test_load_idx_images_outside_unit_range_is_a_data_error(
    tmp_path: Path, code: int, values: tuple[float, float]
) -> None:
    """Only bytes are scaled by 1/255: other types must hold [0, 1] already, or the run would
    train on (and attack) inputs outside the one unit every part relies on."""
    images, labels = sample_images()
    images = images.astype(np.float64)
    images[0, 0, :2] = values
    with pytest.raises(DataError, match=r"must be in \[0, 1\]"):
        load_idx_images(write_idx(tmp_path / "x", images, code), write_idx(tmp_path / "y", labels))


def test_load_idx_images_keeps_values_already_in_unit_range(tmp_path: Path) -> None:
    images, labels = sample_images()
    scaled = images.astype(np.float32) / 255.0
    x, _ = load_idx_images(
        write_idx(tmp_path / "x", scaled, 0x0D), write_idx(tmp_path / "y", labels)
    )
    assert torch.equal(x[:, 0], torch.from_numpy(scaled))


def _bad_labels(kind: str) -> tuple[np.ndarray, int]:
    _, labels = sample_images()
    if kind == "negative":
        out = labels.astype(np.int8)
        out[0] = -1
        return out, 0x09
    if kind == "fractional":
        out = labels.astype(np.float32)
        out[0] = 2.5
        return out, 0x0D
    if kind == "infinite":  # passed as a whole number, and became a negative int64 index
        out = labels.astype(np.float64)
        out[0] = np.inf
        return out, 0x0E
    return np.stack([labels, labels], axis=1), 0x08  # two labels per image


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("negative", "found -1"),
        ("fractional", "whole numbers"),
        ("infinite", "whole numbers"),
        ("two", "one label per image"),
    ],
)
def test_load_idx_images_bad_labels_are_a_data_error(
    tmp_path: Path, kind: str, message: str
) -> None:
    """Labels are class indices: a negative one crashed training in cross_entropy with a
    traceback, a fractional one was silently truncated, two per image broke the split."""
    images, _ = sample_images()
    labels, code = _bad_labels(kind)
    with pytest.raises(DataError, match=message):
        load_idx_images(write_idx(tmp_path / "x", images), write_idx(tmp_path / "y", labels, code))


def test_load_idx_images_labels_of_shape_n_by_1_are_flattened(tmp_path: Path) -> None:
    images, labels = sample_images()
    _, y = load_idx_images(
        write_idx(tmp_path / "x", images), write_idx(tmp_path / "y", labels.reshape(-1, 1))
    )
    assert y.shape == (12,) and torch.equal(y, torch.from_numpy(labels).long())


# ------------------------------------------------------------------------------ reported defects
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_load_idx_images_without_images_is_a_data_error(tmp_path: Path, suffix: str) -> None:
    """A header of 0 images reached build_data's ``y.max()`` and ended in a RuntimeError."""
    images = write_idx(tmp_path / f"x-idx3-ubyte{suffix}", np.zeros((0, 28, 28), np.uint8))
    labels = write_idx(tmp_path / f"y-idx1-ubyte{suffix}", np.zeros((0,), np.uint8))
    with pytest.raises(DataError, match=rf"^{re.escape(str(images))} holds no images") as info:
        load_idx_images(images, labels)
    assert "\n" not in str(info.value)


def _swap_to_plain(path: Path) -> Path:
    """Gunzip ``path`` (a .gz file) in place under the name without .gz, as ``gunzip`` does."""
    plain = path.with_suffix("")
    plain.write_bytes(gzip.decompress(path.read_bytes()))
    path.unlink()
    return plain


@pytest.mark.parametrize(
    ("damage", "which", "message"),
    [
        ("count", "labels", "has 11 labels"),
        ("range", "images", r"must be in \[0, 1\]"),
        ("negative", "labels", "found -1"),
        ("fractional", "labels", "whole numbers"),
        ("two", "labels", "one label per image"),
        ("rank", "images", "dimensions"),
    ],
)
def test_messages_name_the_file_actually_read(
    tmp_path: Path, damage: str, which: str, message: str
) -> None:
    """The .gz name is asked for, the plain file is read in its place: the message names the
    plain file, not the .gz one that does not exist."""
    images, labels = sample_images()
    image_code, label_code = 0x08, 0x08
    if damage == "count":
        labels = labels[:-1]
    elif damage == "range":
        images, image_code = images.astype(np.float32), 0x0D  # 0..255 in a float file
    elif damage == "rank":
        images = images.reshape(12, -1)
    else:
        labels, label_code = _bad_labels(damage)
    asked = {
        "images": write_idx(tmp_path / "x-idx3-ubyte.gz", images, image_code),
        "labels": write_idx(tmp_path / "y-idx1-ubyte.gz", labels, label_code),
    }
    read = _swap_to_plain(asked[which])
    with pytest.raises(DataError, match=message) as info:
        load_idx_images(asked["images"], asked["labels"])
    msg = str(info.value)
    assert str(read) in msg and str(asked[which]) not in msg, msg


def test_tilde_in_idx_paths_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``data.root="~/mnist"`` said "IDX file not found: ~/mnist/..." though the files exist."""
    monkeypatch.setenv("HOME", str(tmp_path))
    images, labels = sample_images()
    write_idx(tmp_path / "x-idx3-ubyte.gz", images)
    write_idx(tmp_path / "y-idx1-ubyte", labels)  # read for the .gz name asked below
    assert np.array_equal(read_idx("~/x-idx3-ubyte.gz").numpy(), images)
    x, y = load_idx_images("~/x-idx3-ubyte.gz", Path("~/y-idx1-ubyte.gz"))
    assert len(x) == 12 and torch.equal(y, torch.from_numpy(labels).long())


def test_a_label_file_of_one_value_is_a_data_error(tmp_path: Path) -> None:
    """A 0-dimensional label file was a TypeError (len() of a 0-d tensor) and exit 1."""
    images, _ = sample_images(n=1)
    labels = write_idx(tmp_path / "y", np.array(3, np.uint8))
    with pytest.raises(DataError, match="holds a single value, not one label per image"):
        load_idx_images(write_idx(tmp_path / "x", images), labels)


def test_images_without_pixels_are_a_data_error(tmp_path: Path) -> None:
    """Images of shape (20, 0, 28) reached min() over no values: a RuntimeError, exit 1."""
    images = write_idx(tmp_path / "x", np.zeros((20, 0, 28), np.uint8))
    labels = write_idx(tmp_path / "y", np.zeros((20,), np.uint8))
    with pytest.raises(DataError, match=r"images of shape \(0, 28\), with no pixels"):
        load_idx_images(images, labels)


def test_the_content_hash_is_the_same_gzipped_or_not(tmp_path: Path) -> None:
    """What meta.json records of the IDX files a run read: their content, whatever the form."""
    from robustai.data.idx import idx_sha256

    images, labels = sample_images()
    plain, packed = write_idx(tmp_path / "a", images), write_idx(tmp_path / "b.gz", images)
    assert idx_sha256(plain) == idx_sha256(packed) != idx_sha256(write_idx(tmp_path / "c", labels))
