"""Issue 12's odd-but-small files that no format module's own hostile tests cover: lying .npy
headers, Python 2 .npy files, huge numbers in a safetensors header, over-long and many shards."""

from __future__ import annotations

import json
import struct
import time
import zipfile

import numpy as np
from safetensors.numpy import save_file

from conftest import assert_one_line_error, run_cli


def _npy(header: str, version: bytes = b"\x01\x00") -> bytes:
    header = header + " " * (64 - (10 + len(header) + 1) % 64) + "\n"
    return b"\x93NUMPY" + version + struct.pack("<H", len(header)) + header.encode()


def test_npy_headers_that_claim_gigabytes_are_one_line(tmp_path):
    (tmp_path / "a.npy").write_bytes(b"\x93NUMPY\x02\x00" + struct.pack("<I", 0xFFFFFFF0) + b"{}")
    with zipfile.ZipFile(tmp_path / "b.npz", "w") as z:
        z.writestr("W1.npy", b"\x93NUMPY\x02\x00" + struct.pack("<I", 1_500_000_000) + b"{'descr'")
    for name in ("a.npy", "b.npz"):
        start = time.monotonic()
        assert_one_line_error(run_cli("convert", tmp_path / name, "-o", tmp_path / "out.npy"), "header")
        assert time.monotonic() - start < 30


def test_a_python2_npy_reads_without_a_warning_line(tmp_path):
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (4L, 3L, 3L, 3L), }"
    data = np.arange(108, dtype=np.float32).reshape(4, 3, 3, 3)
    (tmp_path / "py2.npy").write_bytes(_npy(header) + data.tobytes())
    result = run_cli("convert", tmp_path / "py2.npy", "-o", tmp_path / "out.npy")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), data.transpose(0, 2, 3, 1))


def test_a_number_of_thousands_of_digits_in_a_safetensors_header_is_one_line(tmp_path):
    header = '{"w": {"dtype": "F32", "shape": [4, 3, 3, 3], "data_offsets": [0, ' + "9" * 5000 + "]}}"
    (tmp_path / "m.safetensors").write_bytes(struct.pack("<Q", len(header)) + header.encode() + bytes(432))
    result = run_cli("convert", tmp_path / "m.safetensors", "-o", tmp_path / "out.npy")
    assert_one_line_error(result, "thousands of digits")
    assert "set_int_max_str_digits" not in result.stderr


def _hf(folder, weight_map: dict) -> None:
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "vit", "num_channels": 3}))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))


def test_a_shard_name_longer_than_any_file_system_allows_is_one_line(tmp_path):
    _hf(tmp_path / "hf", {"conv.weight": "x" * 300 + ".safetensors"})
    result = run_cli("convert", tmp_path / "hf", "-o", tmp_path / "out.npy")
    assert_one_line_error(result, "longer than 255 bytes")
    assert len(result.stderr) < 400


def test_a_folder_of_1500_shards_reads_without_running_out_of_files(tmp_path):
    folder = tmp_path / "hf"
    weight_map = {f"layers.{i}.weight": f"model-{i:05d}.safetensors" for i in range(1500)}
    _hf(folder, weight_map)
    for i, (name, shard) in enumerate(weight_map.items()):
        save_file({name: np.full((4, 3, 3, 3) if i == 0 else (4, 4), i, np.float32)}, str(folder / shard))
    result = run_cli("convert", folder, "-o", tmp_path / "out.npy")
    assert result.returncode == 0, result.stderr
    assert "layers.0.weight" in result.stdout
