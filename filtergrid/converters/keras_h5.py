"""Keras weights in HDF5: Keras 2 ``model.save('x.h5')`` / ``save_weights`` files and Keras 3 ``.weights.h5``.

Keras 2 stores layer order in a ``layer_names`` attribute (``model_weights/`` for whole models, the
root for weight files), because HDF5 lists groups alphabetically (``conv2d_10`` before ``conv2d_2``);
each layer's ``weight_names`` attribute orders its variables. Keras 3 writes
``layers/<path>/vars/<i>`` with the layer's real name as an attribute of ``vars``; its order comes
from the ``config.json`` beside it in a ``.keras`` archive (see :mod:`keras_zip`).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

import numpy as np

from .. import dtypes, limits
from ..bank import Producer, TensorInfo
from ..errors import CorruptFileError, FiltergridError, UnreadableFeatureError, UnsafeFileError, plain
from ..firstlayer import order_by_evidence
from ..layout import CHANNELS_LAST
from ..remote import RemotePath
from . import hdf5_heaps, unsupported
from .base import Probe, lookup, natural_key, tensor_info

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

#: Most a filtered (compressed) HDF5 dataset may expand over its stored bytes: deflate's maximum.
MAX_FILTER_EXPANSION = 1032

#: Largest chunk accepted for any dataset, whatever its size (bigger chunks must not exceed the dataset).
MAX_CHUNK_SLACK = 1 << 20

#: What h5py raises when libhdf5 meets damaged structures (it maps HDF5's error classes onto these).
HDF5_ERRORS = (OSError, RuntimeError, KeyError, ValueError)


@contextlib.contextmanager
def hdf5_errors() -> Iterator[None]:
    """libhdf5's complaints about a damaged file as one CorruptFileError with its reason."""
    try:
        yield
    except FiltergridError:
        raise
    except HDF5_ERRORS as e:
        raise CorruptFileError(f"its HDF5 structure is damaged ({plain(e)})") from None

#: Stored layout of a layer's kernel by Keras class (others follow the channels-last convention).
KERNEL_LAYOUTS = {
    "DepthwiseConv2D": "HWIM", "SeparableConv2D": "HWIM", "Conv2DTranspose": "HWOI",
    "Conv2D": "HWIO", "Conv1D": "KIO", "Dense": "IO", "Embedding": "matrix",
}


def sniff(probe: Probe) -> bool:
    """HDF5 signature at offset 0 or at a user-block boundary (512, 1024, 2048)."""
    return any(probe.head[o:o + 8] == HDF5_MAGIC for o in (0, 512, 1024, 2048))


@dataclass(frozen=True)
class Variable:
    name: str
    dataset: str
    layer: str
    layer_class: str


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _scalar_text(value) -> str:
    """An attribute that should be one string; anything else (an array, a number) counts as not recorded."""
    return _text(value) if isinstance(value, (str, bytes)) else ""


def _names(attr) -> list[str]:
    values = attr.ravel() if isinstance(attr, np.ndarray) else [attr]
    limits.check("MAX_TENSORS", len(values), "names in one attribute")
    return [_text(v) for v in values]


class H5Tree:
    """An open HDF5 file walked one link at a time, each object's heaps checked before h5py touches it.

    HDF5 links can point into other files (external links); filtergrid reads nothing outside the
    model file, so such a link is refused before HDF5 opens its target. Soft links stay in the
    file and are followed, at most MAX_NESTING of them per lookup. Before an object is opened (or
    its attributes read) :class:`hdf5_heaps.HeapGuard` checks the global heaps its header points into.
    """

    def __init__(self, file, raw: BinaryIO):
        import h5py

        self.file = file
        plist = file.id.get_create_plist()
        offset_size, length_size = plist.get_sizes()
        read_at, size = hdf5_heaps.reader(raw)
        self._guard = hdf5_heaps.HeapGuard(read_at, size, base=plist.get_userblock(),
                                           offset_size=offset_size, length_size=length_size)
        self._guard.check_object(h5py.h5o.get_info(file.id).addr)

    def child(self, group, path: str, hops: list[int] | None = None):
        """The object at ``path`` below ``group`` (None if absent); ``hops`` counts soft links followed."""
        import h5py

        hops = [0] if hops is None else hops
        node = group.file if path.startswith("/") else group
        for part in (p for p in path.split("/") if p not in ("", ".")):
            if not isinstance(node, h5py.Group):
                return None
            node = self._link(node, part, hops)
            if node is None:
                return None
        return node

    def _link(self, group, part: str, hops: list[int]):
        import h5py

        link = group.get(part, getlink=True)
        if link is None:
            return None
        if isinstance(link, h5py.ExternalLink):
            raise UnsafeFileError(f"{group.name.rstrip('/')}/{part} is a link into another file "
                                  f"({link.filename!r}); filtergrid reads nothing outside the model file")
        if isinstance(link, h5py.SoftLink):
            hops[0] += 1
            if hops[0] > limits.MAX_NESTING:
                raise limits.exceeded("MAX_NESTING", "soft links followed to find one object", hops[0])
            return self.child(group, link.path, hops)
        self._guard.check_object(group.id.links.get_info(part.encode()).u)
        return group[part]

    def attr(self, obj, name: str, default=None):
        """Attribute ``name`` of ``obj`` (``default`` if absent), once the heaps it points into are checked."""
        self._guard.check_object(address(obj))
        return obj.attrs.get(name, default)


def address(obj) -> int:
    """The object's header address: the one identity of an object reachable by many links."""
    import h5py

    return h5py.h5o.get_info(obj.id).addr


def checked_dataset(ds, name: str):
    """``ds`` once its data is known to be numbers stored inside this file, in the bytes it declares.

    The type is checked first: h5py's creation property list converts the fill value, which for a
    variable-length type means reading a global heap.
    """
    if ds.dtype.kind not in "fiub":
        raise UnreadableFeatureError(f"dataset {name!r} has non-numeric type {ds.dtype}")
    if ds.external:
        raise UnsafeFileError(f"dataset {name!r} keeps its data in other files ({ds.external[0][0]!r}); "
                              "filtergrid reads nothing outside the model file")
    if ds.is_virtual:
        raise UnsafeFileError(f"dataset {name!r} is a virtual dataset mapping other files")
    shape = dtypes.check_shape(ds.shape)
    need = math.prod(shape) * ds.dtype.itemsize
    _check_storage(ds, name, need)
    return ds


def _check_storage(ds, name: str, need: int) -> None:
    """The stored bytes can hold the ``need`` bytes declared, and no chunk is bigger than the dataset
    justifies (libhdf5 allocates and inflates a whole chunk to read any part of it)."""
    stored = ds.id.get_storage_size()
    expansion = MAX_FILTER_EXPANSION if ds.id.get_create_plist().get_nfilters() else 1
    if need > stored * expansion:
        raise CorruptFileError(f"dataset {name!r} declares {list(ds.shape)} {ds.dtype} = {need:,} bytes "
                               f"but the file stores {stored:,} bytes of it")
    chunk = math.prod(ds.chunks) * ds.dtype.itemsize if ds.chunks else 0
    if chunk > max(need, MAX_CHUNK_SLACK):
        raise CorruptFileError(f"dataset {name!r} ({need:,} bytes) is stored in chunks of {chunk:,} bytes, "
                               "which libhdf5 would allocate and inflate whole to read it")


def layer_classes(config_json: str | bytes | None) -> tuple[list[str], dict[str, str]]:
    """(layer names in model order, name -> class) from a Keras model config (nested models flattened)."""
    if not config_json:
        return [], {}
    limits.check("MAX_CONFIG_BYTES", len(config_json), "model config (characters)")
    order: list[str] = []
    classes: dict[str, str] = {}

    def walk(node, depth: int) -> None:
        if depth > limits.MAX_NESTING:
            raise limits.exceeded("MAX_NESTING", "model config nesting", depth)
        if not isinstance(node, dict):
            return
        config = node.get("config")
        layers = config.get("layers") if isinstance(config, dict) else None
        if isinstance(layers, list):
            for layer in layers:
                walk(layer, depth + 1)
        elif isinstance(config, dict) and isinstance(config.get("name"), str):
            order.append(config["name"])
            classes[config["name"]] = str(node.get("class_name", ""))

    try:
        walk(json.loads(config_json), 0)
    except (ValueError, RecursionError):
        raise CorruptFileError("model config is not valid JSON") from None
    return order, classes


def _sorted_keys(group) -> list[str]:
    """Member names in natural order; names that are not UTF-8 (h5py gives bytes) are skipped:
    Keras never writes them."""
    return sorted((key for key in group if isinstance(key, str)), key=natural_key)


def keras2_variables(tree: H5Tree, root, classes: dict[str, str]) -> list[Variable]:
    """Keras 2 layout: ``layer_names`` then each layer's ``weight_names``, in that order.

    Each layer is its own group: names that reach one group through soft links would multiply its
    weights (4000 names x 4000 weights from a few KB of links), so they are refused.
    """
    out: list[Variable] = []
    layers = _names(tree.attr(root, "layer_names"))
    if len(set(layers)) != len(layers):
        raise CorruptFileError("layer_names lists a layer more than once")
    groups: dict[int, str] = {}
    for layer in layers:
        group = tree.child(root, layer)
        if group is None or not hasattr(group, "attrs"):
            raise CorruptFileError(f"layer {layer!r} is listed in layer_names but has no group")
        if groups.setdefault(address(group), layer) != layer:
            raise CorruptFileError(f"layers {groups[address(group)]!r} and {layer!r} are the same HDF5 group")
        weights = _names(tree.attr(group, "weight_names", np.array([])))
        limits.check("MAX_TENSORS", len(out) + len(weights), "weights listed by layer_names")
        out += [Variable(weight, f"{group.name}/{weight}", layer, classes.get(layer, "")) for weight in weights]
    return out


#: Keras 1 named weights ``<layer>_W`` / ``<layer>_b``; Keras 2 names them ``kernel:0`` / ``bias:0``.
_KERAS1_WEIGHT = re.compile(r"_[Wb](:0)?$")


def _is_keras1(tree: H5Tree, f, variables: list[Variable]) -> bool:
    """``keras_version`` 1.x, or (Keras 1.0/1.1 wrote none) Keras 1 weight names (read through the heap guard)."""
    version = _text(tree.attr(f, "keras_version", ""))
    return version.startswith("1.") or (not version and any(_KERAS1_WEIGHT.search(v.name) for v in variables))


def keras3_variables(tree: H5Tree, order: list[str], classes: dict[str, str]) -> list[Variable]:
    """Keras 3 layout: every ``.../vars`` group is a layer; ordered by ``order`` when known.

    Functional and sequential models keep their layers under ``layers/``; a subclassed model keeps
    them under its attribute names at the root (``block1/layers/conv2d/vars/0``), some beside a
    ``layers/`` group of its own, so the whole file is walked. Each group is
    visited once, however many links reach it (hard links can make a DAG with 2^63 paths).
    """
    found: list[tuple[str, str]] = []  # (layer name, vars group path)
    seen: set[int] = set()

    def visit(group, depth: int) -> None:
        if depth > limits.MAX_NESTING:
            raise limits.exceeded("MAX_NESTING", "HDF5 groups nested", depth)
        for key in _sorted_keys(group):
            node = tree.child(group, key)
            if not hasattr(node, "keys") or address(node) in seen:
                continue
            seen.add(address(node))
            if key == "optimizer" and depth == 0:  # optimizer slots mirror the kernels' shapes
                continue
            if key == "vars":
                name = tree.attr(node, "name", group.name.rsplit("/", 1)[-1])
                found.append((_text(name), f"{group.name}/{key}"))
            else:
                visit(node, depth + 1)

    visit(tree.file, 0)  # layers/ and, in a subclassed model, the attribute groups beside it
    rank = {name: i for i, name in enumerate(order)}
    found.sort(key=lambda item: rank.get(item[0], len(rank)))  # stable: natural order for the rest
    out = []
    for layer, path in found:
        group = tree.child(tree.file, path)
        for key in _sorted_keys(group):
            out.append(Variable(f"{layer}/vars/{key}", f"{path}/{key}", layer, classes.get(layer, "")))
    return out


class KerasH5Reader:
    """Keras weights in an HDF5 file; ``fileobj`` (a seekable view of a ``.keras`` member) or ``path``."""

    def __init__(self, path: Path | None = None, *, fileobj: BinaryIO | None = None, config_json: str | None = None):
        import h5py

        # kept open (closed by close()): the heap guard reads headers as objects are reached
        if fileobj is None and isinstance(path, RemotePath):
            fileobj = path.open("rb")  # h5py reads a remote file through its file object, by ranges
        raw = fileobj if fileobj is not None else io.open(path, "rb")  # type: ignore[arg-type]  # noqa: SIM115
        self._raw = cast(BinaryIO, raw)
        with self._errors():
            try:
                self._file = h5py.File(fileobj if fileobj is not None else path, "r")  # libhdf5 reads a path itself
            except OSError as e:  # libhdf5's "file signature not found", "truncated file", ...
                self._raw.close()
                raise CorruptFileError(f"not a readable HDF5 file ({plain(e)})") from None
            try:
                self._tree = H5Tree(self._file, self._raw)
                self._variables = self._list_variables(config_json)
                self._producer = self._written_by()
            except BaseException:
                self.close()
                raise

    def _errors(self) -> contextlib.AbstractContextManager:
        """Where damaged-file exceptions come from: libhdf5 here, also zipfile in a .keras archive."""
        return hdf5_errors()

    def _list_variables(self, config_json: str | None) -> dict[str, Variable]:
        tree, f = self._tree, self._file
        model_config = config_json or _text(tree.attr(f, "model_config", ""))
        order, classes = layer_classes(model_config)
        model_weights = tree.child(f, "model_weights")
        if "layer_names" in f.attrs:
            self.variant, variables = "Keras 2 weights", keras2_variables(tree, f, classes)
        elif model_weights is not None and "layer_names" in model_weights.attrs:
            self.variant, variables = "Keras 2 model", keras2_variables(tree, model_weights, classes)
        elif hasattr(tree.child(f, "layers"), "keys") or any(hasattr(tree.child(f, f"{k}/vars"), "keys")
                                                              for k in f):
            # Keras 3: a functional or sequential model keeps layers under layers/; a subclassed one
            # under its attribute names (block1/layers/conv2d/vars/0)
            self.variant, variables = "Keras 3 weights", keras3_variables(tree, order, classes)
        else:
            raise CorruptFileError("HDF5 file but no Keras weights (no layer_names attribute, no layers/ or vars/ groups)")
        if self.variant.startswith("Keras 2") and _is_keras1(tree, f, variables):
            raise unsupported.refusal(*unsupported.KERAS1)
        self._ordered = bool(order) or self.variant.startswith("Keras 2")
        return {v.name: v for v in variables}

    def _written_by(self) -> Producer | None:
        """``keras_version`` and ``backend``, attributes of a Keras 2/3 full model or legacy weights file."""
        version, backend = (_scalar_text(self._tree.attr(self._file, key, "")) for key in ("keras_version", "backend"))
        return Producer.recorded("keras" if version else "", version, details=(f"backend {backend}" if backend else "",))

    def producer(self) -> Producer | None:
        return self._producer

    def tensors(self) -> list[TensorInfo]:
        with self._errors():
            return self._listing()

    def _listing(self) -> list[TensorInfo]:
        why = ("first kernel in layer order" if self._ordered
               else "first kernel in natural layer-name order (a bare .weights.h5 stores no layer order)")
        infos = []
        for var in self._variables.values():
            ds = self._dataset(var)
            shape = tuple(ds.shape)
            if "depthwise_kernel" in var.name:
                layout = "HWIM"
            elif var.layer_class in KERNEL_LAYOUTS and len(shape) >= 2:
                layout = KERNEL_LAYOUTS[var.layer_class]
            else:
                layout = CHANNELS_LAST.layout_for(shape)
            role = f"{why}: layer {var.layer!r}" + (f" ({var.layer_class})" if var.layer_class else "")
            infos.append(tensor_info(var.name, shape, str(ds.dtype), layout, CHANNELS_LAST.flatten, role))
        if self._ordered:
            return infos
        return order_by_evidence(infos, stored_as="natural layer-name order (a bare .weights.h5 stores no layer order)")

    def _dataset(self, var: Variable):
        import h5py

        ds = self._tree.child(self._file, var.dataset)
        if not isinstance(ds, h5py.Dataset):  # a group or a committed datatype has a name too
            raise CorruptFileError(f"weight {var.name!r} names no dataset ({var.dataset!r})")
        return ds

    def read(self, name: str, rows: int | None = None) -> np.ndarray:
        with self._errors():
            ds = checked_dataset(self._dataset(lookup(self._variables, name)), name)
            return np.asarray(ds[:rows] if rows is not None and ds.ndim else ds[()])

    def close(self) -> None:
        self._file.close()
        self._raw.close()


def open(path: Path) -> KerasH5Reader:  # noqa: A001 - the registry's verb
    return KerasH5Reader(path)
