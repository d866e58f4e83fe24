"""The renderer: a FilterBank in, one image of all its tiles out. Knows nothing of file formats."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from ..bank import FilterBank
from ..errors import UsageError
from . import channels, colormaps, grid
from .normalize import normalize
from .options import RenderOptions


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
    n, h, w, c = bank.shape
    if min(n, h, w, c) < 1:
        raise UsageError(f"nothing to draw: the bank has shape {list(bank.shape)}")
    split = channels.is_split(c, opts.channels)
    if split and opts.cols is not None and opts.cols != c:
        raise UsageError(f"cols does not apply to channels split (one row per filter, {c} tiles each); "
                         "use channels mean or first3")
    tiles = n * c if split else n
    cols = c if split else min(opts.cols or grid.near_square_cols(tiles, h, w), tiles)
    geometry = grid.fit(tiles, cols, h, w, opts.pad, opts.scale)

    shown = channels.select(bank.array, opts.channels, opts.bgr)
    normalized = normalize(shown, opts.normalize)
    unit = channels.split(normalized.unit) if split else normalized.unit
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
