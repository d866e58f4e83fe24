"""PaddlePaddle ``.pdparams`` (``paddle.save`` of a state dict): a pickle of name -> NumPy array.

The pickle is read by filtergrid's restricted unpickler: nothing in it is imported or called.
NumPy arrays arrive as inert placeholders of ``numpy._core.multiarray._reconstruct`` whose state
(shape, dtype, raw bytes) is checked and turned into an array here. The dict keeps the order the
layers were created in, which is the model's order; Paddle stores ``Linear`` weights (in, out).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .. import dtypes, limits, safepickle
from ..bank import TensorInfo
from ..errors import CorruptFileError
from ..layout import PADDLE
from ..safeio import MappedFile, ModelPath, model_path
from .base import Probe, not_found, prefer_layer_weights, tensor_info

_RECONSTRUCT = {"numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct"}
#: NumPy type codes a weight may have (no object, string or void arrays).
_KINDS = "fiub"


def sniff(probe: Probe) -> bool:
    head = probe.head
    return (head[:1] == b"\x80" and probe.path.suffix.lower() == ".pdparams"
            and b"_reconstruct" in head and b"torch" not in head)


def open(path: Path) -> PaddleParamsReader:
    return PaddleParamsReader(model_path(path))


def _array(value, name: str) -> np.ndarray | None:
    """The ndarray a ``_reconstruct`` placeholder describes, or None when the value is something else."""
    if not isinstance(value, safepickle.Placeholder) or value.cls.qualname not in _RECONSTRUCT:
        return None
    state = value.state
    if not (isinstance(state, tuple) and len(state) == 5 and isinstance(state[4], (bytes, memoryview))):
        raise CorruptFileError(f"array {name!r} has no (version, shape, dtype, order, data) state")
    _, shape, dtype, fortran, raw = state
    dims = dtypes.check_shape(shape)
    dt = _dtype(dtype, name)
    need = math.prod(dims) * dt.itemsize
    if len(raw) != need:
        raise CorruptFileError(f"array {name!r} declares {list(dims)} {dt.name} = {need:,} bytes, {len(raw):,} are stored")
    return np.frombuffer(raw, dtype=dt).reshape(dims, order="F" if fortran else "C")


def _dtype(value, name: str) -> np.dtype:
    if not isinstance(value, safepickle.Placeholder) or value.cls.qualname not in ("numpy.dtype",) \
            or not value.args or not isinstance(value.args[0], str):
        raise CorruptFileError(f"array {name!r} has no NumPy dtype")
    order = value.state[1] if isinstance(value.state, tuple) and len(value.state) > 1 else "|"
    code = value.args[0]
    if len(code) > 4 or order not in dtypes.PICKLED_BYTE_ORDERS:
        raise CorruptFileError(f"array {name!r} has dtype {code[:10]!r}")
    try:
        dt = dtypes.pickled_dtype(code, order)
    except (TypeError, ValueError):
        raise CorruptFileError(f"array {name!r} has dtype {code[:10]!r}") from None
    if dt.kind not in _KINDS:
        raise CorruptFileError(f"array {name!r} has dtype {dt}, not a number type")
    return dt


class PaddleParamsReader:
    """A ``.pdparams`` state dict, in its own (layer creation) order."""

    def __init__(self, path: ModelPath):
        with MappedFile(path) as f:  # the arrays' bytes stay views of the file until one is read
            state = safepickle.load(f, what="its pickled state dict")
        if not isinstance(state, dict):
            raise CorruptFileError("a .pdparams file holds a dict of arrays; this one holds something else")
        self._arrays: dict[str, np.ndarray] = {}
        for key, value in state.items():
            array = _array(value, str(key)[:200])
            if array is not None:
                self._arrays[str(key)] = array
        limits.check("MAX_TENSORS", len(self._arrays), "Paddle parameters")
        why = "a weight, in the state dict's order (the order the layers were created)"
        self._infos = prefer_layer_weights([
            tensor_info(name, a.shape, a.dtype.name, PADDLE.layout_for(a.shape), PADDLE.flatten, why)
            for name, a in self._arrays.items()])

    def tensors(self) -> list[TensorInfo]:
        return list(self._infos)

    def read(self, name: str, rows: int | None = None) -> np.ndarray:
        if name not in self._arrays:
            raise not_found(name)
        return np.array(self._arrays[name])

    def close(self) -> None:
        self._arrays.clear()
