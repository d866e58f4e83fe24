"""What a caller may ask of the renderer, checked once, with defaults resolved against the bank."""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from typing import Any

from ..bank import FilterBank
from ..errors import UsageError
from . import colormaps

NORMALIZATIONS = ("per-filter", "global", "symmetric", "percentile", "none")
CHANNEL_MODES = ("split", "mean", "first3")

#: A matrix heatmap (an embedding table) is clipped to its 1st..99th percentile: a few outlier
#: weights would otherwise wash out the rest (seen on real MiniLM and Gemma embeddings).
MATRIX_NORMALIZE = "percentile"
#: Perceptually uniform map for those heatmaps (a diverging map would imply a centre at zero).
MATRIX_CMAP = "viridis"
#: Filters drawn when ``max_filters`` is not given: a 3072 x 20000 ``W1`` shows its first 1024
#: units (the picture says how many were left out) instead of a 60 MB PNG.
DEFAULT_MAX_FILTERS = 1024


@dataclass(frozen=True)
class RenderOptions:
    """How to draw a bank; ``None`` means "choose from the bank" (see :meth:`resolve`).

    normalize: one of NORMALIZATIONS (``per-filter`` for filters, ``percentile`` for a matrix;
        ``none`` shows values already in [0, 1] as they are, clipped).
    value_range: (low, high) weights drawn black and white for every tile (torchvision's
        ``value_range``); overrides the range ``normalize`` would compute (not per-filter).
    cols: tiles per row (near-square by default; fixed to the channel count in ``split`` mode).
    pad: pixels between tiles and around the border, filled with ``background`` (default: chosen
        for the tile size, 2 px or more once tiles are enlarged, so small kernels stay apart).
    scale: nearest-neighbour upscale factor (automatic: small kernels become ~32-64 px tiles).
    cmap: colormap for single-channel tiles (gray; ``viridis`` for a matrix); RGB tiles ignore it.
    bgr: the model was trained on BGR images: swap the first and third channel.
    channels: filters whose channel count is neither 1 nor 3: ``split`` into one gray tile per
        channel (one row per filter), ``mean`` over channels, or ``first3`` as RGB.
    background: gutter colour (default: the colour farthest from every colour a tile can take).
    max_filters: draw at most this many filters (default ``DEFAULT_MAX_FILTERS``).
    labels: filter indices beside the tiles (channel indices above them in ``split`` mode).
    title: a line of text above the grid.
    colorbar: a scale of what colours mean; ``None``: where it helps (one-channel, symmetric and
        heatmap pictures), as the CLI does.
    """

    normalize: str | None = None
    value_range: tuple[float, float] | None = None
    cols: int | None = None
    pad: int | None = None
    scale: int | None = None
    cmap: str | None = None
    bgr: bool = False
    channels: str = "split"
    background: str | None = None
    nan_color: str = "magenta"
    max_filters: int | None = None
    labels: bool = False
    title: str | None = None
    colorbar: bool | None = False

    def __post_init__(self) -> None:
        if self.normalize is not None and self.normalize not in NORMALIZATIONS:
            raise UsageError(f"unknown normalization {self.normalize!r}; choose from {', '.join(NORMALIZATIONS)}")
        if self.channels not in CHANNEL_MODES:
            raise UsageError(f"unknown channel mode {self.channels!r}; choose from {', '.join(CHANNEL_MODES)}")
        _check_int("cols", self.cols, 1, optional=True)
        _check_int("scale", self.scale, 1, optional=True)
        _check_int("pad", self.pad, 0, optional=True)
        _check_int("max_filters", self.max_filters, 1, optional=True)
        for flag in ("bgr", "labels"):
            if not isinstance(getattr(self, flag), bool):
                raise UsageError(f"{flag} must be true or false, got {getattr(self, flag)!r}")
        _check_range(self.value_range)
        if self.cmap is not None:
            colormaps.lut(self.cmap)
        if self.background is not None:
            colormaps.rgb(self.background, "background")
        colormaps.rgb(self.nan_color, "nan colour")

    @classmethod
    def from_kwargs(cls, options: dict[str, Any]) -> RenderOptions:
        """Keyword options as a library caller passes them; unknown names are a usage error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise UsageError(f"unknown render option {unknown[0]!r}; choose from {', '.join(sorted(known))}")
        return cls(**options)

    def resolve(self, bank: FilterBank) -> RenderOptions:
        """These options with the bank-dependent defaults filled in (what the picture records)."""
        matrix = bank.kind == "matrix"
        return dataclasses.replace(
            self,
            normalize=self.normalize or (MATRIX_NORMALIZE if matrix else "per-filter"),
            cmap=self.cmap or (MATRIX_CMAP if matrix else None),
        )


def _check_range(value_range) -> None:
    if value_range is None:
        return
    try:
        low, high = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise UsageError(f"value_range must be (low, high), got {value_range!r}") from None
    if not low < high:
        raise UsageError(f"value_range needs low < high, got {value_range!r}")


def _check_int(name: str, value: int | None, least: int, *, optional: bool) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise UsageError(f"{name} must be a whole number >= {least}, got {value!r}")
