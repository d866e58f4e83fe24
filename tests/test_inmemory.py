"""Weights in memory: torch tensors and modules, state dicts, and torchvision's make_grid names."""

from __future__ import annotations

import numpy as np
import pytest

import filtergrid
from filtergrid.errors import UsageError
from filtergrid.inmemory import bank_of, make_grid_options


def tiles(image, n: int, size: int, pad: int, cols: int) -> list[np.ndarray]:
    """The n tiles of an unscaled grid, as gray arrays."""
    a = np.asarray(image)[..., 0].astype(int)
    return [a[pad + (i // cols) * (size + pad):][:size, pad + (i % cols) * (size + pad):][:, :size]
            for i in range(n)]


def test_make_grid_names_keep_their_meaning():
    assert make_grid_options({"nrow": 8, "padding": 2, "pad_value": 1.0}) == {
        "cols": 8, "pad": 2, "background": "#ffffff"}
    assert make_grid_options({"normalize": True})["normalize"] == "global"
    assert make_grid_options({"normalize": True, "scale_each": True})["normalize"] == "per-filter"
    assert make_grid_options({"normalize": False, "value_range": (0, 1)}) == {"normalize": "none"}
    assert make_grid_options({"normalize": True, "value_range": [-1, 1]})["value_range"] == (-1, 1)


def test_normalize_true_scales_the_whole_grid_by_one_range():
    w = np.zeros((2, 1, 2, 2), np.float32)  # OIHW
    w[0] = [[0, 1], [2, 3]]
    w[1] = [[0, 4], [6, 8]]
    image = filtergrid.grid(w, nrow=2, padding=1, normalize=True, scale=1)
    first, second = tiles(image, 2, 2, 1, 2)
    np.testing.assert_array_equal(first, np.rint(np.array([[0, 1], [2, 3]]) / 8 * 255))
    np.testing.assert_array_equal(second, np.rint(np.array([[0, 4], [6, 8]]) / 8 * 255))
    each = tiles(filtergrid.grid(w, nrow=2, padding=1, normalize=True, scale_each=True, scale=1), 2, 2, 1, 2)
    assert each[0].max() == each[1].max() == 255


def test_a_dense_layer_in_oi_layout_unflattens_channels_first():
    """A torch Linear over 3x4x4 inputs: unit 0 sees channel 0 everywhere (CHW order)."""
    w = np.zeros((2, 48), np.float32)
    w[0, :16] = 1.0  # channel 0 of a CHW-flattened 3x4x4 image
    bank = bank_of(w, layout="OI", image_shape=(4, 4, 3))
    assert (bank.array[0, ..., 0] == 1).all() and (bank.array[0, ..., 1:] == 0).all()
    hwc = bank_of(w, layout="OI", flatten="HWC", image_shape=(4, 4, 3))
    assert not (hwc.array[0, ..., 0] == 1).all()  # the wrong order scrambles it: the default matters


def test_state_dicts_give_their_first_layer_like_files_do():
    rng = np.random.default_rng(0)
    state = {"features.0.weight": rng.normal(size=(8, 3, 3, 3)).astype(np.float32),
             "features.0.bias": np.zeros(8, np.float32),
             "classifier.weight": rng.normal(size=(10, 72)).astype(np.float32)}
    bank = bank_of(state)
    assert bank.provenance.tensor == "features.0.weight" and bank.shape == (8, 3, 3, 3)
    nested = {"params": {"Conv_0": {"kernel": rng.normal(size=(3, 3, 1, 4)).astype(np.float32)}}}
    assert bank_of(nested).provenance.tensor == "params.Conv_0.kernel"


def test_dir_lists_the_public_api():
    names = dir(filtergrid)
    assert {"load", "render", "grid", "convert", "FilterBank"} <= set(names)
    assert "TYPE_CHECKING" not in names and "typing" not in names


def test_object_arrays_are_refused():
    with pytest.raises(UsageError):
        filtergrid.grid(np.array([object(), object()], dtype=object))


# --- with torch (installed by .ci/run from the local CPU wheel; skipped where it is absent) -------

def test_a_torch_conv_weight_that_requires_grad_renders_as_torch_users_expect():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 5), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(16 * 28 * 28, 10))
    weight = model[0].weight
    assert weight.requires_grad
    image = filtergrid.grid(weight, nrow=8, normalize=True)
    expected = filtergrid.grid(weight.detach().numpy(), "OIHW", nrow=8, normalize=True)
    np.testing.assert_array_equal(np.asarray(image), np.asarray(expected))
    # a module and its state dict give their first layer; bf16 is widened
    np.testing.assert_array_equal(np.asarray(filtergrid.grid(model)), np.asarray(filtergrid.grid(weight)))
    bank = bank_of(model.to(torch.bfloat16))
    assert bank.provenance.tensor == "0.weight" and bank.provenance.original_dtype == "float32"
    np.testing.assert_allclose(bank.array, weight.detach().to(torch.bfloat16).float().numpy().transpose(0, 2, 3, 1))


def test_a_torch_linear_over_an_image_unflattens_chw():
    torch = pytest.importorskip("torch")
    linear = torch.nn.Linear(3 * 32 * 32, 4)
    with torch.no_grad():
        linear.weight.zero_()
        linear.weight[0].view(3, 32, 32)[2] = 1.0  # unit 0 looks at the blue channel only
    bank = bank_of(linear.weight, image_shape="32x32x3")
    assert (bank.array[0, ..., 2] == 1).all() and (bank.array[0, ..., :2] == 0).all()
