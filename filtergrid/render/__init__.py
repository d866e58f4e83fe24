"""The one renderer: tiles a FilterBank into an image. Formats and the CLI only call into it.

>>> result = render_result(bank, RenderOptions(normalize="symmetric", cmap="RdBu_r"))
>>> save(result, bank, "grid.png")
"""

from __future__ import annotations

from .core import RenderResult, render, render_result
from .options import CHANNEL_MODES, NORMALIZATIONS, RenderOptions
from .save import save

__all__ = ["CHANNEL_MODES", "NORMALIZATIONS", "RenderOptions", "RenderResult", "render", "render_result", "save"]
