"""Hugging Face model folders: ``config.json`` beside one or more weight files (or a sharded index).

A folder is one model. Its weight files are read by the converters the registry detects for them
(safetensors, PyTorch, Keras HDF5), so this module only decides *which* files, in which order, and
keeps every shard name inside the folder.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from .. import limits
from ..bank import Producer, TensorInfo
from ..errors import CorruptFileError, plain
from ..firstlayer import order_by_evidence
from ..safeio import ModelPath, resolve_inside
from .base import Probe, Reader, lookup, natural_key, producer_of, text_value

#: Weight files by preference: a sharded index wins over a single file of the same kind.
WEIGHT_FILES = (
    "model.safetensors.index.json", "model.safetensors",
    "pytorch_model.bin.index.json", "pytorch_model.bin",
    "tf_model.h5",
    "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
)

def sniff(probe: Probe) -> bool:
    """A folder with a ``config.json`` and one of the known weight files, or that ``config.json``.

    Without ``config.json`` a folder is just a folder (one that happens to hold a file named
    ``pytorch_model.bin`` is not a model), so a batch audit lists its files one by one.
    """
    folder = probe.path if probe.is_dir else probe.path.parent
    if not probe.is_dir and not (probe.path.name == "config.json" and probe.head.lstrip().startswith(b"{")):
        return False
    return (folder / "config.json").is_file() and any((folder / name).is_file() for name in WEIGHT_FILES)

def shard_files(folder: ModelPath) -> tuple[str, list[ModelPath]]:
    """(the file that named the weights, the weight files in the model's own order)."""
    for name in WEIGHT_FILES:
        path = folder / name
        if not path.is_file():
            continue
        if not name.endswith(".index.json"):
            return name, [resolve_inside(folder, name, "weight file")]
        limits.check("MAX_HEADER_BYTES", path.stat().st_size, f"bytes of {name}")
        try:
            weight_map = json.loads(path.read_text("utf-8"))["weight_map"]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
            raise CorruptFileError(f"{name} has no valid weight_map: {plain(e)}") from None
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise CorruptFileError(f"{name}: weight_map must map tensor names to shard file names")
        shards = list(dict.fromkeys(weight_map.values()))  # index order, each shard once
        return name, [resolve_inside(folder, shard, "shard") for shard in shards]
    raise CorruptFileError(f"no weight file in the folder (looked for {', '.join(WEIGHT_FILES)})")

def read_config(folder: ModelPath) -> dict:
    """``config.json`` as a dict (untrusted: bounded size; only a few integer keys are ever used)."""
    path = resolve_inside(folder, "config.json", "config")
    if not path.is_file():
        return {}
    limits.check("MAX_HEADER_BYTES", path.stat().st_size, "bytes of config.json")
    try:
        with path.open("rb") as f:  # a local or a remote folder alike
            config = json.loads(f.read(limits.MAX_HEADER_BYTES))
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise CorruptFileError(f"config.json is not valid JSON: {plain(e)}") from None
    return config if isinstance(config, dict) else {}


class HuggingFaceReader:
    """Tensors of every shard, in shard order; each read goes to the shard's own reader."""

    def __init__(self, path: ModelPath):
        from . import detect

        self.folder = path if path.is_dir() else path.parent
        self.config = read_config(self.folder)
        self.index, files = shard_files(self.folder)
        self._readers = []
        self._owner: dict[str, Reader] = {}
        self._infos: list[TensorInfo] = []
        try:
            for file in files:
                if not file.is_file():
                    raise CorruptFileError(f"shard {file.name} named by {self.index} is missing")
                fmt = detect(file)
                if fmt.name == "huggingface":
                    raise CorruptFileError(f"{file.name} is not a weight file")
                reader = fmt.load_module().open(file)
                self._readers.append(reader)
                listing = getattr(reader, "listing", reader.tensors)  # unordered stores: before any inference
                for info in listing():
                    if info.name not in self._owner:
                        self._owner[info.name] = reader
                        self._infos.append(info)
        except BaseException:
            self.close()
            raise
        if files[0].suffix == ".safetensors":  # no module order is stored: infer it across every shard
            self._infos.sort(key=lambda i: natural_key(i.name))
            self._infos = order_by_evidence(self._infos, self.config)

    def tensors(self) -> list[TensorInfo]:
        return [dataclasses.replace(i, role=f"{i.role} (from {self.index})") for i in self._infos]

    def read(self, name: str, rows: int | None = None) -> np.ndarray:
        return lookup(self._owner, name).read(name, rows=rows)

    def producer(self) -> Producer | None:
        """``transformers_version`` of config.json, with what the first weight file records."""
        version, model_type = text_value(self.config, "transformers_version"), text_value(self.config, "model_type")
        shard = producer_of(self._readers[0]) if self._readers else None
        return Producer.recorded("transformers" if version else "", version, details=(
            f"model type {model_type}" if model_type else "", shard.describe() if shard else ""))

    def close(self) -> None:
        for reader in self._readers:
            reader.close()

def open(path: ModelPath) -> HuggingFaceReader:  # noqa: A001 - the registry's verb
    return HuggingFaceReader(path)
