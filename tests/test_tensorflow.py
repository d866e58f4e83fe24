"""TensorFlow converter: SavedModel, TF1/TF2 checkpoints and frozen GraphDefs written by TensorFlow.

Values are checked against TensorFlow's own read-back in tests/test_fixtures.py; here: how the first
layer is chosen (graph over object order, the .meta graph over names), the ways a checkpoint can be
named, and hostile bundles (every length, offset and count in the index is checked).
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES

import filtergrid
from filtergrid import converters, limits
from filtergrid.converters.tensorflow import bundle, sstable
from filtergrid.errors import (
    CorruptFileError,
    FiltergridError,
    LimitError,
    TensorNotFoundError,
)

TF = FIXTURES / "tensorflow"


def _first(path: Path):
    return next(i for i in filtergrid.tensors(path) if i.candidate)


def test_the_graph_beats_the_object_order() -> None:
    """The module tracks its head before its stem; the serving function applies the stem first."""
    module = TF / "savedmodel_module"
    first = _first(module)
    assert first.name.startswith("stem/") and first.layout == "HWIO"
    assert "Conv2D" in first.role and "graph order" in first.role
    by_objects = _first(module / "variables" / "variables.index")
    assert by_objects.name.startswith("head/"), "the object graph alone would have chosen the head"


def test_saved_model_file_or_folder_is_the_same_model() -> None:
    assert _first(TF / "savedmodel_conv" / "saved_model.pb") == _first(TF / "savedmodel_conv")


@pytest.mark.parametrize("given", ["ckpt_tf2", "ckpt_tf2/model.index", "ckpt_tf2/model",
                                   "ckpt_tf2/model.data-00000-of-00001"])
def test_a_checkpoint_is_named_by_folder_prefix_index_or_shard(given: str) -> None:
    bank = filtergrid.load(TF / given)
    assert bank.provenance.format == "tensorflow"
    assert bank.provenance.tensor == "model/_operations/1/_kernel/.ATTRIBUTES/VARIABLE_VALUE"
    assert "object graph" in bank.provenance.chosen_by


def test_tf1_checkpoint_uses_the_meta_graph_then_shapes() -> None:
    with_meta = _first(TF / "ckpt_tf1")
    assert with_meta.name == "layer_b/kernel" and ".meta" in with_meta.role
    without = _first(TF / "ckpt_tf1_nometa")
    assert without.name == "layer_b/kernel"
    assert "TF1 name-based" in without.role and "input-facing" in without.role


def test_frozen_conv1d_is_traced_through_expand_dims() -> None:
    first = _first(TF / "frozen_conv1d.pb")
    assert first.layout == "KIO" and "ExpandDims" in first.role


def test_detected_by_content_not_suffix(tmp_path: Path) -> None:
    renamed = tmp_path / "model.bin"
    shutil.copy(TF / "frozen_conv1d.pb", renamed)
    assert converters.detect(renamed).name == "tensorflow"
    for onnx in (FIXTURES / "onnx").glob("*.onnx"):
        assert converters.detect(onnx).name == "onnx", onnx


def test_unknown_name_is_tensor_not_found() -> None:
    with filtergrid.open_model(TF / "ckpt_tf2") as (_, reader), pytest.raises(TensorNotFoundError):
        reader.read("no/such/tensor")


# -- hostile bundles ----------------------------------------------------------------------------


def _copy(tmp_path: Path, name: str = "ckpt_tf2") -> Path:
    target = tmp_path / name
    shutil.copytree(TF / name, target)
    return target


def test_every_byte_of_the_index_flipped_or_cut(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    index = folder / "model.index"
    data = index.read_bytes()
    for pos in range(len(data)):
        index.write_bytes(data[:pos] + bytes([data[pos] ^ 0xFF]) + data[pos + 1:])
        try:
            filtergrid.load(folder)
        except FiltergridError:
            pass
    for cut in range(0, len(data), 7):
        index.write_bytes(data[:cut])
        with pytest.raises(FiltergridError):
            filtergrid.load(folder / "model.index")


def _entry_bytes(key: str) -> bytes:
    """The serialized BundleEntryProto of ``key`` as it appears in the fixture's index."""
    data = (TF / "ckpt_tf2" / "model.index").read_bytes()
    return dict(sstable.entries(data, "index"))[key.encode()]


def _rewrite_entry(folder: Path, key: str, field: int, value: int) -> None:
    """Replace one varint field of an entry with a value of the same encoded length."""
    index = folder / "model.index"
    data = index.read_bytes()
    old = _entry_bytes(key)
    pos, out = 0, bytearray()
    while pos < len(old):
        tag = old[pos]
        number, wire = tag >> 3, tag & 7
        start = pos + 1
        end = start
        if wire == 0:
            while old[end] & 0x80:
                end += 1
            end += 1
            if number == field:
                width = end - start
                encoded = bytearray()
                for i in range(width):
                    encoded.append((value >> (7 * i)) & 0x7F | (0x80 if i < width - 1 else 0))
                out += bytes([tag]) + encoded
            else:
                out += old[pos:end]
        else:
            length = old[start]
            end = start + 1 + length
            out += old[pos:end]
        pos = end
    assert data.count(old) == 1 and bytes(out) != old
    index.write_bytes(data.replace(old, bytes(out)))


KERNEL = "model/_operations/1/_kernel/.ATTRIBUTES/VARIABLE_VALUE"


def test_entry_past_the_shard_is_refused(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    _rewrite_entry(folder, KERNEL, 5, 16_383)  # size: a 2-byte varint, more than the shard holds
    with pytest.raises(CorruptFileError, match="declares"):
        filtergrid.load(folder)


def test_shard_count_names_the_shard_files(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    index = folder / "model.index"
    data = index.read_bytes()
    header = b"\x00\x00\x06\x08\x01\x1a"  # key "", 6-byte BundleHeaderProto: num_shards = 1, ...
    assert data.count(header) == 1
    index.write_bytes(data.replace(header, b"\x00\x00\x06\x08\x05\x1a"))
    with pytest.raises(CorruptFileError, match="model.data-00000-of-00005 is missing"):
        filtergrid.load(folder)


def test_missing_shard_is_refused(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    (folder / "model.data-00000-of-00001").unlink()
    with pytest.raises(CorruptFileError, match="missing"):
        filtergrid.load(folder)


def test_shape_larger_than_the_entry_is_refused_before_allocating(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    index = folder / "model.index"
    data = index.read_bytes()
    # the kernel is (48, 5): its dim 48 is the varint 0x30 after tag 0x08 inside a Dim message
    old = _entry_bytes(KERNEL)
    new = old.replace(b"\x08\x30", b"\x08\x7f", 1)
    index.write_bytes(data.replace(old, new))
    with pytest.raises(CorruptFileError, match="declares"):
        filtergrid.load(folder)


def test_index_over_the_header_limit_is_a_limit_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_HEADER_BYTES", 100)
    with pytest.raises(LimitError, match="MAX_HEADER_BYTES"):
        filtergrid.load(TF / "ckpt_tf2")


def test_compressed_blocks_are_refused(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    index = folder / "model.index"
    data = bytearray(index.read_bytes())
    footer = len(data) - sstable.FOOTER_BYTES
    (_, _), pos = sstable._handle(bytes(data), footer, len(data), "x")
    (offset, size), _ = sstable._handle(bytes(data), pos, len(data), "x")
    data[offset + size] = 1  # the index block's trailer says snappy
    index.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="compressed"):
        filtergrid.load(folder)


def test_checkpoint_state_file_cannot_point_outside(tmp_path: Path) -> None:
    folder = _copy(tmp_path, "ckpt_tf1_nometa")
    (folder / "checkpoint").write_text('model_checkpoint_path: "../../etc/model.ckpt"\n')
    assert bundle.find_index(folder) == (folder / "model.ckpt.index").resolve()


def test_string_tensor_length_lie_is_refused(tmp_path: Path) -> None:
    b = bundle.Bundle(TF / "ckpt_tf2" / "model.index")
    try:
        e = b.entries[bundle.OBJECT_GRAPH_KEY]
        lying = bundle.Entry(e.key, e.dtype, e.shape, e.shard, e.offset, e.size - 1, e.sliced)
        with pytest.raises(CorruptFileError, match="declares"):
            b.read_string(lying)
    finally:
        b.close()


def test_sliced_variables_are_refused_not_misread() -> None:
    b = bundle.Bundle(TF / "ckpt_tf2" / "model.index")
    try:
        e = b.entries[KERNEL]
        with pytest.raises(CorruptFileError, match="partitioned"):
            b.read(bundle.Entry(e.key, e.dtype, e.shape, e.shard, e.offset, e.size, True))
        np.testing.assert_array_equal(b.read(e).shape, (48, 5))
    finally:
        b.close()


def test_footer_magic_decides_index_sniffing(tmp_path: Path) -> None:
    fake = tmp_path / "model.index"
    fake.write_bytes(b"\0" * 100)
    from filtergrid.converters import tensorflow

    assert not tensorflow._index_has_magic(fake)
    assert tensorflow._index_has_magic(TF / "ckpt_tf2" / "model.index")
    assert struct.pack("<Q", 0xDB4775248B80FB57) == sstable.MAGIC
