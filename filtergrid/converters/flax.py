"""Flax/JAX checkpoints written by ``flax.serialization.to_bytes`` / ``msgpack_serialize``.

The file is one msgpack map: the state dict of the saved pytree (``{"params": {"Conv_0":
{"kernel", "bias"}, ...}}`` or a whole TrainState). Arrays are msgpack ext type 1 whose payload is
itself msgpack ``(shape, dtype name, C-order bytes)``; ext 3 is a NumPy scalar. Flax builds the
params dict in the order modules are created when the model is initialised (call order), and
``to_state_dict`` and msgpack keep that insertion order, so the first kernel in stored order is
the first layer. Under a ``params`` key only those are candidates (optimizer moments repeat the
names). Kernels are channels last: Conv (kH, kW, in, out) = HWIO, Dense (in, out) = IO.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import numpy as np

from .. import dtypes, limits
from ..bank import TensorInfo
from ..errors import CorruptFileError, TensorNotFoundError, UnreadableFeatureError, plain
from ..layout import CHANNELS_LAST
from ..safeio import ModelPath, model_path
from .base import Probe, natural_key, prefer_layer_weights, tensor_info

_NDARRAY, _NPSCALAR = 1, 3
#: An ext header (ext8/16/32) of type 1 whose payload starts with a 3-element array.
_ARRAY_EXT = re.compile(rb"(\xc7[\s\S]|\xc8[\s\S]{2}|\xc9[\s\S]{4})\x01\x93")
#: dtype names flax writes (``arr.dtype.name``) that filtergrid decodes.
_DTYPES = {"float32", "float16", "bfloat16", "float64", "int8", "uint8", "int16", "int32", "int64",
           "uint16", "uint32", "uint64", "bool"}


def sniff(probe: Probe) -> bool:
    """A msgpack map (fixmap, map16, map32) holding a flax ndarray ext in its first bytes."""
    head = probe.head
    return bool(head) and (0x80 <= head[0] <= 0x8F or head[0] in (0xDE, 0xDF)) and \
        _ARRAY_EXT.search(head) is not None


@dataclass(frozen=True)
class _Array:
    shape: tuple[int, ...]
    dtype: str
    data: bytes


def _ext_hook(code: int, payload: bytes):
    import msgpack

    if code not in (_NDARRAY, _NPSCALAR):
        raise CorruptFileError(f"msgpack ext type {code} is not a flax array")
    try:
        fields = msgpack.unpackb(payload, raw=False, max_bin_len=len(payload), max_array_len=64)
    except (ValueError, msgpack.UnpackException) as e:
        raise CorruptFileError(f"an array record is malformed: {plain(e)}") from None
    if code == _NPSCALAR:
        fields = ((), *fields) if isinstance(fields, (list, tuple)) and len(fields) == 2 else None
    if not isinstance(fields, (list, tuple)) or len(fields) != 3 or not isinstance(fields[2], bytes):
        raise CorruptFileError("flax array record is not (shape, dtype, bytes)")
    shape, dtype, data = fields
    dtype = dtype.decode("ascii", "replace") if isinstance(dtype, bytes) else str(dtype)
    if dtype not in _DTYPES:
        raise CorruptFileError(f"flax array dtype {dtype[:40]!r} is not one filtergrid reads")
    shape = dtypes.check_fits(shape if isinstance(shape, (list, tuple)) else (), dtype, len(data), "flax array")
    if dtypes.nbytes(shape, dtype) != len(data):
        raise CorruptFileError(f"flax array declares {list(shape)} {dtype} but holds {len(data):,} bytes")
    return _Array(shape, dtype, data)


def _leaves(tree, prefix: str = "", depth: int = 0):
    """(path, array) of every array in stored (insertion) order, bounded by MAX_NESTING."""
    if depth > limits.MAX_NESTING:
        raise limits.exceeded("MAX_NESTING", "flax tree depth", depth)
    if isinstance(tree, _Array):
        yield prefix, tree
    elif isinstance(tree, dict):
        if tree.get("__msgpack_chunked_array__"):
            raise UnreadableFeatureError(f"{prefix!r} is a chunked array (over 1 GiB); filtergrid does not join chunks")
        for key, value in tree.items():
            yield from _leaves(value, f"{prefix}/{key}" if prefix else str(key)[:256], depth + 1)
    elif isinstance(tree, (list, tuple)):
        for i, value in enumerate(tree):
            yield from _leaves(value, f"{prefix}/{i}" if prefix else str(i), depth + 1)


def _ports(shape: tuple[int, ...]) -> tuple[int, int]:
    """(inputs, outputs) of a channels-last kernel: (kH, kW, in, out), (k, in, out), (in, out)."""
    return shape[-2], shape[-1]


def _unfed_first(infos: list[TensorInfo]) -> list[TensorInfo]:
    """Candidates in forward order when the keys were sorted: first the kernels whose input size no
    other kernel outputs (nothing in the file feeds them), convolutions before dense layers, then
    the rest in natural name order (flax numbers Conv_0, Conv_1 ... in creation order)."""
    outputs = [_ports(i.shape)[1] for i in infos]

    def key(item: tuple[int, TensorInfo]) -> tuple:
        index, info = item
        fed = any(_ports(info.shape)[0] == out for j, out in enumerate(outputs) if j != index)
        return (fed, len(info.shape) < 4, natural_key(info.name))

    return [info for _, info in sorted(enumerate(infos), key=key)]


class FlaxReader:
    def __init__(self, tree: dict):
        self._arrays = dict(_leaves(tree))
        self._params = isinstance(tree.get("params"), dict)
        modules = list(tree["params"] if self._params else tree)
        #: JAX sorts dict keys whenever a tree passes through jit/tree_map, which erases flax's
        #: creation order; keys already in sorted order may be that.
        self._sorted = len(modules) > 1 and modules == sorted(modules, key=str)  # msgpack keys need not be text

    def _why(self) -> str:
        if self._sorted:
            return ("module keys are in sorted order (JAX sorts dict keys), so creation order is lost: "
                    "first of the kernels no other kernel feeds, convolutions first")
        return "first kernel in the params tree's stored order (flax's module creation order)"

    def tensors(self) -> list[TensorInfo]:
        infos = []
        for name, a in self._arrays.items():
            info = tensor_info(name, a.shape, a.dtype, CHANNELS_LAST.layout_for(a.shape), CHANNELS_LAST.flatten,
                               self._why())
            if info.candidate and self._params and not name.startswith("params/"):
                info = dataclasses.replace(info, candidate=False,
                                           role="outside the params tree (optimizer state, batch statistics)")
            infos.append(info)
        infos = prefer_layer_weights(infos)
        if not self._sorted:
            return infos
        return _unfed_first([i for i in infos if i.candidate]) + [i for i in infos if not i.candidate]

    def read(self, name: str, rows: int | None = None) -> np.ndarray:
        if name not in self._arrays:
            raise TensorNotFoundError(f"no array {name[:200]!r} in the flax checkpoint")
        a = self._arrays[name]
        return dtypes.native(dtypes.from_buffer(a.data, a.dtype, a.shape), a.dtype)

    def close(self) -> None:
        pass


def open(path: ModelPath) -> FlaxReader:  # noqa: A001 - the registry's verb
    import msgpack

    path = model_path(path)
    size = path.stat().st_size
    limits.check("MAX_TENSOR_BYTES", size, "flax checkpoint bytes")
    try:
        tree = msgpack.unpackb(path.read_bytes(), raw=False, ext_hook=_ext_hook, strict_map_key=False)
    except CorruptFileError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException) as e:
        raise CorruptFileError(f"not a valid msgpack file: {plain(e)}") from None
    if not isinstance(tree, dict):
        raise CorruptFileError("flax checkpoint is not a msgpack map")
    return FlaxReader(tree)
