"""Flax msgpack checkpoints: module order when the file keeps it, a stated rule when JAX sorted it."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from conftest import FIXTURES

import filtergrid
from filtergrid.errors import CorruptFileError

SORTED = FIXTURES / "flax" / "named_sorted.msgpack"


def test_creation_order_is_used_when_the_keys_are_not_sorted():
    bank = filtergrid.load(FIXTURES / "flax" / "named_init_order.msgpack")
    assert bank.provenance.tensor == "params/stem/kernel"
    assert "creation order" in bank.provenance.chosen_by


def test_sorted_keys_are_said_and_the_unfed_convolution_is_chosen():
    bank = filtergrid.load(SORTED)
    assert bank.provenance.tensor == "params/stem/kernel"
    assert "sorted order" in bank.provenance.chosen_by


def test_optimizer_moments_are_not_candidates():
    infos = filtergrid.tensors(FIXTURES / "flax" / "cnn_trainstate.msgpack")
    moments = [t for t in infos if t.name.startswith("opt_state")]
    assert moments and not any(t.candidate for t in moments)


def _array_ext(shape, dtype: str, data: bytes) -> msgpack.ExtType:
    return msgpack.ExtType(1, msgpack.packb((list(shape), dtype, data), use_bin_type=True))


def test_declared_shape_larger_than_the_bytes_is_corrupt(tmp_path):
    path = tmp_path / "bad.msgpack"
    path.write_bytes(msgpack.packb({"params": {"Dense_0": {"kernel": _array_ext((1000, 1000), "float32", b"\0" * 64)}}}))
    with pytest.raises(CorruptFileError, match="1000, 1000"):
        filtergrid.load(path)


def test_object_dtype_is_refused(tmp_path):
    path = tmp_path / "object.msgpack"
    path.write_bytes(msgpack.packb({"params": {"Dense_0": {"kernel": _array_ext((2, 2), "object", b"\0" * 32)}}}))
    with pytest.raises(CorruptFileError, match="object"):
        filtergrid.load(path)


def test_bfloat16_kernels_are_decoded(tmp_path):
    values = np.arange(-8, 8, dtype=np.float32).reshape(4, 4)
    bits = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    path = tmp_path / "bf16.msgpack"
    path.write_bytes(msgpack.packb({"params": {"Dense_0": {"kernel": _array_ext((4, 4), "bfloat16", bits)}}}))
    with filtergrid.open_model(path) as (_, reader):
        np.testing.assert_array_equal(reader.read("params/Dense_0/kernel"), values)


def test_the_walker_reads_every_msgpack_type_as_msgpack_does():
    from filtergrid.converters.flax import _parse

    tree = {"step": 3, "neg": -5, "big": 2**40, "small": -(2**33), "lr": 0.5, "f32": 1.5, "none": None,
            "flags": [True, False], "name": "x" * 40, "long": "y" * 300, "nested": [[1, 2], {"a": -1}],
            **{f"k{i}": i for i in range(20)}}  # more than 15 keys: a map16
    data = msgpack.packb(tree, use_single_float=False)
    assert _parse(data, 0, len(data)) == (msgpack.unpackb(data), len(data))


@pytest.mark.parametrize("cut", [1, 20, 100])
def test_a_file_cut_inside_a_kernel_is_corrupt(tmp_path, cut):
    data = msgpack.packb({"params": {"Dense_0": {"kernel": _array_ext((8, 8), "float32", b"\0" * 256)}}})
    path = tmp_path / "cut.msgpack"
    path.write_bytes(data[:-cut])
    with pytest.raises(CorruptFileError, match="past the end|ends"):
        filtergrid.load(path)


def test_bytes_after_the_map_are_corrupt(tmp_path):
    path = tmp_path / "trailing.msgpack"
    path.write_bytes(msgpack.packb({"params": {"Dense_0": {"kernel": _array_ext((2, 2), "float32", b"\0" * 16)}}}) + b"\0")
    with pytest.raises(CorruptFileError, match="after its msgpack map"):
        filtergrid.load(path)


def test_keys_that_are_not_text_are_named_not_compared(tmp_path):
    """Found by fuzzing: a msgpack map with a number key beside a text key made the sorted-keys check
    compare int with str (TypeError)."""
    kernel = np.arange(12, dtype=np.float32).reshape(3, 4)
    path = tmp_path / "mixed.msgpack"
    path.write_bytes(msgpack.packb({"params": {7: {"kernel": _array_ext((3, 4), "float32", kernel.tobytes())},
                                               "Dense_0": {"kernel": _array_ext((3, 4), "float32", kernel.tobytes())}}}))
    with filtergrid.open_model(path) as (_, reader):
        assert len(reader.tensors()) == 2
        np.testing.assert_array_equal(reader.read(reader.tensors()[0].name), kernel)
