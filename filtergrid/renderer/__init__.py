"""The one renderer: tiles a FilterBank into an image. Formats and the CLI only call into it.

>>> result = render_result(bank, RenderOptions(normalize="symmetric", cmap="RdBu_r"))
>>> save(result, bank, "grid.png")

Its names are imported on first use (``filtergrid`` imports this package at start-up, and ``convert``
or ``--help`` need neither numpy's renderer modules nor Pillow).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_getattr

if TYPE_CHECKING:
    from .core import RenderResult, render, render_result
    from .options import CHANNEL_MODES, NORMALIZATIONS, RenderOptions
    from .output import save

#: Public name -> the module that defines it.
_EXPORTS = {"RenderResult": "core", "render": "core", "render_result": "core",
            "CHANNEL_MODES": "options", "NORMALIZATIONS": "options", "RenderOptions": "options",
            "save": "output"}

__all__ = ["CHANNEL_MODES", "NORMALIZATIONS", "RenderOptions", "RenderResult", "render", "render_result", "save"]


__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())
