"""The renderer: a FilterBank in, one image of all its tiles out. Knows nothing of file formats."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..bank import FilterBank
from ..errors import UsageError
from . import channels, colormaps, grid
from .normalize import normalize
from .options import RenderOptions

#: Filters of 1-D kernels stacked as rows get up to this many pixel rows each, so that a few long
#: filters (128 x 512 taps) make an image about half as tall as wide rather than a thin strip.
MAX_ROW_HEIGHT = 8


@dataclass(frozen=True)
class RenderResult:
    """The picture and what went into it.

    ``nan_pixels`` counts source pixels (before upscaling) drawn in the NaN colour because a weight
    was NaN or infinite; ``constant_tiles`` counts filters whose finite weights are all equal (dead
    filters); ``options`` are the options with ``normalize`` and ``cmap`` resolved for this bank,
    while the geometry actually chosen (automatic scale, near-square columns) is in ``scale``,
    ``cols`` and ``rows``.
    """

    image: Image.Image
    nan_pixels: int
    constant_tiles: int
    tiles: int
    scale: int
    cols: int
    rows: int
    options: RenderOptions


def render_result(bank: FilterBank, options: RenderOptions) -> RenderResult:
    """Normalize, colour and tile ``bank``; the output size is checked before anything is allocated."""
    opts = options.resolve(bank)
    array = bank.array
    n, h, w, c = array.shape
    if min(n, h, w, c) < 1:
        raise UsageError(f"nothing to draw: the bank has shape {list(bank.shape)}")
    if w == 1 and h > 1:  # a column of weights reads better as a row
        array = array.transpose(0, 2, 1, 3)
        n, h, w, c = array.shape
    split = channels.is_split(c, opts.channels)
    one_d = h == 1 and w > 1 and n > 1  # 1-D kernels: a strip each, unreadable as separate tiles
    if one_d and split:  # each filter becomes a (channels x taps) tile
        array = array[:, 0].transpose(0, 2, 1)[..., None]
        n, h, w, c = array.shape
        split = False
    if split and opts.cols is not None and opts.cols != c:
        raise UsageError(f"cols does not apply to channels split (one row per filter, {c} tiles each); "
                         "use channels mean or first3")
    stacked = one_d and h == 1  # filters as the rows of one image, each normalized on its own
    row_height = min(MAX_ROW_HEIGHT, max(1, math.ceil(w / (2 * n)))) if stacked else 1
    if stacked:
        tiles, cols, tile_h, tile_w = 1, 1, n * row_height, w
    else:
        tiles = n * c if split else n
        cols = c if split else min(opts.cols or grid.near_square_cols(tiles, h, w), tiles)
        tile_h, tile_w = h, w
    geometry = grid.fit(tiles, cols, tile_h, tile_w, opts.pad, opts.scale)

    shown = channels.select(array, opts.channels, opts.bgr)
    normalized = normalize(shown, opts.normalize)
    unit = channels.split(normalized.unit) if split else normalized.unit
    if stacked:
        unit = np.repeat(unit.reshape(1, n, w, unit.shape[-1]), row_height, axis=1)
    table = colormaps.lut(opts.cmap)
    pixels, nan_pixels = colormaps.colorize(unit, table, colormaps.rgb(opts.nan_color, "nan colour"))
    image = grid.paste(pixels, geometry, colormaps.rgb(opts.background, "background"))
    return RenderResult(
        image=Image.fromarray(image, mode="RGB"),
        nan_pixels=nan_pixels,
        constant_tiles=normalized.constant_filters,
        tiles=tiles,
        scale=geometry.scale,
        cols=geometry.cols,
        rows=geometry.rows,
        options=opts,
    )


def render(bank: FilterBank, **options: object) -> Image.Image:
    """The grid of ``bank`` as a PIL RGB image; ``options`` are :class:`RenderOptions` fields."""
    return render_result(bank, RenderOptions.from_kwargs(options)).image
