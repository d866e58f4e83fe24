"""What every converter module provides, and the small helpers several of them share.

A converter module is small and declares, at module level:

* ``sniff(probe) -> bool``: stdlib-only look at the first bytes (and, for zip files, member names);
* ``open(path) -> Reader``: a reader that lists tensors in model order and reads one on demand.

Heavy libraries (onnx, h5py, gguf) are imported inside ``open`` so that detection stays cheap.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol, TypeVar

import numpy as np

from ..bank import Producer, TensorInfo
from ..errors import CorruptFileError, FiltergridError, MissingExtraError, TensorNotFoundError, plain
from ..layout import Convention
from ..safeio import ZIP_ERRORS, ModelPath, open_zip, resolve_inside

#: Bytes read from the start of a file for sniffing.
PROBE_BYTES = 4096


@dataclass
class Probe:
    """What sniffers may look at: the first bytes, the size, and for zips the member names."""

    path: ModelPath
    head: bytes = b""
    size: int = 0
    is_dir: bool = False
    notes: list[str] = field(default_factory=list)
    #: Set by a sniffer that recognises this file as a companion of another (a Darknet cfg, an
    #: ncnn weight blob): the model's main file, which is the one to open.
    part_of: ModelPath | None = None

    @classmethod
    def of(cls, path: ModelPath) -> Probe:
        """``path`` may be a :class:`~filtergrid.remote.RemotePath`: one ranged read of its first bytes."""
        if path.is_dir():
            return cls(path, is_dir=True)
        with path.open("rb") as f:
            head = f.read(PROBE_BYTES)
        return cls(path, head, path.stat().st_size)

    @cached_property
    def zip_names(self) -> tuple[str, ...]:
        """Member names when the file is a zip archive (``.pt``, ``.keras``, ``.npz`` all are), else ()."""
        if not self.head.startswith(b"PK"):
            return ()
        try:
            with open_zip(self.path) as z:
                return tuple(z.namelist())
        except ZIP_ERRORS as e:
            self.notes.append(f"zip: {plain(e)}")
            return ()


def sibling_pair(path, first: str, second: str):
    """``(the first-suffix file, the second-suffix file)`` of one stem when ``path`` is one of them and
    the other lies beside it (a Darknet .cfg and .weights, an ncnn .param and .bin), else None."""
    suffix = path.suffix.lower()
    if suffix not in (first, second):
        return None
    other = path.with_suffix(second if suffix == first else first)
    if not other.is_file():
        return None
    return (path, other) if suffix == first else (other, path)


def companion_files(path: ModelPath, first: str, second: str, kind: str, missing: str) -> tuple[ModelPath, ModelPath]:
    """The two files of a model kept as a pair (see :func:`sibling_pair`), each resolved inside their
    folder; ``missing`` is the error when ``path`` has no companion beside it."""
    pair = sibling_pair(path, first, second)
    if pair is None:
        raise FiltergridError(missing)
    one, other = (resolve_inside(path.parent, p.name, f"{kind} file") for p in pair)
    return one, other


class Reader(Protocol):
    """An open model: its tensors in model order, and one tensor's stored values on demand.

    A reader may also have ``producer() -> Producer | None``: what the file records about the
    program that wrote it, from what the reader already parsed (no extra pass over the file).
    Call it through :func:`producer_of`, which gives None for readers without one.
    """

    def tensors(self) -> list[TensorInfo]: ...

    def read(self, name: str, rows: int | None = None) -> np.ndarray:
        """Stored values of ``name`` (decoded/dequantized to a NumPy dtype, not yet float32 or laid out).

        ``rows``, when given, allows reading only the first rows along axis 0 (heatmaps of huge
        embeddings); a reader may ignore it (and return every row), but never returns fewer than
        ``min(rows, shape[0])``. A name the listing does not hold raises :class:`TensorNotFoundError`
        (use :func:`lookup`). tests/test_conformance.py checks this contract for every format.
        """
        ...

    def close(self) -> None: ...


def producer_of(reader: object) -> Producer | None:
    """The reader's ``producer()``: what wrote the file, or None (not recorded or not read by this format)."""
    method = getattr(reader, "producer", None)
    return written_by(method) if callable(method) else None


def written_by(read: Callable[[], Producer | None]) -> Producer | None:
    """``read()``, or None when the writer fields are damaged: they are no reason to refuse weights
    that read fine."""
    try:
        return read()
    except CorruptFileError:
        return None


def text_value(mapping: object, key: str) -> str:
    """``mapping[key]`` when the (untrusted, parsed) mapping holds text or a number there, else ""."""
    value = mapping.get(key) if isinstance(mapping, dict) else None
    return str(value) if isinstance(value, (str, int, float)) and not isinstance(value, bool) else ""


_T = TypeVar("_T")


def lookup(table: Mapping[str, _T], name: str) -> _T:
    """``table[name]`` for ``Reader.read``: an unknown name is a :class:`TensorNotFoundError`, never a KeyError."""
    try:
        return table[name]
    except KeyError:
        raise not_found(name) from None


def not_found(name: str) -> TensorNotFoundError:
    """The error for a name the file does not hold (shown escaped and cut: names are untrusted)."""
    shown = name[:200] + ("..." if len(name) > 200 else "")
    return TensorNotFoundError(f"no tensor named {shown!r} in this file")


def require(module: str, extra: str):
    """Import an optional dependency or fail naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(
            f"this format needs the Python package {module.split('.')[0]!r}: pip install 'filtergrid[{extra}]'"
        ) from None


_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """Sort key where ``layer.2`` comes before ``layer.10`` and ``W1`` before ``W2``."""
    return tuple(int(p) if p.isdigit() else p for p in _DIGITS.split(name))


#: Names that are never a first layer: biases, normalization and its statistics, quantization
#: parameters, and the learned tokens / position tables of transformers (``cls_token`` (1, 1, 768)).
_NOT_A_WEIGHT = re.compile(
    r"(^|[._/])(bias|b\d*|beta|gamma|running_mean|running_var|num_batches_tracked|moving_mean|"
    r"moving_variance|scale|zero_point|position_ids|inv_freq|cls_token|mask_token|dist_token|reg_token|"
    r"register_tokens|pos_embed\w*|position_embeddings?)$"
    r"|(^|[._/])(bn\d*|norm\w*|ln\w*|layernorm\w*|batchnorm\w*)[._/]",
    re.IGNORECASE,
)


def is_weight(name: str, shape: tuple[int, ...]) -> bool:
    """A first-layer candidate by name and shape: rank >= 2, not a bias, norm or running statistic.

    A rank >= 3 tensor with one axis over 1 (``alpha`` 1x1475x1x1 of a metric) is a per-channel
    parameter shaped for broadcasting, unless it is named like a layer's weight (LPIPS ``lin.weight``).
    """
    bare = re.sub(r":\d+$", "", name)  # Keras/TF variable names end in ":0"
    if len(shape) < 2 or math.prod(shape) <= 1 or _NOT_A_WEIGHT.search(bare):
        return False
    broadcast = len(shape) >= 3 and sum(d > 1 for d in shape) <= 1
    return not broadcast or bool(_LAYER_WEIGHT.search(bare))


def is_embedding(name: str, shape: tuple[int, ...]) -> bool:
    """A token/position embedding table: a lookup matrix, shown as a heatmap rather than as images."""
    lowered = name.lower()
    return len(shape) == 2 and ("embed" in lowered or "wte" in lowered or "wpe" in lowered) and "patch" not in lowered


def listing_by_name(entries: list[tuple[str, tuple[int, ...], str]], convention: Convention,
                    why: str) -> list[TensorInfo]:
    """TensorInfos for a flat name -> tensor store (safetensors, npz, state dicts) in natural name order.

    Where some names end in ``weight``/``kernel`` (every PyTorch state dict), only those are layer
    weights: ``cls_token`` (1, 1, 768) or ``pos_embed`` are parameters, not filters.
    """
    infos = [tensor_info(name, shape, dtype, convention.layout_for(tuple(shape)), convention.flatten, why)
             for name, shape, dtype in sorted(entries, key=lambda e: natural_key(e[0]))]
    return prefer_layer_weights(infos)


#: A layer's weight by name: ``weight``, ``weight_ih_l0`` (LSTM input), ``weight_v``/``weight_orig``
#: (weight norm, pruning), ``kernel``; not ``weight_hh_*`` (recurrent) nor ``weight_g`` (a norm scale).
_LAYER_WEIGHT = re.compile(r"(^|[._/])(weight(?!_hh|_g$)\w*|kernel)(:\d+)?$", re.IGNORECASE)


def prefer_layer_weights(infos: list[TensorInfo]) -> list[TensorInfo]:
    """Demote candidates that are not named like a layer's weight when the store names its weights."""
    if not any(i.candidate and _LAYER_WEIGHT.search(i.name) for i in infos):
        return infos
    return [i if not i.candidate or _LAYER_WEIGHT.search(i.name)
            else dataclasses.replace(i, candidate=False, role="a parameter, not a layer's weight")
            for i in infos]


def tensor_info(name: str, shape, dtype: str, layout: str, flatten: str, why: str) -> TensorInfo:
    """A listing entry with the shared candidate rules: weights are candidates, embeddings are heatmaps."""
    shape = tuple(shape)
    if is_embedding(name, shape) and re.search(r"position|token_type|wpe|pos_emb", name, re.IGNORECASE):
        return TensorInfo(name, shape, dtype, "matrix", flatten, "a position/type embedding, not the input layer", False)
    if is_embedding(name, shape):
        return TensorInfo(name, shape, dtype, "matrix", flatten, f"{why}; an embedding table, shown as a heatmap", True)
    if is_weight(name, shape):
        return TensorInfo(name, shape, dtype, layout, flatten, why, True)
    return TensorInfo(name, shape, dtype, layout, flatten, "not a weight (rank < 2, bias or normalization)", False)
