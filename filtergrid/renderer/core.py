"""The renderer: a FilterBank in, one image of all its tiles out. Knows nothing of file formats."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..bank import FilterBank
from ..errors import UsageError
from . import channels, colormaps, grid
from .annotate import annotate
from .normalize import normalize
from .options import DEFAULT_MAX_FILTERS, RenderOptions

#: Filters of 1-D kernels stacked as rows get up to this many pixel rows each, so that a few long
#: filters (128 x 512 taps) make an image about half as tall as wide rather than a thin strip.
MAX_ROW_HEIGHT = 8


@dataclass(frozen=True)
class RenderResult:
    """The picture and what went into it.

    ``nan_pixels`` counts source pixels (before upscaling) drawn in the NaN colour because a weight
    was NaN or infinite; ``constant_tiles`` counts filters whose finite weights are all equal (dead
    filters); ``options`` are the options with ``normalize``, ``cmap``, ``pad`` and ``background``
    resolved for this bank, while the geometry actually chosen (automatic scale, near-square
    columns) is in ``geometry``. ``filters``/``total_filters``: how many were drawn of how many.
    ``value_range`` is the weight range drawn black..white when one range serves every tile.
    ``arrangement`` is ``tiles``, ``split`` (a row of one-channel tiles per filter) or ``rows``
    (1-D kernels, one strip each).
    """

    image: Image.Image
    nan_pixels: int
    constant_tiles: int
    tiles: int
    geometry: grid.Geometry
    options: RenderOptions
    filters: int
    total_filters: int
    value_range: tuple[float, float] | None
    arrangement: str
    one_channel: bool
    notes: tuple[str, ...] = ()

    @property
    def scale(self) -> int:
        return self.geometry.scale

    @property
    def cols(self) -> int:
        return self.geometry.cols

    @property
    def rows(self) -> int:
        return self.geometry.rows


@dataclass(frozen=True)
class _Plan:
    """The tiles to draw: ``array`` already reshaped for the arrangement."""

    array: np.ndarray
    arrangement: str
    tiles: int
    tile_h: int
    tile_w: int


def _plan(array: np.ndarray, opts: RenderOptions) -> _Plan:
    n, h, w, c = array.shape
    if w == 1 and h > 1:  # a column of weights reads better as a row
        array = array.transpose(0, 2, 1, 3)
        n, h, w, c = array.shape
    split = channels.is_split(c, opts.channels)
    if h == 1 and w > 1 and n > 1:  # 1-D kernels: one strip per filter, each normalized on its own
        if split:  # each filter becomes a (channels x taps) tile
            array = array[:, 0].transpose(0, 2, 1)[..., None]
            return _Plan(array, "tiles", n, c, w)
        row_height = min(MAX_ROW_HEIGHT, max(1, math.ceil(w / (2 * n))))
        return _Plan(array, "rows", n, row_height, w)  # paste draws each 1-pixel strip row_height high
    if split:
        if opts.cols is not None and opts.cols != c:
            raise UsageError(f"cols does not apply to channels split (one row per filter, {c} tiles each); "
                             "use channels mean or first3")
        return _Plan(array, "split", n * c, h, w)
    return _Plan(array, "tiles", n, h, w)


def _geometry(plan: _Plan, opts: RenderOptions) -> grid.Geometry:
    if plan.arrangement == "rows":  # scaled like one image of all rows, a 1 px line between rows
        cols, automatic = 1, grid.auto_scale(plan.tiles * plan.tile_h, plan.tile_w, 1)
    else:
        cols = plan.array.shape[-1] if plan.arrangement == "split" else min(
            opts.cols or grid.near_square_cols(plan.tiles, plan.tile_h, plan.tile_w), plan.tiles)
        automatic = grid.auto_scale(plan.tile_h, plan.tile_w, plan.tiles)
    scale = opts.scale or automatic
    pad = opts.pad if opts.pad is not None else (
        1 if plan.arrangement == "rows" else grid.auto_pad(min(plan.tile_h, plan.tile_w) * scale, scale))
    return grid.fit(plan.tiles, cols, plan.tile_h, plan.tile_w, pad, opts.scale, automatic)


def render_result(bank: FilterBank, options: RenderOptions) -> RenderResult:
    """Normalize, colour and tile ``bank``; the output size is checked before anything is allocated."""
    opts = options.resolve(bank)
    total = bank.shape[0]
    if min(bank.shape) < 1:
        raise UsageError(f"nothing to draw: the bank has shape {list(bank.shape)}")
    shown_filters = min(total, opts.max_filters or DEFAULT_MAX_FILTERS)
    plan = _plan(bank.array[:shown_filters], opts)
    geometry = _geometry(plan, opts)

    shown = channels.select(plan.array, opts.channels, opts.bgr)
    assert opts.normalize is not None  # resolve() chose it
    normalized = normalize(shown, opts.normalize, opts.value_range)
    unit = channels.split(normalized.unit) if plan.arrangement == "split" else normalized.unit
    table = colormaps.lut(opts.cmap)
    one_channel = unit.shape[-1] == 1
    notes: tuple[str, ...] = ()
    if opts.cmap and not one_channel:  # said, and not recorded as if it had been applied
        notes = (f"colormap {opts.cmap!r} not applied: the tiles are RGB (channels mean draws one channel)",)
        opts = dataclasses.replace(opts, cmap=None)
    background = opts.background or _hex(colormaps.gutter(table, not one_channel))
    opts = dataclasses.replace(opts, pad=geometry.pad, background=background)
    # both colours were checked by RenderOptions, which names the option in its refusal
    pixels, nan_pixels = colormaps.colorize(unit, table, colormaps.rgb(opts.nan_color))
    image = grid.paste(pixels, geometry, colormaps.rgb(background))
    result = RenderResult(
        image=Image.fromarray(image), nan_pixels=nan_pixels,
        constant_tiles=normalized.constant_filters, tiles=plan.tiles, geometry=geometry, options=opts,
        filters=shown_filters, total_filters=total, value_range=normalized.value_range,
        arrangement=plan.arrangement, one_channel=one_channel, notes=notes,
    )
    return annotate(result, table)  # as it is when there is nothing to add


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def render(bank: FilterBank, **options: object) -> Image.Image:
    """The grid of ``bank`` as a PIL RGB image; ``options`` are :class:`RenderOptions` fields."""
    return render_result(bank, RenderOptions.from_kwargs(options)).image
