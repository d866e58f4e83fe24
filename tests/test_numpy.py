"""NumPy .npy/.npz: files written by NumPy itself, read back without pickle."""

import io
import zipfile

import numpy as np
import pytest

import filtergrid
from filtergrid.errors import UnsafeFileError

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
