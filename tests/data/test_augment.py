"""data.augment=crop_flip: each training image gets its own random crop (of the image padded by
4 zero pixels) and flip; evaluation images are left alone."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from robustai.data import build_data
from robustai.data.augment import crop_flip
from robustai.errors import DataError


def _source_of(out: torch.Tensor, image: torch.Tensor, p: int = 4) -> tuple[int, int, bool]:
    """The (dy, dx, flipped) that turns ``image`` into ``out``; fails if there is none."""
    padded = F.pad(image, (p, p, p, p))
    h, w = image.shape[-2:]
    for flipped in (False, True):
        src = padded.flip(-1) if flipped else padded
        for dy in range(2 * p + 1):
            for dx in range(2 * p + 1):
                if torch.equal(src[..., dy : dy + h, dx : dx + w], out):
                    return dy, dx, flipped
    raise AssertionError("not a crop of the padded image, flipped or not")


def test_each_image_is_a_crop_of_itself_padded_with_its_own_draw() -> None:
    torch.manual_seed(0)
    x = torch.rand(64, 3, 12, 10)  # distinct pixels: a crop identifies its offset
    out = crop_flip(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    draws = {_source_of(out[i], x[i]) for i in range(len(x))}
    assert len(draws) > 20  # per image, not one draw for the batch
    assert {f for _, _, f in draws} == {False, True}


def test_repeatable_under_a_seed_and_keeps_the_memory_format() -> None:
    x = torch.rand(8, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    torch.manual_seed(3)
    a = crop_flip(x)
    torch.manual_seed(3)
    b = crop_flip(x)
    assert torch.equal(a, b)
    assert a.is_contiguous(memory_format=torch.channels_last)
    assert crop_flip(x[:0]).shape == (0, 3, 16, 16)  # an empty Poisson batch


def test_only_the_training_batches_are_augmented() -> None:
    plain = build_data("synthetic", num_samples=64, input_shape=(1, 8, 8), holdout=0.25)
    aug = build_data(
        "synthetic", num_samples=64, input_shape=(1, 8, 8), holdout=0.25, augment="crop_flip"
    )
    torch.manual_seed(0)
    (xa, ya), (xp, yp) = next(iter(aug.train)), next(iter(plain.train))
    assert torch.equal(ya, yp) and not torch.equal(xa, xp)  # same batch, transformed
    for i in range(len(xa)):
        _source_of(xa[i], xp[i])
    assert all(
        torch.equal(a[0], p[0]) for a, p in zip(aug.eval, plain.eval, strict=True)
    )


def test_unknown_augmentation_lists_the_valid_ones() -> None:
    with pytest.raises(DataError, match=r"unknown augmentation 'flip'; valid: none, crop_flip"):
        build_data("digits", augment="flip")
