"""TensorFlow without TensorFlow: SavedModel folders, TF1/TF2 checkpoints and frozen GraphDef ``.pb``.

* ``saved_model.pb`` (or its folder): the graph says which variable the input meets first; the
  values come from the ``variables/`` tensor bundle.
* a checkpoint (``PREFIX.index`` + ``PREFIX.data-*``, given as the index, a shard, the prefix or
  its folder): TF2 checkpoints order variables by their object graph; TF1 name-based ones keep no
  order, so the choice is an inference from the shapes, and says so.
* a frozen ``GraphDef``: weights are ``Const`` nodes, the first layer is found by the same walk.

Everything is read on the protobuf wire (:mod:`..protowire`) and LevelDB table format
(:mod:`.sstable`); nothing from TensorFlow is imported.
"""

from __future__ import annotations

from collections.abc import Iterator

from ...safeio import ModelPath, model_path
from ..base import Probe
from . import sstable

SAVED_MODEL = "saved_model.pb"


def sniff(probe: Probe) -> bool:
    path = probe.path
    if probe.is_dir:
        return (path / SAVED_MODEL).is_file() or _checkpoint_folder(path)
    if path.name.endswith(".index") or ".data-" in path.name:
        return _index_has_magic(_index_of(path))
    return looks_like_saved_model(probe.head) or looks_like_graphdef(probe.head)


def open(path: ModelPath):
    from .readers import open_path

    return open_path(model_path(path))


def _index_of(path: ModelPath) -> ModelPath:
    prefix, sep, _ = path.name.partition(".data-")
    return path.with_name(prefix + ".index") if sep else path


def _index_has_magic(index: ModelPath) -> bool:
    try:
        with index.open("rb") as f:
            size = f.seek(0, 2)
            if size < sstable.FOOTER_BYTES:
                return False
            f.seek(size - 8)
            return sstable.has_magic(f.read(8))
    except OSError:
        return False


def _checkpoint_folder(folder: ModelPath) -> bool:
    """A folder with a TF ``checkpoint`` state file, or with a tensor bundle index in it."""
    state = folder / "checkpoint"
    try:
        if state.is_file() and b"model_checkpoint_path" in state.open("rb").read(4096):
            return True
    except OSError:
        return False
    try:
        matches: Iterator[ModelPath] = folder.glob("*.index")
        indexes = [p for _, p in zip(range(64), matches)]
    except OSError:
        return False
    return any(_index_has_magic(p) for p in indexes)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    for i in range(pos, min(len(data), pos + 10)):
        value |= (data[i] & 0x7F) << shift
        if data[i] < 0x80:
            return value, i + 1
        shift += 7
    return -1, len(data)


def looks_like_saved_model(head: bytes) -> bool:
    """``saved_model_schema_version: 1`` then a MetaGraphDef starting with meta_info_def or graph_def.

    (ONNX also starts with field 1 then field 2, but its field 2 is a producer name: text.)
    """
    if not head.startswith(b"\x08\x01\x12"):
        return False
    _, pos = _varint(head, 3)
    return pos < len(head) and head[pos] in (0x0A, 0x12)


def looks_like_graphdef(head: bytes) -> bool:
    """A GraphDef whose first NodeDef starts with a name and an op that reads as an identifier."""
    if not head.startswith(b"\x0a"):
        return False
    _, pos = _varint(head, 1)
    if head[pos:pos + 1] != b"\x0a":
        return False
    length, pos = _varint(head, pos + 1)
    if length <= 0 or head[pos + length:pos + length + 1] != b"\x12":
        return False
    op_length, pos = _varint(head, pos + length + 1)
    op = head[pos:pos + op_length]
    identifier = op.replace(b"_", b"").isalnum() and not op[:1].isdigit()
    return 0 < op_length <= 128 and len(op) == op_length and identifier
