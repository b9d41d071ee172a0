"""The model registry: every registered model is Normalize -> network and takes [0, 1] inputs.

Tests iterate over MODELS, so a newly registered model is tested by being registered; give it an
entry in INPUT_SHAPES only if (1, 8, 8) does not suit it.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustai.models import MODELS, Normalize, build_model, model_names
from robustai.models.small_cnn import SmallCNN

INPUT_SHAPES: dict[str, tuple[int, int, int]] = {"preact_resnet18": (3, 32, 32)}
BATCH: dict[str, int] = {"preact_resnet18": 2}
NUM_CLASSES = 7


def shape_for(name: str) -> tuple[int, int, int]:
    return INPUT_SHAPES.get(name, (1, 8, 8))


def stats(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    mean = tuple(0.1 + 0.2 * c for c in range(channels))
    std = tuple(0.3 + 0.1 * c for c in range(channels))
    return mean, std


@pytest.mark.parametrize("name", model_names())
def test_build_every_model(name: str) -> None:
    torch.manual_seed(0)
    shape = shape_for(name)
    mean, std = stats(shape[0])
    model = build_model(name, shape, NUM_CLASSES, mean=mean, std=std)
    assert isinstance(model, nn.Sequential)
    first = model[0]
    assert isinstance(first, Normalize)
    assert first.mean.flatten().tolist() == pytest.approx(mean)
    assert first.std.flatten().tolist() == pytest.approx(std)
    # normalization is part of the state, so a saved model carries its statistics
    assert {"0.mean", "0.std"} <= set(model.state_dict())

    n = BATCH.get(name, 4)
    x = torch.rand((n, *shape), requires_grad=True)
    for train in (True, False):
        model.train(train)
        out = model(x)
        assert out.shape == (n, NUM_CLASSES)
        assert torch.isfinite(out).all()
    # attacks need a gradient w.r.t. the input
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("name", model_names())
def test_default_normalization_is_identity(name: str) -> None:
    shape = shape_for(name)
    model = build_model(name, shape, NUM_CLASSES)
    x = torch.rand((2, *shape))
    assert torch.equal(model[0](x), x)
    assert model[0].mean.flatten().tolist() == [0.0] * shape[0]
    assert model[0].std.flatten().tolist() == [1.0] * shape[0]


@pytest.mark.parametrize("name", model_names())
def test_wrong_normalization_length(name: str) -> None:
    shape = shape_for(name)
    mean, std = stats(shape[0] + 1)
    with pytest.raises(ValueError, match="channels"):
        build_model(name, shape, NUM_CLASSES, mean=mean, std=std)


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(ValueError) as info:
        build_model("resnet9000", (1, 8, 8), 10)
    msg = str(info.value)
    assert "resnet9000" in msg
    for name in MODELS:
        assert name in msg
    assert model_names() == list(MODELS)


# ------------------------------------------------------------------------------ Normalize
def test_normalize_math_is_exact() -> None:
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    layer = Normalize(mean, std)
    x = torch.rand((5, 3, 4, 6), generator=torch.Generator().manual_seed(0))
    out = layer(x)
    for c in range(3):
        m = torch.tensor(mean[c], dtype=torch.float32)
        s = torch.tensor(std[c], dtype=torch.float32)
        assert torch.equal(out[:, c], (x[:, c] - m) / s)
    # and it is invertible: the model sees standardized inputs, users give [0, 1] inputs
    back = out * layer.std + layer.mean
    torch.testing.assert_close(back, x)


def test_normalize_rejects_bad_statistics() -> None:
    with pytest.raises(ValueError, match="length"):
        Normalize((0.5, 0.5), (0.2,))
    with pytest.raises(ValueError, match="positive"):
        Normalize((0.5,), (0.0,))
    with pytest.raises(ValueError, match="positive"):
        Normalize((0.5,), (-1.0,))


# ------------------------------------------------------------------------------ small_cnn
def test_small_cnn_matches_wong_et_al() -> None:
    """Wong, Rice & Kolter (2020): conv 16 4x4/2 -> conv 32 4x4/2 -> fc 100 -> fc 10, on 1x28x28."""
    model = build_model("small_cnn", (1, 28, 28), 10)
    net = model[1]
    assert isinstance(net, SmallCNN)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    fcs = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(1, 16), (16, 32)]
    assert all(
        c.kernel_size == (4, 4) and c.stride == (2, 2) and c.padding == (1, 1) for c in convs
    )
    assert [(f.in_features, f.out_features) for f in fcs] == [(32 * 7 * 7, 100), (100, 10)]
    assert sum(isinstance(m, nn.ReLU) for m in net.modules()) == 3
    x = torch.rand((3, 1, 28, 28))
    assert net.features(x).shape == (3, 32 * 7 * 7)
    assert model(x).shape == (3, 10)


@pytest.mark.parametrize(
    ("hw", "flat"), [((8, 8), 32 * 2 * 2), ((32, 32), 32 * 8 * 8), ((6, 10), 32 * 1 * 2)]
)
def test_small_cnn_other_sizes(hw: tuple[int, int], flat: int) -> None:
    net = SmallCNN((3, *hw), 5)
    assert net.classifier[0].in_features == flat
    assert net(torch.rand((2, 3, *hw))).shape == (2, 5)


def test_small_cnn_rejects_tiny_inputs() -> None:
    with pytest.raises(ValueError, match="at least"):
        build_model("small_cnn", (1, 2, 2), 10)


@pytest.mark.parametrize(
    ("name", "shape", "bad"),
    [
        ("preact_resnet18", (3, 32, 32), (2, 1, 32, 32)),  # grayscale into a colour model
        ("small_cnn", (1, 28, 28), (2, 3, 28, 28)),
        ("small_cnn", (1, 28, 28), (2, 1, 32, 32)),
        ("mlp", (1, 28, 28), (2, 1, 32, 32)),
        ("mlp", (1, 28, 28), (2, 28, 28, 1)),  # channels last
        ("small_cnn", (1, 28, 28), (1, 28, 28)),  # one image without its batch dimension
        ("preact_resnet18", (3, 32, 32), (3, 32, 32)),
        ("mlp", (1, 28, 28), (3, 1, 1, 28, 28)),  # an extra dimension
    ],
)
def test_an_input_of_the_wrong_shape_is_refused_in_one_line(
    name: str, shape: tuple[int, int, int], bad: tuple[int, ...]
) -> None:
    """Not broadcast by Normalize into something the model was not trained on, nor a shape
    error from deep inside the network."""
    model = build_model(name, shape, 10).eval()
    with pytest.raises(ValueError) as info:
        model(torch.rand(bad))
    msg = str(info.value)
    assert "\n" not in msg and str(bad) in msg and str(shape[0]) in msg
    assert model(torch.rand(2, *shape)).shape == (2, 10)


@pytest.mark.parametrize(
    ("shape", "classes", "message"),
    [
        ((64,), 10, "input_shape must be"),  # a vector: an IndexError inside the MLP
        ((8, 8), 10, "input_shape must be"),
        ((1, 0, 8), 10, "input_shape must be"),
        ((1, 8, 8), 0, "num_classes must be"),  # built a model with no outputs
        ((1, 8, 8), -1, "num_classes must be"),
    ],
)
def test_shapes_that_are_no_image_or_classes_are_named(shape, classes, message: str) -> None:
    for name in ("mlp", "small_cnn"):
        with pytest.raises(ValueError, match=message):
            build_model(name, shape, classes)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        # a zero width built a model that predicts one class whatever the input
        ("small_cnn", {"hidden": 0}, r"^hidden=0: must be a whole number >= 1$"),
        ("preact_resnet18", {"width": 0}, r"^width=0: must be a whole number >= 1$"),
        ("mlp", {"hidden": [64, 0]}, r"^hidden\[1\]=0: must be a whole number >= 1$"),
        # torch's words before: "negative dimension", "must be tuple of ints", "not iterable"
        ("mlp", {"hidden": [-3]}, r"^hidden\[0\]=-3: must be"),
        ("small_cnn", {"hidden": 1.5}, r"^hidden=1.5: must be"),
        ("mlp", {"hidden": [True]}, r"^hidden\[0\]=True: must be"),
        ("mlp", {"hidden": 128}, r"^hidden=128: must be a list, e.g. hidden=\[128\]$"),
        ("small_cnn", {"depth": 3}, r"^depth: model=small_cnn has no such parameter"),
    ],
)
def test_layer_sizes_are_checked_in_one_line(name: str, params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_model(name, (1, 8, 8), 10, **params)


def test_layer_sizes_of_numpy_and_tuples_are_taken() -> None:
    import numpy as np
    from omegaconf import OmegaConf

    model = build_model("mlp", (1, 8, 8), 10, hidden=(np.int64(4), 5))
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 10)
    # a Hydra-composed cfg.model.params, an array, a range: sequences of sizes as before
    for hidden in (OmegaConf.create([6]), np.array([6]), range(6, 7)):
        assert build_model("mlp", (1, 8, 8), 10, hidden=hidden)[1].net[1].out_features == 6
    params = OmegaConf.create({"hidden": [6]})
    assert build_model("mlp", (1, 8, 8), 10, **params)[1].net[1].out_features == 6
    with pytest.raises(ValueError, match=r"^hidden=64: must be a list"):
        build_model("mlp", (1, 8, 8), 10, hidden="64")
    assert build_model("mlp", (1, 8, 8), 10, hidden=[])[1].net[1].in_features == 64
