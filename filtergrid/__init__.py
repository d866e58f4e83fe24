"""filtergrid: see what a model's first layer learned, from any checkpoint, without its framework.

>>> import filtergrid
>>> bank = filtergrid.load("model.onnx")          # FilterBank: float32 (filters, H, W, C) + provenance
>>> filtergrid.render(bank).save("grid.png")      # or filtergrid.render("model.onnx", cmap="viridis")
"""

from __future__ import annotations

import typing

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

if typing.TYPE_CHECKING:
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


def render(source, *, tensor: str | None = None, layout: str | None = None,
           image_shape=None, flatten: str | None = None, **options):
    """A PIL image of the grid of ``source``: a FilterBank, a model path, or weights in memory (a
    torch/JAX/TF tensor, NumPy array, ``nn.Module`` or state dict: see :func:`grid`).

    ``options`` are the renderer's (normalize, cols, pad, scale, cmap, labels, title, colorbar, ...)
    or torchvision ``make_grid``'s names (nrow, padding, pad_value, normalize, value_range, scale_each).
    """
    from .bank import FilterBank
    from .inmemory import bank_of, is_in_memory, make_grid_options
    from .renderer import render as _render

    if isinstance(source, FilterBank):
        bank = source
    elif is_in_memory(source):
        bank = bank_of(source, layout=layout, flatten=flatten, image_shape=image_shape, tensor=tensor)
    else:
        from .api import load

        bank = load(source, tensor, layout=layout, image_shape=image_shape, flatten=flatten)
    return _render(bank, **make_grid_options(options))


def grid(weights, layout: str | None = None, **options):
    """A PIL image of weights in memory, like torchvision's ``make_grid`` without torch.

    ``weights``: a torch tensor (``model.conv1.weight``: detached, bf16/fp16 widened), a JAX or
    TensorFlow tensor, a NumPy array, an ``nn.Module`` or a state dict (its first layer, chosen as
    for files). ``layout`` defaults to the framework's (OIHW for torch and NumPy, HWIO for
    TF/JAX), and a dense layer's inputs are unflattened the framework's way (CHW for torch).
    """
    return render(weights, layout=layout, **options)


def __dir__() -> list[str]:
    return sorted(__all__)


def convert(path, out, *, tensor: str | None = None, **load_options) -> FilterBank:
    """Write the canonical float32 (N, H, W, C) bank to ``.npy``, ``.npz`` or ``.safetensors``."""
    from .api import load
    from .export import write_bank

    bank = load(path, tensor, **load_options)
    write_bank(bank, out)
    return bank
