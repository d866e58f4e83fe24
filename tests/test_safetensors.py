"""safetensors: files from the safetensors writer, and headers no writer would make."""

import json
import struct

import numpy as np
import pytest
from safetensors.numpy import save_file

import filtergrid
from filtergrid import limits
from filtergrid.errors import CorruptFileError, LimitError

rng = np.random.default_rng(2)


def test_first_weight_in_natural_order_skipping_biases_and_norms(tmp_path):
    tensors = {
        "layers.10.weight": rng.standard_normal((4, 4, 3, 3)).astype(np.float32),
        "layers.2.weight": rng.standard_normal((8, 3, 5, 5)).astype(np.float32),
        "layers.0.bias": np.zeros(8, np.float32),
        "bn1.running_mean": np.zeros(8, np.float32),
        "norm.weight": np.ones((8, 8), np.float32),
    }
    save_file(tensors, tmp_path / "m.safetensors")
    bank = filtergrid.load(tmp_path / "m.safetensors")
    assert bank.provenance.tensor == "layers.2.weight" and bank.provenance.layout == "OIHW"
    np.testing.assert_array_equal(bank.array, np.transpose(tensors["layers.2.weight"], (0, 2, 3, 1)))


@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.int8, np.uint8, np.int32])
def test_dtypes_decode_to_float32(tmp_path, dtype):
    w = (rng.standard_normal((6, 1, 3, 3)) * 20).astype(dtype)
    save_file({"conv.weight": w}, tmp_path / "m.safetensors")
    np.testing.assert_array_equal(filtergrid.load(tmp_path / "m.safetensors").array,
                                  np.transpose(w, (0, 2, 3, 1)).astype(np.float32))


def _write(path, header: dict, data: bytes = b"", raw_header: bytes | None = None):
    blob = raw_header if raw_header is not None else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)


@pytest.mark.parametrize("header,data,match", [
    ({"w": {"dtype": "F32", "shape": [1 << 20, 1 << 20], "data_offsets": [0, 16]}}, b"\0" * 16, "MAX_TENSOR_BYTES|spans|declares"),
    ({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 1 << 40]}}, b"\0" * 16, "spans"),
    ({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}}, b"\0" * 16, "declares"),
    ({"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
      "b": {"dtype": "F32", "shape": [2, 2], "data_offsets": [8, 24]}}, b"\0" * 24, "overlap"),
    ({"w": {"dtype": "X9", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, "dtype"),
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0]}}, b"\0" * 8, "data_offsets"),
    ({"w": {"dtype": "F32", "shape": [-2, 2], "data_offsets": [0, 8]}}, b"\0" * 8, "shape"),
])
def test_hostile_headers_are_refused(tmp_path, header, data, match):
    _write(tmp_path / "h.safetensors", header, data)
    with pytest.raises(filtergrid.FiltergridError, match=match):
        filtergrid.load(tmp_path / "h.safetensors")


def test_header_length_bombs_and_bad_json(tmp_path, monkeypatch):
    (tmp_path / "a.safetensors").write_bytes(struct.pack("<Q", 1 << 60) + b"{}")
    with pytest.raises(CorruptFileError):
        filtergrid.load(tmp_path / "a.safetensors")
    _write(tmp_path / "b.safetensors", {}, raw_header=b"{not json")
    with pytest.raises(CorruptFileError, match="JSON"):
        filtergrid.load(tmp_path / "b.safetensors")
    save_file({"w": np.ones((4, 4), np.float32)}, tmp_path / "c.safetensors")
    monkeypatch.setattr(limits, "MAX_HEADER_BYTES", 10)
    with pytest.raises(LimitError, match="MAX_HEADER_BYTES"):
        filtergrid.load(tmp_path / "c.safetensors")


def test_tensor_limit_is_checked_before_reading(tmp_path, monkeypatch):
    save_file({"w": np.ones((64, 64), np.float32)}, tmp_path / "m.safetensors")
    monkeypatch.setattr(limits, "MAX_TENSOR_BYTES", 1024)
    with pytest.raises(LimitError):
        filtergrid.load(tmp_path / "m.safetensors")


def test_embedding_heatmap_reads_only_the_rows_it_shows(tmp_path, monkeypatch):
    emb = rng.standard_normal((1000, 32)).astype(np.float32)
    save_file({"model.embed_tokens.weight": emb}, tmp_path / "lm.safetensors")
    monkeypatch.setattr(limits, "MAX_HEATMAP_ROWS", 16)
    bank = filtergrid.load(tmp_path / "lm.safetensors")
    assert bank.kind == "matrix" and bank.array.shape == (1, 16, 32, 1)
    np.testing.assert_array_equal(bank.array[0, :, :, 0], emb[:16])


def test_rows_reads_only_the_first_rows_of_a_narrow_tensor(tmp_path):
    """rows= cuts axis 0 whatever the other axes are (10 rows of 3: 5 < 10 but not < 3)."""
    w = rng.standard_normal((10, 3)).astype(np.float32)
    save_file({"w": w}, tmp_path / "m.safetensors")
    with filtergrid.open_model(tmp_path / "m.safetensors") as (_, reader):
        np.testing.assert_array_equal(reader.read("w", rows=5), w[:5])
        np.testing.assert_array_equal(reader.read("w", rows=10), w)
