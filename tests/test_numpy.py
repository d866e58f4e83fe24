"""NumPy .npy/.npz: files written by NumPy itself, read back without pickle."""

import io
import struct
import zipfile

import numpy as np
import pytest

import filtergrid
from filtergrid.errors import UnreadableFeatureError, UnsafeFileError

rng = np.random.default_rng(1)


def test_cs231n_two_layer_net_picks_w1_and_makes_32x32x3_tiles(tmp_path):
    w1 = rng.standard_normal((3072, 100)).astype(np.float32)
    path = tmp_path / "net.npz"
    np.savez(path, b1=np.zeros(100), W2=rng.standard_normal((100, 10)), W1=w1, b2=np.zeros(10))
    bank = filtergrid.load(path)
    assert bank.provenance.tensor == "W1" and bank.provenance.layout == "IO"
    np.testing.assert_array_equal(bank.array, w1.T.reshape(100, 32, 32, 3))
    assert [t.name for t in filtergrid.tensors(path)] == ["W1", "W2", "b1", "b2"]


def test_natural_order_and_named_tensor(tmp_path):
    path = tmp_path / "m.npz"
    np.savez(path, W10=np.ones((4, 4)), W2=rng.standard_normal((64, 50)))
    assert filtergrid.load(path).provenance.tensor == "W2"
    assert filtergrid.load(path, "W10").provenance.tensor == "W10"
    with pytest.raises(filtergrid.TensorNotFoundError, match="W2, W10"):
        filtergrid.load(path, "W3")


@pytest.mark.parametrize("order", ["C", "F"])
def test_npy_conv_bank_any_memory_order(tmp_path, order):
    w = np.asarray(rng.standard_normal((8, 3, 5, 5)), order=order)
    np.save(tmp_path / "w.npy", w)
    bank = filtergrid.load(tmp_path / "w.npy")
    np.testing.assert_array_equal(bank.array, np.transpose(w, (0, 2, 3, 1)).astype(np.float32))


def test_wrong_suffix_still_detected_by_bytes(tmp_path):
    with open(tmp_path / "weights.bin", "wb") as f:  # np.savez would append .npz to a name
        np.savez(f, W1=np.ones((64, 3)))
    assert filtergrid.load(tmp_path / "weights.bin").provenance.format == "numpy"


def test_object_arrays_are_refused_without_unpickling(tmp_path):
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(UnsafeFileError, match="pickle"):
        filtergrid.load(tmp_path / "o.npy")


def test_header_declaring_128_gib_is_refused_before_allocating(tmp_path):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (1 << 17, 1 << 18)})
    (tmp_path / "big.npy").write_bytes(buf.getvalue() + b"\0" * 64)
    with pytest.raises(filtergrid.FiltergridError, match="bytes"):
        filtergrid.load(tmp_path / "big.npy")
    with zipfile.ZipFile(tmp_path / "big.npz", "w") as z:
        z.writestr("W1.npy", buf.getvalue() + b"\0" * 64)
    with pytest.raises(filtergrid.FiltergridError, match="bytes"):
        filtergrid.load(tmp_path / "big.npz")


def test_truncated_npz_member(tmp_path):
    np.savez(tmp_path / "m.npz", W1=np.ones((64, 10), np.float32))
    data = (tmp_path / "m.npz").read_bytes()
    for cut in (10, len(data) // 2, len(data) - 30):
        (tmp_path / "t.npz").write_bytes(data[:cut])
        with pytest.raises(filtergrid.FiltergridError):
            filtergrid.load(tmp_path / "t.npz")


def test_big_endian_and_integer_arrays_decode_to_float32(tmp_path):
    w = rng.integers(-100, 100, (10, 64)).astype(">i2")
    np.savez(tmp_path / "m.npz", W1=w.T)
    np.testing.assert_array_equal(filtergrid.load(tmp_path / "m.npz").array, w.astype(np.float32).reshape(10, 8, 8, 1))


# -- mutation triage: header versions, refusal words, rows=, Fortran order, saved banks ----------


def _saved(tmp_path, array, name="w.npy", **kwargs):
    path = tmp_path / name
    with open(path, "wb") as f:
        np.lib.format.write_array(f, array, **kwargs)
    return path


def test_version_2_headers_read_and_version_3_is_named(tmp_path):
    w = rng.standard_normal((4, 3, 5, 5)).astype(np.float32)
    np.testing.assert_array_equal(filtergrid.load(_saved(tmp_path, w, version=(2, 0))).array,
                                  np.transpose(w, (0, 2, 3, 1)))
    with pytest.raises(filtergrid.CorruptFileError, match=r"w.npy: unsupported .npy version \(3, 0\)"):
        filtergrid.load(_saved(tmp_path, w, version=(3, 0)))


def test_a_header_numpy_cannot_parse_is_refused_with_numpys_reason(tmp_path):
    header = b"{'descr': '<f4', 'shape': (2, 2), }"  # no fortran_order
    (tmp_path / "h.npy").write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + bytes(16))
    with pytest.raises(filtergrid.CorruptFileError, match=r"h.npy: bad .npy header \(Header does not contain the correct keys"):
        filtergrid.load(tmp_path / "h.npy")


def test_complex_arrays_are_named_non_numeric(tmp_path):
    np.save(tmp_path / "c.npy", np.ones((4, 4), np.complex64))
    with pytest.raises(UnreadableFeatureError, match="c.npy has non-numeric dtype complex64"):
        filtergrid.load(tmp_path / "c.npy")


def test_a_cut_npy_says_what_it_declares_and_holds(tmp_path):
    np.save(tmp_path / "w.npy", np.ones(16, np.float32))
    data = (tmp_path / "w.npy").read_bytes()
    (tmp_path / "w.npy").write_bytes(data[:-54])  # 10 of the 64 data bytes left
    with pytest.raises(filtergrid.CorruptFileError, match="declares \\[16\\] float32 = 64 bytes but holds 10$"):
        filtergrid.load(tmp_path / "w.npy")


def test_an_npz_member_shorter_than_its_directory_entry_says_so(tmp_path):
    """A hostile zip: header and central directory claim 2 rows more than the stored member has."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (66, 10)})
    with zipfile.ZipFile(tmp_path / "m.npz", "w") as z:
        z.writestr("W1.npy", header.getvalue() + np.ones((64, 10), np.float32).tobytes())
    data = bytearray((tmp_path / "m.npz").read_bytes())
    directory = data.rindex(b"PK\x01\x02")
    struct.pack_into("<I", data, directory + 24, len(header.getvalue()) + 66 * 10 * 4)  # its uncompressed size
    (tmp_path / "m.npz").write_bytes(bytes(data))
    with pytest.raises(filtergrid.CorruptFileError, match=r"array data ends early \(2,560 of 2,640 bytes\)"):
        filtergrid.load(tmp_path / "m.npz")


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_rows_reads_the_first_rows_and_fortran_order_reads_right(tmp_path, suffix):
    c = rng.standard_normal((10, 3)).astype(np.float32)
    f = np.asfortranarray(rng.standard_normal((10, 3)).astype(np.float32))
    for name, array in (("c", c), ("f", f)):
        path = tmp_path / f"{name}{suffix}"
        np.save(path, array) if suffix == ".npy" else np.savez(path, **{name: array})
        with filtergrid.open_model(path) as (_, reader):
            read = reader.read(name, rows=5)
        if array.flags.c_contiguous:  # only the rows asked for are read
            np.testing.assert_array_equal(read, array[:5])
        else:  # a Fortran-ordered array's rows are not contiguous: all of it, in the right order
            np.testing.assert_array_equal(read, array)


def test_big_endian_arrays_are_read_in_native_byte_order(tmp_path):
    w = rng.standard_normal((8, 8)).astype(">f4")
    np.save(tmp_path / "w.npy", w)
    with filtergrid.open_model(tmp_path / "w.npy") as (_, reader):
        read = reader.read("w")
    assert read.dtype == np.dtype("=f4")
    np.testing.assert_array_equal(read, w)


def test_a_saved_npy_bank_reads_its_array_by_the_bank_name(tmp_path):
    from filtergrid.export import ARRAY, write_bank

    w = rng.standard_normal((6, 1, 3, 3)).astype(np.float32)
    np.save(tmp_path / "w.npy", w)
    out = write_bank(filtergrid.load(tmp_path / "w.npy"), tmp_path / "bank.npy")
    with filtergrid.open_model(out) as (_, reader):
        assert [i.name for i in reader.tensors()] == [ARRAY]
        np.testing.assert_array_equal(reader.read(ARRAY), np.transpose(w, (0, 2, 3, 1)))


def test_a_damaged_npz_member_names_the_archive(tmp_path):
    np.savez(tmp_path / "m.npz", W1=np.ones((1000, 10), np.float32))  # past zipfile's 4 KB read-ahead
    data = bytearray((tmp_path / "m.npz").read_bytes())
    data[data.rindex(b"\x00\x00\x80\x3f") + 2] ^= 0xFF  # the last data byte: the CRC no longer matches
    (tmp_path / "m.npz").write_bytes(bytes(data))
    with pytest.raises(filtergrid.CorruptFileError, match="m.npz: damaged zip archive"):
        filtergrid.load(tmp_path / "m.npz")
