"""TF.js converter: layer order from modelTopology, quantized weights, shards kept inside the folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES

import filtergrid
from filtergrid.errors import CorruptFileError, TensorNotFoundError, UnsafeFileError

TFJS = FIXTURES / "tfjs"


def test_order_comes_from_the_topology_not_the_manifest() -> None:
    model = json.loads((TFJS / "conv_float32" / "model.json").read_text())
    manifest_order = [w["name"] for g in model["weightsManifest"] for w in g["weights"]]
    assert manifest_order.index("a_head/kernel") < manifest_order.index("stem/kernel")
    first = next(i for i in filtergrid.tensors(TFJS / "conv_float32") if i.candidate)
    assert first.name == "stem/kernel" and "modelTopology" in first.role


def test_uint8_is_dequantized_with_scale_and_min() -> None:
    folder = TFJS / "conv_uint8"
    weight = next(w for g in json.loads((folder / "model.json").read_text())["weightsManifest"]
                  for w in g["weights"] if w["name"] == "stem/kernel")
    assert weight["quantization"]["dtype"] == "uint8" and weight["quantization"]["min"] < 0
    with filtergrid.open_model(folder) as (_, reader):
        values = reader.read("stem/kernel")
    assert values.dtype == np.float32 and values.min() < 0 < values.max()
    np.testing.assert_allclose(values.min(), weight["quantization"]["min"], atol=weight["quantization"]["scale"])


@pytest.mark.parametrize("group, name", [("conv_uint8", "stem/kernel"), ("conv_uint16", "stem/kernel"),
                                         ("depthwise_float16", "stem/depthwise_kernel"),
                                         ("conv_float32", "stem/kernel")])
def test_every_weight_is_read_in_the_dtype_its_listing_names(group: str, name: str) -> None:
    """Quantized (uint8/uint16: q * scale + min) and float16-stored weights come back as the float32
    the model declares, equal to tensorflowjs's own ``read_weights``."""
    info = next(i for i in filtergrid.tensors(TFJS / group) if i.name == name)
    with filtergrid.open_model(TFJS / group) as (_, reader):
        values = reader.read(name)
    assert info.dtype == "float32" and values.dtype == np.float32
    np.testing.assert_array_equal(values, np.load(TFJS / f"{group}.expected.npz")["stored"])


def test_a_zero_scale_gives_every_value_the_minimum(tmp_path: Path) -> None:
    """tensorflowjs writes scale 1.0 for a constant weight, but q * 0 + min is still min, not 0."""
    folder = tmp_path / "model"
    shutil.copytree(TFJS / "conv_uint8", folder)
    model = json.loads((folder / "model.json").read_text())
    weight = next(w for g in model["weightsManifest"] for w in g["weights"] if w["name"] == "stem/kernel")
    weight["quantization"]["scale"] = 0.0
    (folder / "model.json").write_text(json.dumps(model))
    with filtergrid.open_model(folder) as (_, reader):
        values = reader.read("stem/kernel")
    assert np.all(values == np.float32(weight["quantization"]["min"]))


def test_model_json_or_its_folder(tmp_path: Path) -> None:
    assert filtergrid.load(TFJS / "conv_float32" / "model.json").provenance.tensor == "stem/kernel"
    assert filtergrid.load(TFJS / "conv_float32").provenance.format == "tfjs"


def test_unknown_name_is_tensor_not_found() -> None:
    with filtergrid.open_model(TFJS / "conv_float32") as (_, reader), pytest.raises(TensorNotFoundError):
        reader.read("nope")


def _edited(tmp_path: Path, edit) -> Path:
    folder = tmp_path / "m"
    shutil.copytree(TFJS / "conv_float32", folder)
    model = json.loads((folder / "model.json").read_text())
    edit(model)
    (folder / "model.json").write_text(json.dumps(model))
    return folder


def test_shard_outside_the_folder_is_refused(tmp_path: Path) -> None:
    def escape(model):
        model["weightsManifest"][0]["paths"] = ["../../etc/passwd"]

    with pytest.raises(UnsafeFileError):
        filtergrid.load(_edited(tmp_path, escape))


def test_weights_larger_than_the_shards_are_refused(tmp_path: Path) -> None:
    def grow(model):
        model["weightsManifest"][0]["weights"][0]["shape"] = [100000, 2]

    with pytest.raises(CorruptFileError, match="spans bytes"):
        filtergrid.load(_edited(tmp_path, grow))


def test_missing_shard_is_refused(tmp_path: Path) -> None:
    folder = _edited(tmp_path, lambda model: None)
    for shard in folder.glob("*.bin"):
        shard.unlink()
    with pytest.raises(CorruptFileError):
        filtergrid.load(folder)


def test_deeply_nested_json_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    path.write_text('{"modelTopology": ' + "[" * 100_000 + "]" * 100_000 + ', "weightsManifest": []}')
    with pytest.raises(CorruptFileError):
        filtergrid.load(path)
