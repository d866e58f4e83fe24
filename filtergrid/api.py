"""The public verbs: open a model, list its tensors, load its first layer, render, convert."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator

import numpy as np

from . import converters, export, limits
from .bank import FilterBank, Provenance, TensorInfo
from .converters.base import producer_of
from .errors import CorruptFileError, FiltergridError, LimitError, TensorNotFoundError, plain
from .firstlayer import dense_image, guessed_image
from .layout import guess_layout, parse_image_shape, place
from .remote import RemotePath
from .safeio import ModelPath, model_path


@contextlib.contextmanager
def _guarded(path: ModelPath, format: str | None) -> Iterator[None]:
    """Every failure inside a converter leaves as a FiltergridError naming the file and format."""
    try:
        yield
    except FiltergridError as e:
        _placed(e, path, format)
        raise
    except MemoryError:
        raise LimitError("ran out of memory decoding the file", path=str(path), format=format) from None
    except Exception as e:  # a safety net: converters raise typed errors (tests fail when this catches)
        if os.environ.get("FILTERGRID_DEBUG"):
            raise
        raise _placed(CorruptFileError(f"{plain(e)} (filtergrid did not expect this; FILTERGRID_DEBUG=1 shows "
                                       "where)"), path, format) from None


def _placed(error: FiltergridError, path: ModelPath, format: str | None) -> FiltergridError:
    """``error`` naming the file and its format, the way every format words it (errors.CorruptFileError)."""
    if error.path is None:
        error.path, error.format = str(path), error.format or format
    fmt = converters.BY_NAME.get(error.format or "")
    error.kind = error.kind or (fmt.kind if fmt else None)
    error.args = (error._compose(),)
    return error


def _existing(path: str | os.PathLike | RemotePath) -> ModelPath:
    p = model_path(path)
    if isinstance(p, RemotePath):
        if not p.is_dir():
            p.stat()  # a missing or refused remote file is one line now (HTTP 404, access denied)
        return p
    if not p.exists() and p.with_name(p.name + ".index").is_file():
        return p.with_name(p.name + ".index")  # a TensorFlow checkpoint named by its prefix
    if not p.exists():
        raise FiltergridError(f"no such file: {p}")
    if not (p.is_file() or p.is_dir()):
        raise FiltergridError(f"not a regular file: {p}")
    return p


@contextlib.contextmanager
def open_model(path: str | os.PathLike | RemotePath, format: str | None = None):
    """Yield ``(format_name, reader)`` for a model file or folder; closes the reader afterwards."""
    p = _existing(path)
    with _guarded(p, format):
        fmt = converters.resolve(p, format)
    with _guarded(p, fmt.name):
        reader = fmt.load_module().open(p)
    try:
        with _guarded(p, fmt.name):
            yield fmt.name, reader
    finally:
        with contextlib.suppress(Exception):
            reader.close()


def tensors(path: str | os.PathLike, format: str | None = None) -> list[TensorInfo]:
    """Every tensor of the model in model order; ``candidate`` marks first-layer candidates."""
    with open_model(path, format) as (_, reader):
        return reader.tensors()


def choose(infos: list[TensorInfo], tensor: str | None) -> tuple[TensorInfo, str]:
    """The tensor to show and why: the one named, else the first candidate in model order."""
    if tensor is not None:
        for info in infos:
            if info.name == tensor:
                return info, "named with --tensor"
        names = [i.name for i in infos if i.candidate] or [i.name for i in infos]
        shown = ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "")
        raise TensorNotFoundError(f"no tensor named {tensor!r}; candidates: {shown or 'none'}")
    for info in infos:
        if info.candidate:
            return info, info.role or "first weight in model order"
    raise TensorNotFoundError(
        f"no first-layer weight found among {len(infos)} tensors"
        + (f" ({', '.join(i.name for i in infos[:8])})" if infos else "")
    )


def load(
    path: str | os.PathLike | RemotePath,
    tensor: str | None = None,
    *,
    layout: str | None = None,
    image_shape: str | tuple[int, int, int] | None = None,
    flatten: str | None = None,
    format: str | None = None,
) -> FilterBank:
    """The first layer (or ``tensor``) of a model as a canonical :class:`FilterBank`.

    ``layout`` overrides how the stored tensor is read (``OIHW``, ``HWIO``, ``IO``, ``matrix``, ...);
    ``image_shape`` (``"32x32x3"``) and ``flatten`` (``"HWC"``/``"CHW"``) say how a dense layer's
    inputs form an image. Every choice is recorded in the bank's provenance.
    """
    if isinstance(image_shape, str):
        image_shape = parse_image_shape(image_shape)
    source = model_path(path)
    with open_model(source, format) as (fmt, reader):
        infos = reader.tensors()
        info, why = choose(infos, tensor)
        resolved = layout or guess_layout(info.shape, info.layout)  # an explicit --layout is obeyed or refused
        rows = limits.MAX_HEATMAP_ROWS if resolved == "matrix" else None
        stored = reader.read(info.name, rows=rows)
        producer = producer_of(reader)
        if resolved != "matrix" and tuple(stored.shape) != tuple(info.shape):
            raise CorruptFileError(f"tensor {info.name!r} listed as {list(info.shape)} reads as {list(stored.shape)}")
        saved = export.saved_bank(getattr(reader, "bank_record", None), info.name, stored, layout)
        if saved is not None:
            return saved
        image = _image_evidence(info, infos, resolved, getattr(reader, "config", None), image_shape)
        placed = place(stored, resolved, flatten=flatten or info.flatten, image_shape=image[0], image_why=image[1])
    how = "as given by --layout" if layout else ("as stored by the format" if info.layout == resolved else "guessed from the shape")
    provenance = Provenance(
        source=str(source) if isinstance(source, RemotePath) else str(path),  # URLs without credentials
        format=fmt,
        tensor=info.name,
        original_shape=tuple(info.shape),
        original_dtype=info.dtype,
        layout=placed.layout,
        chosen_by=why,
        notes=(f"layout {resolved} {how}", *placed.notes,
               *([source.transfer.describe()] if isinstance(source, RemotePath) else [])),
        producer=producer,
    )
    return FilterBank(placed.array, provenance, placed.kind)


def _image_evidence(info: TensorInfo, infos: list[TensorInfo], layout: str, config: dict | None,
                    image_shape: tuple[int, int, int] | None) -> tuple[tuple[int, int, int] | None, str]:
    """The image a dense layer's inputs form and why: --image-shape, else the evidence of the listing."""
    if image_shape is not None:
        return image_shape, "image shape given by --image-shape"
    if layout not in ("OI", "IO"):
        return None, ""
    try:
        first = choose(infos, None)[0].name == info.name
    except TensorNotFoundError:
        first = False
    return dense_image(dataclasses.replace(info, layout=layout), infos, config, first)


def grid_bank(array: np.ndarray, layout: str = "OIHW", *, flatten: str = "HWC",
              image_shape: str | tuple[int, int, int] | None = None, name: str = "array") -> FilterBank:
    """A FilterBank from an array already in memory (a torch tensor's ``.numpy()``, say)."""
    if isinstance(image_shape, str):
        image_shape = parse_image_shape(image_shape)
    stored = np.asarray(array)
    resolved = guess_layout(stored.shape, layout)
    image = (image_shape, "image shape given") if image_shape is not None else guessed_image(stored.shape, resolved)
    placed = place(stored, resolved, flatten=flatten, image_shape=image[0], image_why=image[1])
    provenance = Provenance("<memory>", "array", name, tuple(stored.shape), str(stored.dtype),
                            placed.layout, "given in memory", placed.notes)
    return FilterBank(placed.array, provenance, placed.kind)
