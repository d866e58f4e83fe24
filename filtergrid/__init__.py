"""filtergrid: see what a model's first layer learned, from any checkpoint, without its framework.

>>> import filtergrid
>>> bank = filtergrid.load("model.onnx")          # FilterBank: float32 (filters, H, W, C) + provenance
>>> filtergrid.render(bank).save("grid.png")      # or filtergrid.render("model.onnx", cmap="viridis")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_getattr
from ._version import __version__
from .errors import (
    CorruptFileError,
    FiltergridError,
    LimitError,
    MissingExtraError,
    TensorNotFoundError,
    UnknownFormatError,
    UnsafeFileError,
    UsageError,
)

if TYPE_CHECKING:
    from .api import load, open_model, tensors
    from .bank import FilterBank, Provenance, TensorInfo

#: Public names imported on first use, so ``filtergrid --help`` does not pay for numpy.
_LAZY = {"load": "api", "open_model": "api", "tensors": "api",
         "FilterBank": "bank", "Provenance": "bank", "TensorInfo": "bank"}


__getattr__ = lazy_getattr(__name__, _LAZY, globals())


__all__ = [
    "CorruptFileError", "FilterBank", "FiltergridError", "LimitError", "MissingExtraError",
    "Provenance", "TensorInfo", "TensorNotFoundError", "UnknownFormatError", "UnsafeFileError",
    "UsageError", "convert", "grid", "load", "open_model", "render", "tensors", "__version__",
]


def render(bank_or_path, *, tensor: str | None = None, layout: str | None = None,
           image_shape=None, flatten: str | None = None, **options):
    """A PIL image of the grid; ``bank_or_path`` is a FilterBank or a model path (loaded first).

    ``options`` are the renderer's: normalize, cols, pad, scale, cmap, bgr, channels, background.
    """
    from .api import load
    from .bank import FilterBank
    from .renderer import render as _render

    bank = bank_or_path if isinstance(bank_or_path, FilterBank) else load(
        bank_or_path, tensor, layout=layout, image_shape=image_shape, flatten=flatten)
    return _render(bank, **options)


def grid(array, layout: str = "OIHW", *, flatten: str = "HWC", image_shape=None, **options):
    """A PIL image of the grid of an in-memory array (torchvision's make_grid, without torch)."""
    from .api import grid_bank
    from .renderer import render as _render

    return _render(grid_bank(array, layout, flatten=flatten, image_shape=image_shape), **options)


def convert(path, out, *, tensor: str | None = None, **load_options) -> FilterBank:
    """Write the canonical float32 (N, H, W, C) bank to ``.npy``, ``.npz`` or ``.safetensors``."""
    from .api import load
    from .export import write_bank

    bank = load(path, tensor, **load_options)
    write_bank(bank, out)
    return bank
