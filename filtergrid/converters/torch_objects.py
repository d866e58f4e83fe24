"""PyTorch's pickled objects as plain data: the torch allow-list, lazy tensors, and naming them.

``torch.save`` pickles tensors as calls to ``torch._utils._rebuild_tensor_v2(storage, offset, size,
stride, ...)`` whose storage is a persistent id pointing at raw bytes elsewhere in the file. The
allow-list below maps those torch names onto functions of ours that only record a
:class:`TensorRef`; no tensor data is read until :meth:`TorchReader.read` asks for one. The walk
then names tensors the way ``state_dict()`` does, in module order, through state dicts,
checkpoint dicts, pickled ``nn.Module`` objects and TorchScript modules (both placeholders).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .. import limits
from ..errors import CorruptFileError, UnreadableFeatureError
from ..safepickle import BASE_ALLOWED, Allowed, Global, Placeholder, shown

#: Bytes per element of each torch element type (complex ones are listed, not decoded).
ELEMENT_SIZE = {
    "float32": 4, "float64": 8, "float16": 2, "bfloat16": 2, "float8_e4m3fn": 1, "float8_e5m2": 1,
    "uint8": 1, "int8": 1, "int16": 2, "int32": 4, "int64": 8, "uint16": 2, "uint32": 4, "uint64": 8,
    "bool": 1, "qint8": 1, "quint8": 1, "qint32": 4, "complex64": 8, "complex128": 16,
}
#: torch dtype aliases as they appear in pickles (``torch.float`` is ``torch.float32``).
_DTYPE_ALIASES = {"float": "float32", "double": "float64", "half": "float16", "short": "int16",
                  "int": "int32", "long": "int64", "cfloat": "complex64", "cdouble": "complex128"}
#: Legacy typed-storage classes and the element type each holds.
_STORAGE_CLASSES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "ByteStorage": "uint8", "CharStorage": "int8", "ShortStorage": "int16",
    "IntStorage": "int32", "LongStorage": "int64", "BoolStorage": "bool", "QInt8Storage": "qint8",
    "QUInt8Storage": "quint8", "QInt32Storage": "qint32", "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128", "UntypedStorage": "uint8",
}
#: Quantized element types and the integers they store.
QUANTIZED = {"qint8": "int8", "quint8": "uint8", "qint32": "int32"}
_KEY = re.compile(r"[A-Za-z0-9_]{1,64}\Z")


@dataclass(frozen=True)
class ElementType:
    """A torch dtype (``torch.float16``) or storage class (``torch.HalfStorage``): its element type."""

    name: str


@dataclass(frozen=True)
class QScheme:
    """``torch.per_tensor_affine`` and friends, as quantizer parameters name them."""

    name: str


@dataclass(frozen=True)
class StorageRef:
    """``numel`` elements of type ``element`` starting at element ``start`` of stored record ``key``."""

    key: str
    element: str
    numel: int
    start: int = 0


@dataclass(frozen=True)
class Quantization:
    scheme: str
    scale: Any  # float, or a TensorRef of per-channel scales
    zero_point: Any  # int, or a TensorRef of per-channel zero points
    axis: int | None = None


@dataclass(frozen=True)
class TensorRef:
    """A tensor as its pickle describes it: a strided view of a storage, data not yet read."""

    storage: StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: str
    quantization: Quantization | None = None


def _int(value: Any, what: str) -> int:
    """An integer field; 64 bits at most (an 8 MB LONG4 is no size, and could not even be printed)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise CorruptFileError(f"{what} is {type(value).__name__}, not an integer")
    if value.bit_length() > 63:
        raise CorruptFileError(f"{what} is a {value.bit_length()}-bit integer")
    return value


def _ints(values: Any, what: str) -> tuple[int, ...]:
    if not isinstance(values, (tuple, list)) or len(values) > 64:
        raise CorruptFileError(f"{what} is not a short list of integers")
    return tuple(_int(v, what) for v in values)


def _tensor(storage: Any, offset: Any, size: Any, stride: Any, dtype: str | None = None,
            quantization: Quantization | None = None) -> TensorRef:
    if not isinstance(storage, StorageRef):
        raise CorruptFileError(f"tensor storage is a {type(storage).__name__}, not a stored record")
    size, stride = _ints(size, "tensor size"), _ints(stride, "tensor stride")
    if len(size) != len(stride) or any(d < 0 for d in size):
        raise CorruptFileError(f"tensor size {list(size)} and stride {list(stride)} do not fit together")
    return TensorRef(storage, _int(offset, "storage offset"), size, stride, dtype or storage.element, quantization)


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_ignored: Any) -> TensorRef:
    """_rebuild_tensor / _rebuild_tensor_v2: (storage, offset, size, stride, requires_grad, hooks, metadata)."""
    return _tensor(storage, offset, size, stride)


def _rebuild_tensor_v3(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any,
                       hooks: Any, dtype: Any, *_metadata: Any) -> TensorRef:
    """The dtype is given separately (untyped storages: float8, uint16 ...)."""
    if not isinstance(dtype, ElementType):
        raise CorruptFileError(f"tensor dtype is a {type(dtype).__name__}, not a torch dtype")
    return _tensor(storage, offset, size, stride, dtype.name)


def _rebuild_qtensor(storage: Any, offset: Any, size: Any, stride: Any, params: Any, *_ignored: Any) -> TensorRef:
    """Quantized tensors: params are (scheme, scale, zero_point) or (scheme, scales, zero_points, axis)."""
    if not isinstance(params, tuple) or not params or not isinstance(params[0], QScheme):
        raise CorruptFileError("quantized tensor without a quantization scheme")
    scheme = params[0].name
    if scheme == "per_tensor_affine" and len(params) == 3:
        scale, zero = params[1], params[2]
        if not isinstance(scale, (int, float)) or isinstance(zero, bool) or not isinstance(zero, int):
            raise CorruptFileError("per-tensor quantization needs a number scale and an integer zero point")
        quantization = Quantization(scheme, float(scale), zero)
    elif scheme == "per_channel_affine" and len(params) == 4:
        scales, zeros, axis = params[1], params[2], _int(params[3], "quantization axis")
        if not (isinstance(scales, TensorRef) and isinstance(zeros, TensorRef)):
            raise CorruptFileError("per-channel quantization needs tensors of scales and zero points")
        quantization = Quantization(scheme, scales, zeros, axis)
    else:
        raise UnreadableFeatureError(f"quantization scheme {scheme} is not supported")
    tensor = _tensor(storage, offset, size, stride)
    if tensor.dtype not in QUANTIZED:
        raise CorruptFileError(f"quantized tensor stored as {tensor.dtype}")
    return TensorRef(tensor.storage, tensor.offset, tensor.size, tensor.stride, tensor.dtype, quantization)


def _rebuild_parameter(data: Any, *_ignored: Any) -> Any:
    """nn.Parameter(data, requires_grad, hooks[, state]): the data is all that matters here."""
    return data


def _rebuild_from_type(func: Any, new_type: Any, args: Any, *_state: Any) -> Any:
    """Tensor subclasses: rebuild with ``func`` (itself allow-listed), ignore the subclass."""
    if not isinstance(func, Allowed) or func.qualname not in _TENSOR_REBUILDERS or not isinstance(args, tuple):
        raise CorruptFileError("tensor subclass rebuilt by something other than a torch tensor rebuild")
    return func.call(*args)


def _size(dims: Any = ()) -> tuple[int, ...]:
    return _ints(dims, "torch.Size")


def _device(*args: Any) -> str:
    return ":".join(shown(a) for a in args[:2])


def _same_list(values: Any, *_ignored: Any) -> Any:
    """torch.jit._pickle.build_intlist etc.: typed lists TorchScript tags; restore_type_tag(value, type)."""
    return values


_TENSOR_REBUILDERS: dict[str, Callable[..., Any]] = {
    "torch._utils._rebuild_tensor": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v3": _rebuild_tensor_v3,
    "torch._utils._rebuild_qtensor": _rebuild_qtensor,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
}

#: Every torch global a checkpoint may name and what filtergrid makes of it.
TORCH_ALLOWED: dict[str, Any] = {
    **BASE_ALLOWED,
    **{q: Allowed(q, fn) for q, fn in _TENSOR_REBUILDERS.items()},
    **{q: Allowed(q, _rebuild_from_type) for q in ("torch._tensor._rebuild_from_type_v2", "torch._utils._rebuild_from_type")},
    "torch.Size": Allowed("torch.Size", _size),
    "torch.device": Allowed("torch.device", _device),
    **{f"torch.jit._pickle.{n}": Allowed(f"torch.jit._pickle.{n}", _same_list)
       for n in ("build_intlist", "build_doublelist", "build_boollist", "build_tensorlist", "build_complexlist",
                 "build_strlist", "restore_type_tag")},
    **{f"torch.{name}": ElementType(element) for name, element in _STORAGE_CLASSES.items()},
    "torch.storage.UntypedStorage": ElementType("uint8"),
    **{f"torch.{name}": ElementType(name) for name in ELEMENT_SIZE},
    **{f"torch.{alias}": ElementType(name) for alias, name in _DTYPE_ALIASES.items()},
    **{f"torch.{s}": QScheme(s) for s in ("per_tensor_affine", "per_channel_affine",
                                           "per_channel_affine_float_qparams", "per_tensor_symmetric",
                                           "per_channel_symmetric")},
}

#: Objects BUILD may give state to without effect (a state dict's ``_metadata``, tensor attributes).
BUILD_IGNORED = (dict, TensorRef)


def storage_of(pid: Any, legacy: bool) -> StorageRef | Global:
    """The storage a persistent id names: ``('storage', type, key, location, numel)`` in zip files;
    legacy files add view metadata and ``('module', cls, file, source)`` records of module source."""
    if legacy and isinstance(pid, tuple) and len(pid) == 4 and pid[0] == "module" and isinstance(pid[1], Global):
        return pid[1]
    if not isinstance(pid, tuple) or len(pid) != (6 if legacy else 5) or pid[0] != "storage":
        kind = shown(pid[0]) if isinstance(pid, tuple) and pid else f"<{type(pid).__name__}>"
        raise CorruptFileError(f"unexpected persistent id {kind}: only storages are read")
    _, element, key, _location, numel = pid[:5]
    if not isinstance(element, ElementType):
        raise CorruptFileError(f"storage type is a {type(element).__name__}, not a torch storage class")
    if not isinstance(key, str) or not _KEY.match(key):
        raise CorruptFileError(f"storage key {shown(key)} is not a short alphanumeric name")
    numel = _int(numel, "storage size")
    if numel < 0:
        raise CorruptFileError(f"storage {key} declares {numel} elements")
    view = pid[5] if legacy else None
    if view is None:
        return StorageRef(key, element.name, numel)
    if not isinstance(view, tuple) or len(view) != 3:
        raise CorruptFileError(f"storage {key} has malformed view metadata")
    start, count = _int(view[1], "storage view offset"), _int(view[2], "storage view size")
    if start < 0 or count < 0 or start + count > numel:
        raise CorruptFileError(f"storage view {start}+{count} lies outside storage {key} of {numel} elements")
    return StorageRef(key, element.name, count, start)


@dataclass(frozen=True)
class NamedTensor:
    """A tensor found in the pickle, its ``state_dict()``-style name, and the module class holding it."""

    name: str
    tensor: TensorRef
    owner: str = ""


#: Checkpoint entries that hold the model, in the order they are looked for.
MODEL_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network", "params")
#: Checkpoint entries holding training state, not the model (skipped when they hold containers).
_TRAINING_STATE = re.compile(r"(optimizers?|optimizer_states?|optimizer_state_dict|optim|opt_state|"
                             r"lr_schedulers?|schedulers?|scheduler_state_dict)", re.IGNORECASE)


#: A pickle counts as at least this many bytes when its work budget is set.
_MIN_BUDGET_BYTES = 64 * 1024


def model_tensors(root: Any, module_kind: str = "pickled module",
                  pickle_bytes: int = 0) -> tuple[list[NamedTensor], str]:
    """The model's tensors in module order, and what they were found in (for the listing's roles).

    A checkpoint dict is searched for its model entry first, so optimizer tensors beside it are
    not listed; ``module_kind`` names a root module object ("TorchScript module"). The walk spells
    at most ``MAX_WORK_PER_BYTE`` name characters per byte of the pickle (``pickle_bytes``).
    """
    budget = limits.MAX_WORK_PER_BYTE * max(pickle_bytes, _MIN_BUDGET_BYTES)
    if isinstance(root, dict) and not any(isinstance(v, TensorRef) for v in root.values()):
        for key in MODEL_KEYS:
            if key in root:
                found = _Walk(budget).run(root[key])
                if found:
                    return found, f"the checkpoint's {key!r}"
    if isinstance(root, Placeholder):
        return _Walk(budget).run(root), f"the {module_kind} {root.cls.name}"
    return _Walk(budget).run(root), "the state dict"


def _key_text(key: Any) -> str:
    if isinstance(key, str):
        return key
    return shown(key) if isinstance(key, int) and not isinstance(key, bool) else type(key).__name__


class _Walk:
    """Depth-first through containers and placeholders; each container once (shared, cyclic data)."""

    def __init__(self, budget: int) -> None:
        self.found: list[NamedTensor] = []
        self.seen: set[int] = set()
        self.budget = budget  # name characters left to spell

    def charge(self, name: str) -> None:
        self.budget -= len(name) + 1
        if self.budget < 0:
            raise limits.exceeded("MAX_WORK_PER_BYTE", "tensor-name characters per byte of the pickle")

    def run(self, root: Any) -> list[NamedTensor]:
        self.visit(root, "", "", 0)
        return self.found

    def visit(self, obj: Any, name: str, owner: str, depth: int) -> None:
        self.charge(name)
        if isinstance(obj, TensorRef):
            limits.check("MAX_TENSORS", len(self.found) + 1, "tensors in the pickle")
            self.found.append(NamedTensor(name, obj, owner))
            return
        if not isinstance(obj, (dict, list, tuple, Placeholder)) or id(obj) in self.seen:
            return
        limits.check("MAX_NESTING", depth, "depth of nested containers")
        self.seen.add(id(obj))
        for child_name, child, child_owner in self.children(obj, name, owner):
            self.visit(child, child_name, child_owner, depth + 1)

    @staticmethod
    def children(obj: Any, name: str, owner: str) -> Iterator[tuple[str, Any, str]]:
        def join(key: Any) -> str:
            return f"{name}.{_key_text(key)}" if name else _key_text(key)

        if isinstance(obj, dict):
            if {"state", "param_groups"} <= obj.keys():  # an optimizer's state dict
                return
            for key, value in obj.items():
                if not (isinstance(key, str) and _TRAINING_STATE.fullmatch(key) and isinstance(value, (dict, list))):
                    yield join(key), value, owner
        elif isinstance(obj, (list, tuple)):
            for index, value in enumerate(obj):
                yield join(index), value, owner
        else:
            yield from _Walk.object_children(obj, name, join)

    @staticmethod
    def object_children(obj: Placeholder, name: str, join) -> Iterator[tuple[str, Any, str]]:
        state = obj.state
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):
            state = state[0]  # (dict state, slot state)
        owner = obj.cls.name
        if isinstance(state, dict) and "_parameters" in state and "_modules" in state:
            # nn.Module: parameters, persistent buffers, then submodules, as state_dict() orders them.
            skip = state.get("_non_persistent_buffers_set") or set()
            for group in ("_parameters", "_buffers"):
                if isinstance(state.get(group), dict):
                    for key, value in state[group].items():
                        if not (group == "_buffers" and isinstance(skip, (set, frozenset)) and key in skip):
                            yield join(key), value, owner
            if isinstance(state["_modules"], dict):
                for key, value in state["_modules"].items():
                    yield join(key), value, owner
        elif isinstance(state, dict):  # TorchScript modules and other objects: attributes in order
            for key, value in state.items():
                yield join(key), value, owner
        else:
            yield name, obj.args, owner
            yield name, obj.items, owner
            yield name, obj.entries, owner
