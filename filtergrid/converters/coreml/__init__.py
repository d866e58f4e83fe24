"""Core ML: ``.mlmodel`` specs (NeuralNetwork or ML Program) and ``.mlpackage`` folders.

The spec is a protobuf ``Model`` read with the wire walker over an ``mmap`` (no coremltools). A
NeuralNetwork stores its weights inline; an ML Program stores them inline or in the package's
``weights/weight.bin`` blob, found next to the spec and never outside the package. Pipelines are
followed into their sub-models in order. A weight blob opened on its own is recognised and refused
with a pointer to its package: it holds no shapes and no layer order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json

import numpy as np

from ... import limits
from ...bank import Producer, TensorInfo
from ...errors import CorruptFileError, UnknownFormatError
from ...safeio import ModelPath, map_whole, model_path, resolve_inside
from ..base import Probe, not_found, written_by
from ..protomessage import Message
from ..protowire import LEN, MAX_VARINT_BYTES, read_varint, short_text
from . import neuralnetwork
from .blob import BlobFile, looks_like_blob
from .entries import Entry
from .mlprogram import ProgramWalk

#: Model fields (Model.proto): the oneof of model types starts at 200.
NEURAL_NETWORKS = {500: "neuralNetwork", 403: "neuralNetworkClassifier", 303: "neuralNetworkRegressor"}
ML_PROGRAM = 502
PIPELINES = (200, 201, 202)
FIRST_MODEL_TYPE, LAST_MODEL_TYPE = 200, 3000
SPEC_IN_PACKAGE = "Data/com.apple.CoreML/model.mlmodel"
MAX_MANIFEST_BYTES = 1024 * 1024
#: User metadata entries looked through for what coremltools records of itself.
MAX_USER_METADATA = 64
COREMLTOOLS_KEY = "com.github.apple.coremltools."


def sniff(probe: Probe) -> bool:
    if probe.is_dir:
        return (probe.path / "Manifest.json").is_file() and (probe.path / "Data").is_dir()
    return looks_like_blob(probe.head) or _looks_like_spec(probe)


def _looks_like_spec(probe: Probe) -> bool:
    """``specificationVersion`` (field 1), a description (field 2), then a model type field (>= 200).

    ONNX also starts with a varint field 1, but its field 2 is a name and nothing it has is >= 200.
    Fields come in number order (1, 2, 10 isUpdatable, 200+), so the key after the description
    decides; when the description is longer than the probe, that key is read from the file.
    """
    head = probe.head
    if len(head) < 4 or head[0] != 0x08 or not 1 <= head[1] <= 20 or head[2] != 0x12:
        return False
    try:
        length, pos = read_varint(head, 3, len(head), "probe")
        after = head[pos + length:pos + length + 2 * MAX_VARINT_BYTES]
        if pos + length >= probe.size:  # a description longer than the file: not a spec
            return False
        if len(after) < 2 * MAX_VARINT_BYTES:
            with probe.path.open("rb") as f:
                f.seek(pos + length)
                after = f.read(2 * MAX_VARINT_BYTES)
        if after[:1] == b"\x50":  # isUpdatable (10, varint) and its one-byte value
            after = after[2:]
        key, _ = read_varint(after, 0, len(after), "probe")
    except (CorruptFileError, OSError):
        return False
    return FIRST_MODEL_TYPE <= key >> 3 <= LAST_MODEL_TYPE and key & 7 == LEN


def open(path: ModelPath) -> CoreMLReader:
    path = model_path(path)
    if path.is_file() and looks_like_blob(_head(path)):
        raise UnknownFormatError(
            "this is a Core ML weight blob (weights/weight.bin): it holds no shapes or layer order; "
            f"open the .mlpackage folder that contains it{_package_hint(path)}")
    return CoreMLReader(path)


def _head(path: ModelPath) -> bytes:
    with path.open("rb") as f:
        return f.read(128)


def _package_hint(path: ModelPath) -> str:
    package = next((p for p in path.resolve().parents if p.suffix.lower() == ".mlpackage"), None)
    return f" ({package.name})" if package else ""


def _spec_path(package: ModelPath) -> ModelPath:
    """The root model of an ``.mlpackage``: named by ``Manifest.json``, inside the package's Data/."""
    manifest = package / "Manifest.json"
    if not manifest.is_file():
        raise CorruptFileError("the folder has no Manifest.json: not an .mlpackage")
    if manifest.stat().st_size > MAX_MANIFEST_BYTES:
        raise CorruptFileError(f"Manifest.json is over {MAX_MANIFEST_BYTES:,} bytes")
    try:
        info = json.loads(manifest.read_text("utf-8"))
        item = info["itemInfoEntries"][info["rootModelIdentifier"]]
        relative = item["path"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError):
        relative = SPEC_IN_PACKAGE.removeprefix("Data/")
    if not isinstance(relative, str):
        raise CorruptFileError("Manifest.json names its root model with no path")
    spec = resolve_inside(package / "Data", relative, "root model")
    if not spec.is_file():
        raise CorruptFileError(f"the package has no root model at Data/{relative!r}")
    return spec


class CoreMLReader:
    """A Core ML model's conv/dense weights in execution order (pipelines: sub-model by sub-model)."""

    def __init__(self, path: ModelPath):
        spec = _spec_path(path) if path.is_dir() else path
        self._map = map_whole(spec)  # the spec is walked whole; a remote one is read once
        self._blobs: dict[str, BlobFile] = {}
        try:
            model = Message.parse(self._map, 0, len(self._map), "Core ML Model")
            entries = self._entries(model, spec.parent, "", 0)
            self._written_by = written_by(lambda: _writer(model))
        except BaseException:
            self.close()
            raise
        self._by_name = _unique(entries)
        rank = {name: i for i, name in enumerate(n for n, e in self._by_name.items() if e.candidate)}
        self._infos = [e.info(rank.get(n, -1)) for n, e in self._by_name.items()]

    def _entries(self, model: Message, folder: ModelPath, prefix: str, depth: int) -> list[Entry]:
        if depth > limits.MAX_NESTING:
            raise limits.exceeded("MAX_NESTING", "Core ML pipelines nested", depth)
        for number, kind in NEURAL_NETWORKS.items():
            network = model.message(number, kind)
            if network is not None:
                return neuralnetwork.layer_entries(network, prefix)
        program = model.message(ML_PROGRAM, "mlProgram")
        if program is not None:
            return ProgramWalk(program, folder, prefix, self._blobs).entries
        entries: list[Entry] = []
        for number in PIPELINES:
            pipeline = model.message(number, "pipeline")
            for i, sub in enumerate(pipeline.messages(1, "pipeline models") if pipeline else []):
                entries += self._entries(sub, folder, f"{prefix}model{i}/", depth + 1)
        return entries

    def tensors(self) -> list[TensorInfo]:
        return list(self._infos)

    def read(self, name: str, rows: int | None = None) -> np.ndarray:
        entry = self._by_name.get(name)
        if entry is None:
            raise not_found(name)
        return entry.decode()

    def producer(self) -> Producer | None:
        return self._written_by

    def close(self) -> None:
        for blob in self._blobs.values():
            blob.close()
        with contextlib.suppress(BufferError):
            self._map.close()


def _writer(model: Message) -> Producer | None:
    """``specificationVersion`` (1) and the user metadata (description 2 -> metadata 100 -> userDefined
    100) where coremltools records its version and the framework it converted from."""
    description = model.message(2, "ModelDescription")
    metadata = description.message(100, "Metadata") if description else None
    tools: dict[str, str] = {}
    for entry in metadata.messages(100, "userDefined")[:MAX_USER_METADATA] if metadata else ():
        key, value = (short_text(entry.buf, *span) if span else "" for span in (entry.span(1), entry.span(2)))
        if key.startswith(COREMLTOOLS_KEY):
            tools[key.removeprefix(COREMLTOOLS_KEY)] = value
    version = tools.get("version", "")
    return Producer.recorded("coremltools" if version else "", version,
                             f"Core ML specification version {model.int(1)}",
                             details=(f"source {tools['source']}" if tools.get("source") else "",))


def _unique(entries: list[Entry]) -> dict[str, Entry]:
    """Entries by name; a repeated name (layers need not be named uniquely) gets ``#k``."""
    out: dict[str, Entry] = {}
    for k, entry in enumerate(entries):
        name = entry.name if entry.name not in out else f"{entry.name}#{k}"
        out[name] = entry if name == entry.name else dataclasses.replace(entry, name=name)
    return out
