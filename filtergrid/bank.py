"""What flows between the stages: a converter's listing (:class:`TensorInfo`) and the canonical result.

Converters list tensors as :class:`TensorInfo` and return raw stored arrays; :func:`filtergrid.load`
lays one out (:mod:`filtergrid.layout`) into the :class:`FilterBank` every consumer (renderer, CLI,
audit, compare) reads, with the :class:`Provenance` of each choice made on the way.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from .untrusted import MAX_NAME_CHARS, terminal

#: Details (description, backend, byte order, ...) kept of what a file says wrote it.
MAX_PRODUCER_DETAILS = 6


@dataclass(frozen=True)
class TensorInfo:
    """One candidate tensor as a converter lists it, in model order, without reading its data.

    ``layout`` is the converter's statement of how the framework stores this tensor (``OIHW``,
    ``HWIO``, ``IO``, ...; see :mod:`filtergrid.layout`), ``flatten`` how that framework flattens
    images into dense inputs (``CHW`` for channels-first frameworks, ``HWC`` for channels-last).
    ``role`` says why it is (or is not) a first-layer candidate, e.g. "weight of the first Conv node".
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    layout: str = "auto"
    flatten: str = "HWC"
    role: str = ""
    candidate: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "shape": list(self.shape)}


@dataclass(frozen=True)
class Producer:
    """What wrote the file, as the file itself records it (``pytorch 2.13.0``, ONNX IR 8, opset 17).

    Every field is text from the file: made safe for a terminal and bounded when the Producer is
    made (each surface still escapes it for its markup: rich, HTML, CSV). Empty means not recorded.
    """

    name: str = ""
    version: str = ""
    format_version: str = ""
    opset: str = ""
    details: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for key in ("name", "version", "format_version", "opset"):
            object.__setattr__(self, key, _field_text(getattr(self, key)))
        shown = tuple(d for d in map(_field_text, self.details[:MAX_PRODUCER_DETAILS]) if d)
        object.__setattr__(self, "details", shown)

    @classmethod
    def recorded(cls, name: object = "", version: object = "", format_version: object = "", opset: object = "",
                 details: tuple[object, ...] = ()) -> Producer | None:
        """The Producer, or None when the file recorded none of it (a reader's ``producer()`` result)."""
        made = cls(str(name or ""), str(version or ""), str(format_version or ""), str(opset or ""),
                   tuple(str(d) for d in details if d))
        return made if any((made.name, made.version, made.format_version, made.opset, made.details)) else None

    def describe(self) -> str:
        """One line: ``pytorch 2.13.0, ONNX IR version 8, opset ai.onnx 17``."""
        parts = [" ".join(p for p in (self.name, self.version) if p), self.format_version,
                 f"opset {self.opset}" if self.opset else "", *self.details]
        return ", ".join(p for p in parts if p)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "details": list(self.details)}


def _field_text(value: object) -> str:
    """One line of file text: control characters escaped, whitespace runs folded, bounded."""
    return terminal(" ".join(str(value).split()), MAX_NAME_CHARS)


@dataclass(frozen=True)
class Provenance:
    """Where a FilterBank came from and every choice made on the way."""

    source: str
    format: str
    tensor: str
    original_shape: tuple[int, ...]
    original_dtype: str
    layout: str
    chosen_by: str
    notes: tuple[str, ...] = ()
    #: What the file says wrote it; None when it records nothing (or the format has no such field).
    producer: Producer | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["original_shape"] = list(self.original_shape)
        d["notes"] = list(self.notes)
        d["producer"] = self.producer.to_dict() if self.producer else None
        return d


@dataclass(frozen=True)
class FilterBank:
    """float32 array of shape (filters, H, W, C) plus its provenance.

    ``kind`` is ``"filters"`` for tiles that are images (conv kernels, dense rows reshaped to an
    image) and ``"matrix"`` for a single (1, rows, cols, 1) heatmap of a matrix that is no image.
    """

    array: np.ndarray
    provenance: Provenance
    kind: str = "filters"

    def __post_init__(self) -> None:
        a = self.array
        if not isinstance(a, np.ndarray) or a.dtype != np.float32 or a.ndim != 4:
            raise ValueError(
                f"FilterBank needs a float32 array of rank 4 (filters, H, W, C), "
                f"got {getattr(a, 'dtype', type(a))} of shape {getattr(a, 'shape', None)}"
            )
        if self.kind not in ("filters", "matrix"):
            raise ValueError(f"FilterBank kind must be 'filters' or 'matrix', got {self.kind!r}")

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return self.array.shape  # type: ignore[return-value]

    def __len__(self) -> int:
        return self.array.shape[0]

    def __repr__(self) -> str:
        p = self.provenance
        n, h, w, c = self.shape
        return (
            f"<FilterBank {n} x {h}x{w}x{c} {self.kind} from {p.format} tensor {p.tensor!r} "
            f"{tuple(p.original_shape)} {p.original_dtype} as {p.layout}>"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "shape": list(self.shape),
            "kind": self.kind,
            "provenance": self.provenance.to_dict(),
        }

    def _repr_png_(self) -> bytes:
        """Lets Jupyter show the grid of a bank with default options."""
        import io

        from .renderer import render

        buf = io.BytesIO()
        render(self).save(buf, format="PNG")
        return buf.getvalue()
