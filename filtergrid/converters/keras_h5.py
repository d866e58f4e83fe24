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

import numpy as np

from .. import dtypes, limits
from ..bank import TensorInfo
from ..errors import CorruptFileError, FiltergridError, UnsafeFileError
from ..layout import CHANNELS_LAST
from ..remote import RemotePath
from . import hdf5_heaps, unsupported
from .base import Probe, lookup, natural_key, tensor_info

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

#: Most a filtered (compressed) HDF5 dataset may expand over its stored bytes: deflate's maximum.
MAX_FILTER_EXPANSION = 1032

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
        detail = " ".join(str(e).split())[:200] or "no detail"
        raise CorruptFileError(f"damaged HDF5 structure ({type(e).__name__}: {detail})") from None

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


def _names(attr) -> list[str]:
    values = attr.ravel() if isinstance(attr, np.ndarray) else [attr]
    if len(values) > limits.MAX_TENSORS:
        raise CorruptFileError(f"attribute lists {len(values):,} names, over MAX_TENSORS")
    return [_text(v) for v in values]


def child(group, path: str, depth: int = 0):
    """The object at ``path`` below ``group`` (None if absent), walked one link at a time.

    HDF5 links can point into other files (external links); filtergrid reads nothing outside the
    model file, so such a link is refused before HDF5 opens its target. Soft links stay in the
    file and are followed, at most MAX_NESTING deep.
    """
    import h5py

    if depth > limits.MAX_NESTING:
        raise CorruptFileError(f"soft links nest deeper than MAX_NESTING={limits.MAX_NESTING}")
    node = group.file if path.startswith("/") else group
    for part in (p for p in path.split("/") if p not in ("", ".")):
        if not isinstance(node, h5py.Group):
            return None
        link = node.get(part, getlink=True)
        if link is None:
            return None
        if isinstance(link, h5py.ExternalLink):
            raise UnsafeFileError(f"{node.name.rstrip('/')}/{part} is a link into another file "
                                  f"({link.filename!r}); filtergrid reads nothing outside the model file")
        node = child(node, link.path, depth + 1) if isinstance(link, h5py.SoftLink) else node[part]
        if node is None:
            return None
    return node


def checked_dataset(ds, name: str):
    """``ds`` once its data is known to be numbers stored inside this file, in the bytes it declares."""
    if ds.external:
        raise UnsafeFileError(f"dataset {name!r} keeps its data in other files ({ds.external[0][0]!r}); "
                              "filtergrid reads nothing outside the model file")
    if ds.is_virtual:
        raise UnsafeFileError(f"dataset {name!r} is a virtual dataset mapping other files")
    if ds.dtype.kind not in "fiub":
        raise CorruptFileError(f"dataset {name!r} has non-numeric type {ds.dtype}")
    shape = dtypes.check_shape(ds.shape)
    need = math.prod(shape) * ds.dtype.itemsize
    stored = ds.id.get_storage_size()
    expansion = MAX_FILTER_EXPANSION if ds.id.get_create_plist().get_nfilters() else 1
    if need > stored * expansion:
        raise CorruptFileError(f"dataset {name!r} declares {list(shape)} {ds.dtype} = {need:,} bytes "
                               f"but the file stores {stored:,} bytes of it")
    return ds


def layer_classes(config_json: str | bytes | None) -> tuple[list[str], dict[str, str]]:
    """(layer names in model order, name -> class) from a Keras model config (nested models flattened)."""
    if not config_json:
        return [], {}
    order: list[str] = []
    classes: dict[str, str] = {}

    def walk(node, depth: int) -> None:
        if depth > limits.MAX_NESTING or not isinstance(node, dict):
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


def keras2_variables(root, classes: dict[str, str]) -> list[Variable]:
    """Keras 2 layout: ``layer_names`` then each layer's ``weight_names``, in that order."""
    out = []
    layers = _names(root.attrs["layer_names"])
    if len(set(layers)) != len(layers):
        raise CorruptFileError("layer_names lists a layer more than once")
    for layer in layers:
        group = child(root, layer)
        if group is None or not hasattr(group, "attrs"):
            raise CorruptFileError(f"layer {layer!r} is listed in layer_names but has no group")
        for weight in _names(group.attrs.get("weight_names", np.array([]))):
            out.append(Variable(weight, f"{group.name}/{weight}", layer, classes.get(layer, "")))
    return out


#: Keras 1 named weights ``<layer>_W`` / ``<layer>_b``; Keras 2 names them ``kernel:0`` / ``bias:0``.
_KERAS1_WEIGHT = re.compile(r"_[Wb](:0)?$")


def _is_keras1(f, variables: list[Variable]) -> bool:
    """``keras_version`` 1.x, or (Keras 1.0/1.1 wrote none) Keras 1 weight names."""
    version = _text(f.attrs["keras_version"]) if "keras_version" in f.attrs else ""
    return version.startswith("1.") or (not version and any(_KERAS1_WEIGHT.search(v.name) for v in variables))


def keras3_variables(f, order: list[str], classes: dict[str, str]) -> list[Variable]:
    """Keras 3 layout: every ``.../vars`` group is a layer; ordered by ``order`` when known.

    Functional and sequential models keep their layers under ``layers/``; a subclassed model keeps
    them under its attribute names at the root (``block1/layers/conv2d/vars/0``).
    """
    found: list[tuple[str, str]] = []  # (layer name, vars group path)

    def visit(group, depth: int) -> None:
        if depth > limits.MAX_NESTING:
            raise CorruptFileError(f"layers nest deeper than MAX_NESTING={limits.MAX_NESTING}")
        for key in _sorted_keys(group):
            node = child(group, key)
            if not hasattr(node, "keys"):
                continue
            if key == "optimizer" and depth == 0:  # optimizer slots mirror the kernels' shapes
                continue
            if key == "vars":
                found.append((_text(node.attrs.get("name", group.name.rsplit("/", 1)[-1])), f"{group.name}/{key}"))
            else:
                visit(node, depth + 1)

    layers = child(f, "layers")
    visit(layers if hasattr(layers, "keys") else f, 0)
    rank = {name: i for i, name in enumerate(order)}
    found.sort(key=lambda item: rank.get(item[0], len(rank)))  # stable: natural order for the rest
    out = []
    for layer, path in found:
        group = child(f, path)
        for key in _sorted_keys(group):
            out.append(Variable(f"{layer}/vars/{key}", f"{path}/{key}", layer, classes.get(layer, "")))
    return out


class KerasH5Reader:
    def __init__(self, path: Path | None = None, *, fileobj=None, config_json: str | None = None):
        import h5py

        with self._errors():
            if fileobj is None and isinstance(path, RemotePath):
                fileobj = path.open("rb")  # h5py reads a remote file through its file object, by ranges
            if fileobj is not None:
                hdf5_heaps.check_file(fileobj)
            else:
                with io.open(path, "rb") as raw:
                    hdf5_heaps.check_file(raw)
            try:
                self._file = h5py.File(fileobj if fileobj is not None else path, "r")
            except OSError as e:  # libhdf5's "file signature not found", "truncated file", ...
                raise CorruptFileError(f"not a readable HDF5 file ({' '.join(str(e).split())[:200]})") from None
            self._variables = self._list_variables(config_json)

    def _errors(self) -> contextlib.AbstractContextManager:
        """Where damaged-file exceptions come from: libhdf5 here, also zipfile in a .keras archive."""
        return hdf5_errors()

    def _list_variables(self, config_json: str | None) -> dict[str, Variable]:
        f = self._file
        model_config = config_json or (_text(f.attrs["model_config"]) if "model_config" in f.attrs else None)
        order, classes = layer_classes(model_config)
        model_weights = child(f, "model_weights")
        if "layer_names" in f.attrs:
            self.variant, variables = "Keras 2 weights", keras2_variables(f, classes)
        elif model_weights is not None and "layer_names" in model_weights.attrs:
            self.variant, variables = "Keras 2 model", keras2_variables(model_weights, classes)
        elif hasattr(child(f, "layers"), "keys") or any(hasattr(child(f, f"{k}/vars"), "keys") for k in f):
            # Keras 3: a functional or sequential model keeps layers under layers/; a subclassed one
            # under its attribute names (block1/layers/conv2d/vars/0)
            self.variant, variables = "Keras 3 weights", keras3_variables(f, order, classes)
        else:
            raise CorruptFileError("HDF5 file but no Keras weights (no layer_names attribute, no layers/ or vars/ groups)")
        if self.variant.startswith("Keras 2") and _is_keras1(f, variables):
            raise unsupported.refusal(*unsupported.KERAS1)
        self._ordered = bool(order) or self.variant.startswith("Keras 2")
        return {v.name: v for v in variables}

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
        return infos

    def _dataset(self, var: Variable):
        import h5py

        ds = child(self._file, var.dataset)
        if not isinstance(ds, h5py.Dataset):  # a group or a committed datatype has a name too
            raise CorruptFileError(f"weight {var.name!r} names no dataset ({var.dataset!r})")
        return ds

    def read(self, name: str, rows: int | None = None) -> np.ndarray:
        with self._errors():
            ds = checked_dataset(self._dataset(lookup(self._variables, name)), name)
            return np.asarray(ds[:rows] if rows is not None and ds.ndim else ds[()])

    def close(self) -> None:
        self._file.close()


def open(path: Path) -> KerasH5Reader:  # noqa: A001 - the registry's verb
    return KerasH5Reader(path)
