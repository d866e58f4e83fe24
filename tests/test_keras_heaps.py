"""The HDF5 global heap pre-check (hdf5_heaps.HeapGuard): it reads only the headers and heaps of the
objects opened (issue 9: it used to read every byte of the file), and still refuses the libhdf5 heap
loop, falling back to a whole-file scan for headers it does not parse. Then what keras_h5 checks of
a dataset before h5py reads it (``checked_dataset``), and ``read``'s rows."""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import FIXTURES, group_entries
from filtergrid.converters import hdf5_heaps, keras_h5, keras_zip
from filtergrid.errors import CorruptFileError, TensorNotFoundError, UnreadableFeatureError, UnsafeFileError

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


@pytest.mark.parametrize("entry", [e for e in group_entries("keras") if e["format"] == "keras-h5"],
                         ids=lambda e: e["file"])
def test_rows_reads_only_the_leading_rows(entry):
    reader = keras_h5.open(FIXTURES / entry["file"])
    try:
        np.testing.assert_array_equal(reader.read(entry["first"], rows=2),
                                      np.load(FIXTURES / entry["expected"])["stored"][:2])
    finally:
        reader.close()


def _read_kernel(tmp_path: Path, make_kernel, rows: int | None = None) -> np.ndarray:
    """``kernel:0`` of a Keras 2 layout file whose one kernel ``make_kernel(group)`` writes with h5py."""
    reader = keras_h5.open(hostile_corpus._keras2_h5(tmp_path / "kernel.h5", make_kernel))
    try:
        return reader.read("kernel:0", rows=rows)
    finally:
        reader.close()


@pytest.mark.parametrize("rows", [None, 1])
def test_a_scalar_weight_reads_whole_whatever_the_rows(tmp_path, rows):
    assert _read_kernel(tmp_path, lambda g: g.create_dataset("kernel:0", data=np.float32(0.5)), rows) == 0.5


def test_a_compressed_kernel_in_one_chunk_of_the_slack_size_reads(tmp_path):
    """1 MiB of float32 in one gzip chunk of exactly MAX_CHUNK_SLACK, stored in a few KB: the
    stored bytes may expand by deflate's most, and a chunk as big as the slack is allowed."""
    kernel = np.arange(256 * 1024, dtype="<f4").reshape(256, 1024) % 7
    assert kernel.nbytes == keras_h5.MAX_CHUNK_SLACK
    got = _read_kernel(tmp_path, lambda g: g.create_dataset("kernel:0", data=kernel, chunks=kernel.shape,
                                                            compression="gzip"))
    np.testing.assert_array_equal(got, kernel)


def _half_written(group) -> None:
    """Two chunked rows of which only the first was written: HDF5 would make the second up."""
    group.create_dataset("kernel:0", shape=(2, 100), chunks=(1, 100), dtype="<f4")[0] = 1


def _in_a_big_chunk(group) -> None:
    """A 144-byte kernel in a gzip chunk of 1,179,648 bytes (over MAX_CHUNK_SLACK), stored small."""
    group.create_dataset("kernel:0", data=np.ones((3, 3, 1, 4), "<f4"), maxshape=(None,) * 4,
                         chunks=(3, 3, 1, 32768), compression="gzip")


def _strings(group) -> None:
    group.create_dataset("kernel:0", data=np.array([b"ab", b"cd"]))


@pytest.mark.parametrize("make_kernel, error, words", [
    (_half_written, CorruptFileError, "dataset 'kernel:0' declares [2, 100] float32 = 800 bytes "
                                      "but the file stores 400"),
    (_in_a_big_chunk, CorruptFileError, "dataset 'kernel:0' (144 bytes) is stored in chunks of 1,179,648 bytes, "
                                        "which libhdf5 would allocate"),
    (_strings, UnreadableFeatureError, "dataset 'kernel:0' has non-numeric type |S2"),
    (lambda g: g.__setitem__("kernel:0", np.dtype("<f4")), CorruptFileError, "weight 'kernel:0' names no dataset"),
], ids=["half-written", "big-chunk", "strings", "committed-datatype"])
def test_a_kernel_stored_so_that_reading_it_would_make_data_up_is_refused(tmp_path, make_kernel, error, words):
    with pytest.raises(error) as caught:
        _read_kernel(tmp_path, make_kernel)
    assert words in str(caught.value)


@pytest.mark.parametrize("make, words", [
    (hostile_corpus._h5_external_storage, "secret.bin'); filtergrid reads nothing outside the model file"),
    (hostile_corpus._h5_virtual, "dataset 'kernel:0' is a virtual dataset mapping other files"),
], ids=["external-storage", "virtual"])
def test_a_kernel_kept_in_other_files_is_refused_naming_them(tmp_path, make, words):
    reader = keras_h5.open(make(tmp_path))
    try:
        with pytest.raises(UnsafeFileError) as caught:
            reader.read("kernel:0")
    finally:
        reader.close()
    assert words in str(caught.value) and str(caught.value).startswith("dataset 'kernel:0'")
