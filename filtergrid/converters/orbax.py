"""Orbax checkpoints (``orbax.checkpoint``): a PyTree checkpoint folder, or a CheckpointManager root.

A PyTree item folder holds ``_METADATA`` (JSON: every leaf's key path and value type) and one zarr v2
array per leaf, stored either in an OCDBT database (``manifest.ocdbt``, ``d/``, ``ocdbt.process_*/``:
what orbax writes by default) or as one folder per array (``params.conv.kernel/.zarray`` + chunk
files: ``use_ocdbt=False``). The array key is the leaf's key path joined by dots. A manager root
holds one folder per step (``<step>/_CHECKPOINT_METADATA``, ``<step>/<item>/``); the newest step is
read. Arrays are decoded by tensorstore (the extra ``orbax``), the library orbax itself reads them
with, but only after filtergrid has checked them: the folder holds no links or special files,
``.zarray`` is parsed here, every chunk the read needs exists and its stored bytes justify its
decoded size (``MAX_COMPRESSION_RATIO``). Those chunks are copied into an in-memory store, so
tensorstore decodes exactly the bytes checked; every native call is bounded by ``NATIVE_READ_SECONDS``.

Orbax flattens the pytree with JAX, which sorts dict keys, so the stored order is no model order:
the forward order is inferred as for sorted flax checkpoints (:func:`flax.params_listing`).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np

from .. import dtypes, limits
from ..bank import TensorInfo
from ..errors import CorruptFileError, UnsafeFileError, plain
from ..remote import RemotePath
from ..safeio import ModelPath, model_path, resolve_inside
from . import unsupported
from .base import Probe, lookup, require
from .flax import INFERRED, params_listing

ITEM, STEP = "_METADATA", "_CHECKPOINT_METADATA"
TITLE = "Orbax checkpoint folder"
#: Leaf value types orbax stores as arrays (others: scalars in ``_METADATA``, ``None`` placeholders).
_ARRAYS = ("jax.Array", "np.ndarray")
#: zarr v2 ``dtype`` strings orbax writes, as filtergrid's dtype names.
_DTYPES = {"<f8": "float64", "<f4": "float32", "<f2": "float16", "bfloat16": "bfloat16", "<i8": "int64",
           "<i4": "int32", "<i2": "int16", "|i1": "int8", "<u8": "uint64", "<u4": "uint32", "<u2": "uint16",
           "|u1": "uint8", "|b1": "bool"}
_COMPRESSORS = ("zstd", "zlib", "gzip", "blosc", "bz2")


def _is_step(folder: ModelPath) -> bool:
    return (folder / STEP).is_file()


def sniff(probe: Probe) -> bool:
    """An item folder (``_METADATA``), a step folder (``_CHECKPOINT_METADATA``) or a manager root
    (a step-numbered folder holding one): names only."""
    if not probe.is_dir:
        return False
    return (probe.path / ITEM).is_file() or _is_step(probe.path) or bool(_steps(probe.path))


def _steps(root: ModelPath) -> list[int]:
    """Step numbers of a CheckpointManager root: its digit-named folders that are finished steps."""
    if isinstance(root, RemotePath):
        return []
    steps = []
    with os.scandir(root) as entries:
        for entry in itertools.islice(entries, limits.MAX_TENSORS):
            if entry.name.isdigit() and len(entry.name) < 20 and _is_step(Path(entry.path)):
                steps.append(int(entry.name))
    return sorted(steps)


def _inside(folder: Path, name: str, what: str) -> Path:
    """:func:`resolve_inside` for a local folder, whose result is local too."""
    return cast(Path, resolve_inside(folder, name, what))


def _item(folder: Path) -> Path:
    """The item of a step folder: the only one, or ``default`` (what a one-item manager writes)."""
    with os.scandir(folder) as entries:
        items = sorted(e.name for e in itertools.islice(entries, limits.MAX_TENSORS)
                       if e.is_dir(follow_symlinks=False) and (Path(e.path) / ITEM).is_file())
    if len(items) == 1 or "default" in items:
        return _inside(folder, items[0] if len(items) == 1 else "default", "Orbax item")
    if not items:
        raise CorruptFileError("the checkpoint step holds no item folder (none has a _METADATA)")
    shown = ", ".join(repr(i[:80]) for i in items[:8])
    raise CorruptFileError(f"the checkpoint step holds {len(items)} items ({shown}): open one of their folders")


def locate(path: Path) -> tuple[Path, str]:
    """(the item folder to read, how it was found) for an item, step or manager root folder."""
    if (path / ITEM).is_file():
        return path, ""
    if _is_step(path):
        item = _item(path)
        return item, f"item {item.name!r} of the step folder"
    steps = _steps(path)
    if not steps:
        raise CorruptFileError("not an Orbax checkpoint: no _METADATA, _CHECKPOINT_METADATA or step folders")
    item = _item(_inside(path, str(steps[-1]), "checkpoint step"))
    return item, f"CheckpointManager folder: step {steps[-1]}, the newest of {len(steps)} steps; item {item.name!r}"


def check_folder(folder: Path) -> None:
    """Refuse links and special files anywhere in the item folder: tensorstore follows links and
    blocks on FIFOs, and everything it reads must lie inside. Bounded by MAX_TENSORS entries and
    MAX_NESTING levels."""
    stack, seen = [(folder, 0)], 0
    while stack:
        current, depth = stack.pop()
        if depth > limits.MAX_NESTING:
            raise limits.exceeded("MAX_NESTING", "folder depth of the Orbax checkpoint", depth)
        with os.scandir(current) as entries:
            for entry in entries:
                seen += 1
                if seen > limits.MAX_TENSORS:
                    raise limits.exceeded("MAX_TENSORS", "files in the Orbax checkpoint", seen)
                mode = entry.stat(follow_symlinks=False).st_mode
                if stat.S_ISDIR(mode):
                    stack.append((Path(entry.path), depth + 1))
                elif not stat.S_ISREG(mode):
                    kind = "a symlink" if stat.S_ISLNK(mode) else "not a regular file"
                    raise UnsafeFileError(f"{entry.name[:200]!r} in the Orbax checkpoint is {kind}")


@dataclass(frozen=True)
class _Leaf:
    """One array leaf: its name (key path joined by ``/``) and its array key (joined by ``.``)."""

    name: str
    key: str
    write_shape: tuple[int, ...] | None


def _leaves(metadata: dict) -> list[_Leaf]:
    """The array leaves of ``_METADATA``'s ``tree_metadata``, in stored (sorted-key) order."""
    tree = metadata.get("tree_metadata")
    if not isinstance(tree, dict):
        raise CorruptFileError("_METADATA has no tree_metadata (an orbax before 0.5 wrote this checkpoint)")
    limits.check("MAX_TENSORS", len(tree), "leaves in _METADATA")
    leaves = []
    for entry in tree.values():
        value, keys = entry.get("value_metadata"), entry.get("key_metadata") if isinstance(entry, dict) else None
        if not isinstance(value, dict) or not isinstance(keys, list) or not keys:
            raise CorruptFileError("_METADATA: a leaf without key_metadata and value_metadata")
        if value.get("value_type") not in _ARRAYS or value.get("skip_deserialize"):
            continue
        parts = [str(k.get("key"))[:256] if isinstance(k, dict) else "?" for k in keys[:limits.MAX_NESTING]]
        shape = value.get("write_shape")
        leaves.append(_Leaf("/".join(parts), ".".join(parts), dtypes.check_shape(shape) if shape is not None else None))
    return leaves


@dataclass(frozen=True)
class _Zarray:
    """A checked zarr v2 ``.zarray``: shape, chunk shape, dtype, compression and chunk key separator."""

    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: str
    compressed: bool
    separator: str
    spec: dict

    def chunk_keys(self, rows: int | None) -> list[str]:
        """Keys of the chunks holding the first ``rows`` rows (all of them when None)."""
        grid = [math.ceil(s / c) for s, c in zip(self.shape, self.chunks)]
        if rows is not None and grid:
            grid[0] = min(grid[0], math.ceil(max(rows, 1) / self.chunks[0]))
        limits.check("MAX_TENSORS", math.prod(grid), "chunks of one zarr array")
        if not grid:
            return ["0"]
        return [self.separator.join(map(str, index)) for index in itertools.product(*map(range, grid))]

    def check_chunk(self, key: str, stored: int) -> None:
        decoded = math.prod(self.chunks) * dtypes.itemsize(self.dtype)
        if not self.compressed and stored != decoded:
            raise CorruptFileError(f"chunk {key!r} holds {stored:,} bytes, not the {decoded:,} its shape needs")
        if stored == 0 or decoded > stored * limits.MAX_COMPRESSION_RATIO:
            raise limits.exceeded("MAX_COMPRESSION_RATIO", f"decoded/stored bytes of chunk {key!r} "
                                  f"({decoded:,} from {stored:,})", decoded // max(stored, 1))


def parse_zarray(raw: bytes, name: str) -> _Zarray:
    """A ``.zarray`` read as untrusted JSON: only the fields orbax writes, with values filtergrid reads."""
    limits.check("MAX_CONFIG_BYTES", len(raw), f"bytes of {name}/.zarray")
    try:
        meta = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise CorruptFileError(f"{name!r}: .zarray is not valid JSON: {plain(e)}") from None
    if not isinstance(meta, dict) or meta.get("zarr_format") != 2:
        raise CorruptFileError(f"{name!r}: .zarray is not zarr v2 metadata")
    stored_dtype = meta.get("dtype")
    dtype = _DTYPES.get(stored_dtype) if isinstance(stored_dtype, str) else None
    compressor = meta.get("compressor")
    compressed = isinstance(compressor, dict) and compressor.get("id") in _COMPRESSORS
    if dtype is None or meta.get("filters") or meta.get("order") != "C" or not (compressed or compressor is None):
        raise CorruptFileError(f"{name!r}: .zarray dtype/filters/order/compressor are not ones filtergrid reads "
                               f"({str(meta.get('dtype'))[:40]!r}, {str(meta.get('filters'))[:40]}, "
                               f"{str(meta.get('order'))[:8]}, {str(compressor)[:60]})")
    shape, chunks = dtypes.check_shape(meta.get("shape", ())), dtypes.check_shape(meta.get("chunks", ()))
    if len(chunks) != len(shape) or 0 in chunks:
        raise CorruptFileError(f"{name!r}: chunks {list(chunks)} do not fit shape {list(shape)}")
    separator = meta.get("dimension_separator", ".")
    if separator not in (".", "/"):
        raise CorruptFileError(f"{name!r}: dimension_separator {str(separator)[:8]!r} is not . or /")
    return _Zarray(shape, chunks, dtype, compressed, separator, meta)


def _result(future, what: str):
    """A tensorstore future's value within NATIVE_READ_SECONDS; its errors as one-line CorruptFileErrors."""
    try:
        return future.result(timeout=limits.NATIVE_READ_SECONDS)
    except TimeoutError:
        future.cancel()
        raise limits.exceeded("NATIVE_READ_SECONDS", f"seconds tensorstore spent {what}",
                              limits.NATIVE_READ_SECONDS) from None
    except (ValueError, RuntimeError, OSError, KeyError, IndexError) as e:
        raise CorruptFileError(f"tensorstore failed {what}: {' '.join(str(e).split())[:300]}") from None


def _context(ts):
    """A fresh tensorstore context: no cache, one copy thread, its own in-memory store."""
    return ts.Context({"cache_pool": {"total_bytes_limit": 0}, "data_copy_concurrency": {"limit": 1},
                       "file_io_concurrency": {"limit": 2}})


class _FileStore:
    """Arrays kept one folder each (``use_ocdbt=False``): a key is a path inside the item folder."""

    def __init__(self, folder: Path):
        self.folder = folder

    def get(self, key: str, limit: str) -> bytes | None:
        path = resolve_inside(self.folder, key, "zarr key")
        if not path.is_file():
            return None
        limits.check(limit, path.stat().st_size, f"bytes of {key[:200]!r}")
        return path.read_bytes()


class _OcdbtStore:
    """Arrays in the item's OCDBT database, read through tensorstore's ``ocdbt`` key-value store."""

    def __init__(self, ts, folder: Path):
        spec = {"driver": "ocdbt", "base": {"driver": "file", "path": f"{folder}/"}}
        self.kv = _result(ts.KvStore.open(spec, context=_context(ts)), "opening manifest.ocdbt")

    def get(self, key: str, limit: str) -> bytes | None:
        found = _result(self.kv.read(key), f"reading {key[:200]!r}")
        if found.state != "value":
            return None
        limits.check(limit, len(found.value), f"bytes of {key[:200]!r}")
        return found.value


def _read_json(path: Path) -> dict:
    limits.check("MAX_CONFIG_BYTES", path.stat().st_size, f"bytes of {path.name}")
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise CorruptFileError(f"{path.name} is not valid JSON: {plain(e)}") from None
    if not isinstance(data, dict):
        raise CorruptFileError(f"{path.name} is not a JSON object")
    return data


class OrbaxReader:
    """The array leaves of one Orbax item; each read decodes only the checked chunks it needs."""

    def __init__(self, folder: Path, how: str):
        self._ts = require("tensorstore", "orbax")
        check_folder(folder)
        metadata = _read_json(folder / ITEM)
        if metadata.get("use_zarr3"):
            raise unsupported.refusal(TITLE, "its arrays are zarr v3, which filtergrid does not read yet "
                                      "(save with use_zarr3=False)", path=str(folder))
        ocdbt = (folder / "manifest.ocdbt").is_file()
        self._store = _OcdbtStore(self._ts, folder) if ocdbt else _FileStore(folder)
        self._how = how
        self._arrays = {leaf.name: (leaf, self._zarray(leaf)) for leaf in _leaves(metadata)}

    def _zarray(self, leaf: _Leaf) -> _Zarray:
        raw = self._store.get(f"{leaf.key}/.zarray", "MAX_CONFIG_BYTES")
        if raw is None:
            raise CorruptFileError(f"array {leaf.name!r} listed in _METADATA is missing from the checkpoint")
        zarray = parse_zarray(raw, leaf.name)
        if leaf.write_shape is not None and leaf.write_shape != zarray.shape:
            raise CorruptFileError(f"{leaf.name!r}: _METADATA says shape {list(leaf.write_shape)}, "
                                   f".zarray says {list(zarray.shape)}")
        return zarray

    def tensors(self) -> list[TensorInfo]:
        why = "; ".join(filter(None, (self._how, "Orbax stores the pytree with JAX's sorted keys, so creation "
                                                 f"order is lost: {INFERRED}")))
        entries = [(name, z.shape, z.dtype) for name, (_, z) in self._arrays.items()]
        return params_listing(entries, any(n.startswith("params/") for n in self._arrays), True, why)

    def read(self, name: str, rows: int | None = None) -> np.ndarray:
        leaf, zarray = lookup(self._arrays, name)
        if rows is not None and (not zarray.shape or rows >= zarray.shape[0]):
            rows = None
        context = _context(self._ts)
        memory = _result(self._ts.KvStore.open({"driver": "memory"}, context=context), "opening a memory store")
        _result(memory.write(".zarray", json.dumps(zarray.spec).encode()), "staging .zarray")
        for key in zarray.chunk_keys(rows):
            raw = self._store.get(f"{leaf.key}/{key}", "MAX_TENSOR_BYTES")
            if raw is None:
                raise CorruptFileError(f"{name!r}: chunk {key!r} is missing (it would read as fill values)")
            zarray.check_chunk(key, len(raw))
            _result(memory.write(key, raw), "staging a chunk")
        spec = {"driver": "zarr", "kvstore": {"driver": "memory"}, "recheck_cached_data": False}
        array = _result(self._ts.open(spec, context=context, open=True, read=True), f"opening {name[:200]!r}")
        values = np.asarray(_result((array if rows is None else array[:rows]).read(), f"decoding {name[:200]!r}"))
        if zarray.dtype in dtypes.BIT_PATTERNS:
            return dtypes.native(values.view(dtypes.STORAGE[zarray.dtype]), zarray.dtype)
        return values

    def close(self) -> None:
        self._arrays = {}


def open(path: ModelPath) -> OrbaxReader:  # noqa: A001 - the registry's verb
    path = model_path(path)
    if isinstance(path, RemotePath):
        raise unsupported.refusal(TITLE, "filtergrid reads Orbax checkpoints from local folders only", path=str(path))
    item, how = locate(path)
    return OrbaxReader(item, how)
