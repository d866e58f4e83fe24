"""scikit-learn estimators in pickle / joblib files: an MLP's ``coefs_[0]`` is the CS231n ``W1``.

``MLPClassifier.coefs_[0]`` is the dense first layer, (n_features, n_hidden): sklearn computes
``X @ coefs_[0]`` first. A linear model's ``coef_`` (n_classes, n_features) is its only layer.
The pickle is read by :mod:`filtergrid.safepickle`; NumPy arrays are rebuilt by stand-ins below
that check the declared shape and dtype against the bytes present, and nothing else is called:
``numpy.dtype``, ``numpy.core.multiarray._reconstruct`` (plain pickle), ``_frombuffer``
(protocol 5) and joblib's ``NumpyArrayWrapper``, whose raw bytes joblib writes right after the
wrapper's BUILD opcode (after a padding-length byte and that many padding bytes since joblib 1.2).
"""

from __future__ import annotations

import pickle
import re
from typing import Any

import numpy as np

from .. import dtypes, limits, safepickle
from ..bank import Producer, TensorInfo
from ..errors import CorruptFileError, TensorNotFoundError, UnsafeFileError
from ..layout import image_shape_for
from ..safeio import MappedFile, ModelPath, model_path
from ..safepickle import Allowed, Global, Placeholder
from .base import Probe, text_value

#: What a scikit-learn pickle names near its start: the estimator's module.
_SKLEARN_GLOBAL = re.compile(rb"sklearn\.[a-z_]+")
#: NumPy type strings the stand-ins accept: plain numbers, any byte order.
_NUMERIC_DTYPE = re.compile(r"[<>|=]?[fiub][1248]\Z")


def sniff(probe: Probe) -> bool:
    """A pickle (protocol 2+) that names a scikit-learn class in its first bytes."""
    return probe.head.startswith(b"\x80") and _SKLEARN_GLOBAL.search(probe.head) is not None


class _DtypeStub(Placeholder):
    """``numpy.dtype(str, align, copy)``; BUILD gives its state ``(version, byteorder, ...)``."""

    def resolve(self) -> np.dtype:
        code = self.args[0] if self.args else None
        order = self.state[1] if isinstance(self.state, tuple) and len(self.state) > 1 else "="
        if not isinstance(code, str) or not _NUMERIC_DTYPE.match(code) or order not in dtypes.PICKLED_BYTE_ORDERS:
            raise UnsafeFileError(f"pickle asks for NumPy dtype {str(code)[:40]!r}; only numeric dtypes are read")
        return dtypes.pickled_dtype(code, order)


def _kind(value: Any) -> str:
    return f"a {value.cls.qualname} object" if isinstance(value, Placeholder) else f"a {type(value).__name__}"


def _dtype(value: Any) -> np.dtype:
    if isinstance(value, _DtypeStub):
        return value.resolve()
    raise CorruptFileError(f"an array's dtype is {_kind(value)}, not numpy.dtype")


def _array(data: Any, dtype: np.dtype, shape: Any, fortran: bool) -> np.ndarray:
    """An array from bytes already read, after checking the declared size against them."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CorruptFileError("array data is not bytes")
    shape = dtypes.check_shape(shape if isinstance(shape, tuple) else ())
    need = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if need != len(data):
        raise CorruptFileError(f"array declares {list(shape)} {dtype} = {need:,} bytes but holds {len(data):,}")
    flat = np.frombuffer(data, dtype=dtype)
    array = flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


class _ArrayStub(Placeholder):
    """``_reconstruct(ndarray, (0,), b'b')``; BUILD state is ``(version, shape, dtype, fortran, data)``."""

    def resolve(self) -> np.ndarray:
        state = self.state
        if not isinstance(state, tuple) or len(state) != 5:
            raise CorruptFileError("pickled ndarray has no (version, shape, dtype, fortran, data) state")
        _, shape, dtype, fortran, data = state
        return _array(data, _dtype(dtype), shape, bool(fortran))


class _WrapperStub(Placeholder):
    """joblib's NumpyArrayWrapper: its data follows its BUILD in the stream (see the unpickler)."""

    array: np.ndarray | None = None


def _frombuffer(data: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """``numpy.core.numeric._frombuffer`` (protocol 5 pickles with in-band buffers)."""
    return _array(data, _dtype(dtype), shape, order == "F")


def _stub(kind: type[Placeholder], module: str, name: str) -> Allowed:
    return Allowed(f"{module}.{name}", lambda *args: kind(Global(module, name), args))


SKLEARN_ALLOWED: dict[str, Any] = {
    **safepickle.BASE_ALLOWED,
    "numpy.dtype": _stub(_DtypeStub, "numpy", "dtype"),
    "numpy.core.multiarray._reconstruct": _stub(_ArrayStub, "numpy", "ndarray"),
    "numpy._core.multiarray._reconstruct": _stub(_ArrayStub, "numpy", "ndarray"),
    "numpy.core.numeric._frombuffer": Allowed("numpy.core.numeric._frombuffer", _frombuffer),
    "numpy._core.numeric._frombuffer": Allowed("numpy._core.numeric._frombuffer", _frombuffer),
    "joblib.numpy_pickle.NumpyArrayWrapper": _stub(_WrapperStub, "joblib.numpy_pickle", "NumpyArrayWrapper"),
}


class _JoblibUnpickler(safepickle.SafeUnpickler):
    """The safe unpickler, plus joblib's one extension: array bytes right after a wrapper's BUILD."""

    dispatch = type(safepickle.SafeUnpickler.dispatch)(safepickle.SafeUnpickler.dispatch)

    def __init__(self, file: safepickle.PickleFile, size: int):
        super().__init__(file, SKLEARN_ALLOWED)
        self._size = size

    def load_build(self) -> None:
        super().load_build()
        wrapper = self.stack[-1]
        if isinstance(wrapper, _WrapperStub):
            wrapper.array = self._wrapped_array(wrapper.state)

    def _wrapped_array(self, state: Any) -> np.ndarray:
        if not isinstance(state, dict):
            raise CorruptFileError("joblib array wrapper has no state dict")
        dtype = _dtype(state.get("dtype"))
        shape = dtypes.check_shape(state.get("shape", ()))
        if state.get("numpy_array_alignment_bytes") is not None:
            padding = self.read(1)  # joblib >= 1.2: a padding-length byte, then that much padding
            if not padding:
                raise CorruptFileError("joblib array data ends before its padding byte")
            self.read(padding[0])
        need = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if need > self._size:
            raise CorruptFileError(f"joblib array declares {list(shape)} {dtype} = {need:,} bytes; the file has {self._size:,}")
        return _array(self.read(need), dtype, tuple(shape), state.get("order") == "F")


_JoblibUnpickler.dispatch[pickle.BUILD[0]] = _JoblibUnpickler.load_build


def _value(node: Any) -> Any:
    """A stand-in as the array it stands for; anything else unchanged."""
    if isinstance(node, _WrapperStub):
        if node.array is None:
            raise CorruptFileError("joblib array wrapper without its data")
        return node.array
    if isinstance(node, _ArrayStub):
        return node.resolve()
    return node


def _children(node: Any) -> list:
    if isinstance(node, Placeholder):
        return [node.state, *node.args, *node.items, *node.entries.values()]
    if isinstance(node, dict):
        return list(node.values())
    if isinstance(node, (list, tuple)):
        return list(node)
    return []


def _estimators(root: Any) -> list[Placeholder]:
    """Estimators holding weights (``coefs_`` or ``coef_``), depth first in stored order (a
    Pipeline's steps in order), bounded by MAX_TENSORS nodes and MAX_NESTING levels."""
    found, stack, seen = [], [(root, 0)], set()
    while stack:
        node, depth = stack.pop()
        if id(node) in seen or depth > limits.MAX_NESTING:
            continue
        seen.add(id(node))
        limits.check("MAX_TENSORS", len(seen), "objects in the pickle")
        if isinstance(node, Placeholder) and isinstance(node.state, dict) and \
                ("coefs_" in node.state or "coef_" in node.state):
            found.append(node)
        stack.extend((child, depth + 1) for child in reversed(_children(node)))
    return found


def _weights(estimator: Placeholder, prefix: str) -> dict[str, tuple[np.ndarray, str, str]]:
    """name -> (array, layout, role) of one estimator's layers, first layer first."""
    state, cls = estimator.state, estimator.cls.name
    out: dict[str, tuple[np.ndarray, str, str]] = {}
    if "coefs_" in state:
        coefs, intercepts = state["coefs_"], state.get("intercepts_") or []
        if not isinstance(coefs, list) or not coefs:
            raise CorruptFileError(f"{cls}.coefs_ is not a list of arrays")
        for i, coef in enumerate(coefs):
            out[f"{prefix}coefs_.{i}"] = (_value(coef), "IO", f"{cls} layer {i} weights (n_in, n_out)")
        for i, intercept in enumerate(intercepts if isinstance(intercepts, list) else []):
            out[f"{prefix}intercepts_.{i}"] = (_value(intercept), "IO", "an intercept (bias)")
    else:
        out[f"{prefix}coef_"] = (_value(state["coef_"]), "OI", f"{cls}.coef_ (n_classes, n_features)")
    for name, (array, _, _) in out.items():
        if not isinstance(array, np.ndarray):
            raise CorruptFileError(f"{name} is {_kind(array)}, not an array")
    return out


def _role(array: np.ndarray, layout: str, role: str) -> str:
    """Say why the dense input is (or is not) drawn as an image: sklearn stores no input shape."""
    features = array.shape[0 if layout == "IO" else -1] if array.ndim == 2 else 0
    image = image_shape_for(features)
    if image is None:
        return f"{role}; {features} features are no square image"
    return (f"{role}; applied first to the input. {features} features drawn as a "
            f"{image[0]}x{image[1]}x{image[2]} image by their count only: sklearn records no input shape")


class SklearnReader:
    def __init__(self, arrays: dict[str, tuple[np.ndarray, str, str]], written_by: Producer | None = None):
        self._arrays = arrays
        self._written_by = written_by

    def producer(self) -> Producer | None:
        return self._written_by

    def tensors(self) -> list[TensorInfo]:
        infos: list[TensorInfo] = []
        for name, (array, layout, role) in self._arrays.items():
            weight = array.ndim == 2 and "intercept" not in name
            first = weight and not any(i.candidate for i in infos)
            infos.append(TensorInfo(name, array.shape, array.dtype.name, layout if weight else "auto", "HWC",
                                    _role(array, layout, role) if first else role, weight))
        return infos

    def read(self, name: str, rows: int | None = None) -> np.ndarray:
        if name not in self._arrays:
            raise TensorNotFoundError(f"no array {name[:200]!r}; the file has {', '.join(self._arrays)}")
        return np.array(self._arrays[name][0])  # a copy: the stored array is a view of the mapped file

    def close(self) -> None:
        pass


def open(path: ModelPath) -> SklearnReader:  # noqa: A001 - the registry's verb
    path = model_path(path)
    size = path.stat().st_size
    with MappedFile(path) as f:  # the arrays' bytes stay views of the file until one is read
        root = safepickle.run(_JoblibUnpickler(f, size), "its pickled data")
    estimators = _estimators(root)
    if not estimators:
        raise CorruptFileError("scikit-learn pickle holds no estimator with weights (coefs_ or coef_)")
    arrays: dict[str, tuple[np.ndarray, str, str]] = {}
    for i, estimator in enumerate(estimators):
        arrays.update(_weights(estimator, f"{i}." if len(estimators) > 1 else ""))
    return SklearnReader(arrays, _written_by(root, estimators[0]))


def _written_by(root: Any, first: Placeholder) -> Producer | None:
    """``_sklearn_version``, which every estimator pickles with its state (the root's, for a Pipeline)."""
    state = root.state if isinstance(root, Placeholder) and isinstance(root.state, dict) else first.state
    version = text_value(state, "_sklearn_version") or text_value(first.state, "_sklearn_version")
    kind = root.cls.name if isinstance(root, Placeholder) else first.cls.name
    return Producer.recorded("scikit-learn" if version else "", version, details=(f"estimator {kind}",))

