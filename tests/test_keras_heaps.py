"""The HDF5 global heap pre-check (hdf5_heaps.HeapGuard): it reads only the headers and heaps of the
objects opened (issue 9: it used to read every byte of the file), and still refuses the libhdf5 heap
loop, falling back to a whole-file scan for headers it does not parse."""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import FIXTURES, group_entries
from filtergrid.converters import hdf5_heaps, keras_h5, keras_zip
from filtergrid.errors import CorruptFileError, TensorNotFoundError

sys.path.insert(0, str(Path(__file__).parent))
import hostile_corpus  # noqa: E402


def _open(path: Path):
    return (keras_zip if path.suffix == ".keras" else keras_h5).open(path)


@pytest.fixture
def no_scan(monkeypatch):
    """Fail if the whole-file scan runs: the headers alone must have been enough."""
    def scan(read_at, size):
        raise AssertionError("scanned the whole file")
    monkeypatch.setattr(hdf5_heaps, "check_global_heaps", scan)


@pytest.fixture
def bytes_read(monkeypatch) -> list[int]:
    """Bytes the heap guard reads, summed over every file opened."""
    total = [0]
    real = hdf5_heaps.reader

    def counting(f):
        read_at, size = real(f)

        def counted(offset: int, n: int) -> bytes:
            data = read_at(offset, n)
            total[0] += len(data)
            return data
        return counted, size
    monkeypatch.setattr(hdf5_heaps, "reader", counting)
    return total


@pytest.mark.parametrize("entry", [e for e in group_entries("keras")], ids=lambda e: e["file"])
def test_fixtures_are_checked_from_their_headers(entry, no_scan):
    reader = _open(FIXTURES / entry["file"])
    try:
        assert reader.read(entry["first"]).shape == np.load(FIXTURES / entry["expected"])["stored"].shape
    finally:
        reader.close()


def test_a_big_file_is_not_read_through(tmp_path, bytes_read):
    """64 MB of weights: the guard reads a few KB of headers and heaps, not the file."""
    path = tmp_path / "big.h5"
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([b"conv", b"dense"])
        f.attrs["model_config"] = '{"class_name": "Sequential", "config": {"layers": []}}'
        f.create_group("conv").attrs["weight_names"] = np.array([b"kernel"])
        f["conv/kernel"] = np.ones((3, 3, 3, 4), "f4")
        f.create_group("dense").attrs["weight_names"] = np.array([b"kernel"])
        f["dense/kernel"] = np.zeros((4096, 4096), "f4")
    reader = keras_h5.open(path)
    reader.read("kernel", rows=1)
    reader.close()
    assert 0 < bytes_read[0] < 64 << 10, bytes_read[0]


def test_heap_loop_is_refused_from_the_attribute_that_points_at_it(tmp_path, no_scan):
    with pytest.raises(CorruptFileError, match="free-space object"):
        keras_h5.open(hostile_corpus._h5_global_heap_loop(tmp_path))


def test_dense_attributes_fall_back_to_the_whole_file_scan(tmp_path, monkeypatch):
    """Twenty attributes in a new-style header live in a fractal heap, which the guard does not parse."""
    path = tmp_path / "dense.h5"
    with h5py.File(path, "w", libver="latest") as f:
        for i in range(20):
            f.attrs[f"note{i}"] = f"text {i}"
        f.attrs["model_config"] = '{"class_name": "Sequential", "config": {"layers": []}}'
    data = bytearray(path.read_bytes())
    heap = data.find(b"GCOL")
    data[heap + 16:heap + 32] = bytes(16)  # the first object becomes an empty free space
    path.write_bytes(bytes(data))
    scans = []
    real = hdf5_heaps.check_global_heaps
    monkeypatch.setattr(hdf5_heaps, "check_global_heaps", lambda *a: scans.append(1) or real(*a))
    with pytest.raises(CorruptFileError, match="free-space object"):
        keras_h5.open(path)
    assert scans


def test_unknown_tensor_name_raises_tensor_not_found():
    reader = keras_h5.open(FIXTURES / "keras" / "mlp.h5")
    try:
        with pytest.raises(TensorNotFoundError):
            reader.read("no/such/kernel")
    finally:
        reader.close()
