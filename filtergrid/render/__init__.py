"""The one renderer: tiles a FilterBank into an image. Formats and the CLI only call into it.

>>> result = render_result(bank, RenderOptions(normalize="symmetric", cmap="RdBu_r"))
>>> save(result, bank, "grid.png")

Its names are imported on first use (``filtergrid`` imports this package at start-up, and ``convert``
or ``--help`` need neither numpy's renderer modules nor Pillow).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .core import RenderResult, render, render_result
    from .options import CHANNEL_MODES, NORMALIZATIONS, RenderOptions
    from .save import save

#: Public name -> the module that defines it.
_EXPORTS = {"RenderResult": "core", "render": "core", "render_result": "core",
            "CHANNEL_MODES": "options", "NORMALIZATIONS": "options", "RenderOptions": "options",
            "save": "save"}

__all__ = ["CHANNEL_MODES", "NORMALIZATIONS", "RenderOptions", "RenderResult", "render", "render_result", "save"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    # Importing ``.save`` binds the submodule as ``save``; the function must win, as it did when eager.
    globals()[name] = value
    return value
